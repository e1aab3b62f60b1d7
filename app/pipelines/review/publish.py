"""`publish_review`: one review per run, every inline comment placeable.

What happens to each comment the coordinator sends, in order:
1. below the repository's `min_severity` → not published (counted in the summary);
2. not anchorable on the diff (path not in the PR, line outside every hunk on its side, a range
   across hunks, a suggestion on deleted lines) → folded into the summary with its location
   and the reason;
3. already posted on this pull request (same fingerprint: path + normalised body + the code on
   the anchored lines) → not posted again;
4. beyond `max_comments`, most severe first → folded into the summary.

The summary is the body of the first review prmedic posts on the pull request, and later runs
update it in place (`PUT …/reviews/{id}`), so a PR carries one prmedic summary however often it
is pushed to. A later run's new inline comments go out in a short review of their own that
links to the summary. If GitHub still answers 422, the review is posted again with only the
comments least likely to be refused (single lines added by the PR), then with none; whatever
was not placed is listed in the summary. A review is never lost to one bad anchor.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from gidgethub import BadRequest, HTTPException

from app.logs import redact
from app.pipelines.diff import FileChange
from app.pipelines.markdown import fence_ticks
from app.pipelines.review.brief import Incremental
from app.repo_config import SEVERITY_ORDER, RepoConfig
from app.store import PullReviewState
from app.tools import ToolContext, ToolError
from app.tools.schemas import PublishReviewInput, ReviewComment, TestRun

log = logging.getLogger("prmedic.review")

SUMMARY_MARKER = "<!-- prmedic:summary -->"
DELTA_MARKER = "<!-- prmedic:review-update -->"
FINDING_MARKER = re.compile(r"<!-- prmedic:finding:([0-9a-f]{16}) -->")
BADGES = {"blocker": "🛑 **Blocker**", "major": "🟠 **Major**", "minor": "🟡 **Minor**", "nit": "⚪ **Nit**"}
OUTCOMES = {"passed": "✅ passed", "failed": "❌ failed", "error": "⚠️ error", "skipped": "⏭️ skipped"}
BODY_MAX = 60_000  # GitHub refuses bodies over 65,536 characters
SUMMARY_TEXT_MAX = 20_000
FOLDED_BODY_MAX = 3_000
FINDINGS_REMEMBERED = 200


@dataclass
class ReviewSession:
    """What the review pipeline hands the tool (`ToolContext.review`)."""

    repo: str
    pr_number: int
    head_sha: str
    base_sha: str | None
    files: dict[str, FileChange]
    config: RepoConfig
    state: PullReviewState
    web_url: str = "https://github.com"
    incremental: Incremental | None = None
    config_errors: list[str] = field(default_factory=list)
    published: "Published | None" = None


@dataclass
class Finding:
    comment: ReviewComment
    fingerprint: str
    reason: str | None = None  # why it is in the summary instead of inline


@dataclass
class Published:
    review_id: int
    url: str
    event: str
    inline: list[Finding]
    folded: list[Finding]
    repeated: list[Finding]
    below_threshold: int
    tests_run: list[TestRun]
    notes: list[str]
    summary: str = ""

    @property
    def posted(self) -> bool:
        """False for a clean first review: nothing was posted on the pull request."""
        return bool(self.review_id or self.url)

    @property
    def findings(self) -> list[Finding]:
        """Every finding this run stands by (inline, folded or posted before)."""
        return self.inline + self.folded + self.repeated

    def counts(self) -> dict[str, int]:
        out = {severity: 0 for severity in SEVERITY_ORDER}
        for finding in self.findings:
            out[finding.comment.severity] += 1
        return out


# -- anchoring --------------------------------------------------------------------------------

def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def anchored_code(comment: ReviewComment, change: FileChange | None) -> list[str]:
    """The text of the lines the comment is anchored on (a range across sides: the diff lines between its ends)."""
    if change is None:
        return []
    if not is_range(comment) or start_side_of(comment) == comment.side:
        return change.line_text(comment.start_line or comment.line, comment.line, comment.side)
    start, end = change.locate(comment.start_line, start_side_of(comment)), change.locate(comment.line, comment.side)
    if start is None or end is None or start[0] != end[0]:
        return []
    lines = change.hunks[end[0]].lines
    return [ln.text for ln in lines[lines.index(start[1]): lines.index(end[1]) + 1]]


def fingerprint(comment: ReviewComment, change: FileChange | None) -> str:
    code = anchored_code(comment, change)
    material = "\0".join([comment.path, _normalise(comment.body), _normalise("\n".join(code))])
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def placement_problem(comment: ReviewComment, files: dict[str, FileChange]) -> str | None:
    """Why GitHub would refuse this anchor, or None if it is inside the diff."""
    change = files.get(comment.path)
    if change is None:
        renamed = next((c.path for c in files.values() if c.previous_path == comment.path), None)
        hint = f" (it was renamed to `{renamed}`)" if renamed else ""
        return f"`{comment.path}` is not changed by this pull request{hint}"
    if not change.hunks:
        return f"GitHub shows no diff for `{comment.path}` (binary or too large)"
    side, start_side = comment.side, start_side_of(comment)
    hit = change.locate(comment.line, side)
    if hit is None:
        which = "new" if side == "RIGHT" else "old"
        return (f"line {comment.line} ({side}) is outside the diff; the {which}-side lines shown for this file are "
                f"{change.ranges(side)}")
    if is_range(comment):
        start = change.locate(comment.start_line, start_side)
        if start is None:
            return f"start line {comment.start_line} ({start_side}) is outside the diff"
        if start[0] != hit[0]:
            return f"lines {comment.start_line}–{comment.line} span more than one hunk"
        # GitHub lets a range start on the other side (e.g. deleted lines into the lines replacing
        # them), in one hunk, if it starts before it ends in the diff.
        lines = change.hunks[hit[0]].lines
        if start_side != side and lines.index(start[1]) >= lines.index(hit[1]):
            return (f"the range must start before it ends in the diff: line {comment.start_line} ({start_side}) "
                    f"does not come before line {comment.line} ({side})")
    if comment.suggestion is not None and (side == "LEFT" or (is_range(comment) and start_side == "LEFT")):
        return "a suggestion cannot be anchored on deleted lines (side LEFT); it is shown here instead"
    return None


def start_side_of(comment: ReviewComment) -> str:
    return comment.start_side or comment.side


def is_range(comment: ReviewComment) -> bool:
    """A multi-line comment: a start line other than `line` on its side, or a start on the other side."""
    return comment.start_line is not None and (comment.start_line != comment.line
                                               or start_side_of(comment) != comment.side)


def inline_body(finding: Finding) -> str:
    c = finding.comment
    parts = [f"{BADGES[c.severity]} · {c.body.strip()}"]
    if c.suggestion is not None:
        fence = fence_ticks(c.suggestion)
        parts.append(f"{fence}suggestion\n{c.suggestion.rstrip(chr(10))}\n{fence}")
    parts.append(f"<!-- prmedic:finding:{finding.fingerprint} -->")
    return redact("\n\n".join(parts))[:BODY_MAX]


def _api_comment(finding: Finding) -> dict[str, Any]:
    c = finding.comment
    out: dict[str, Any] = {"path": c.path, "body": inline_body(finding), "line": c.line, "side": c.side}
    if is_range(c):
        out.update(start_line=c.start_line, start_side=start_side_of(c))
    return out


def _plainly_placeable(finding: Finding, files: dict[str, FileChange]) -> bool:
    """A single line the PR added: the anchor GitHub is least likely to refuse."""
    c = finding.comment
    hit = files[c.path].locate(c.line, c.side) if c.path in files else None
    return hit is not None and hit[1].kind == "+" and not is_range(c)


# -- the summary ------------------------------------------------------------------------------

def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")[:300]


def _location(rs: ReviewSession, c: ReviewComment) -> str:
    sha = rs.head_sha if c.side == "RIGHT" else (rs.base_sha or rs.head_sha)
    same_side_range = is_range(c) and start_side_of(c) == c.side
    lines = f"{c.start_line}–{c.line}" if same_side_range else str(c.line)
    anchor = f"#L{c.start_line}-L{c.line}" if same_side_range else f"#L{c.line}"
    return f"[`{c.path}:{lines}`]({rs.web_url}/{rs.repo}/blob/{sha}/{quote(c.path)}{anchor})"


def counts_line(counts: dict[str, int]) -> str:
    if not any(counts.values()):
        return "No findings."
    return " · ".join(f"{BADGES[s].split(' ')[0]} {n} {s}" for s, n in counts.items() if n)


def tests_table(tests: list[TestRun]) -> str:
    if not tests:
        return ""
    rows = [f"| `{_cell(t.command)}` | {OUTCOMES[t.outcome]} | {_cell(t.details or '')} |" for t in tests]
    return "**Tests run by the tester**\n\n| Command | Outcome | Details |\n|---|---|---|\n" + "\n".join(rows) + "\n"


def summary_body(rs: ReviewSession, args: PublishReviewInput, result: Published) -> str:
    text = args.summary.strip()
    if len(text) > SUMMARY_TEXT_MAX:
        text = text[:SUMMARY_TEXT_MAX] + "\n…(summary cut)"
    where = [f"{len(result.inline)} inline"]
    if result.folded:
        where.append(f"{len(result.folded)} listed below")
    if result.repeated:
        where.append(f"{len(result.repeated)} posted earlier and not repeated")
    parts = [SUMMARY_MARKER, "### prmedic review", text,
             f"**Findings:** {counts_line(result.counts())}" + (f" ({', '.join(where)})" if result.findings else "")]
    if result.tests_run:
        parts.append(tests_table(result.tests_run))
    if result.folded:
        lines = [f"**Not placed on the diff ({len(result.folded)})**", ""]
        for f in result.folded:
            c = f.comment
            body = c.body.strip()[:FOLDED_BODY_MAX]
            lines.append(f"- {BADGES[c.severity]} · {_location(rs, c)} — {body}\n  <sub>{f.reason}</sub>")
            if c.suggestion is not None:
                fence = fence_ticks(c.suggestion)
                block = "\n".join("  " + line for line in f"{fence}\n{c.suggestion.rstrip()}\n{fence}".split("\n"))
                lines.append(f"  Suggested replacement:\n{block}")
        parts.append("\n".join(lines))
    notes = list(result.notes)
    if result.below_threshold:
        notes.append(f"{result.below_threshold} finding(s) below this repository's `{rs.config.review.min_severity}` "
                     "threshold were left out.")
    if rs.config_errors:
        notes.append("`.github/prmedic.yml` has problems; the defaults are used until it is fixed:\n"
                     + "\n".join(f"  - {e}" for e in rs.config_errors))
    if notes:
        parts.append("\n".join(f"- {n}" for n in notes))
    scope = (f"re-review of the commits since `{rs.incremental.since_sha[:7]}`" if rs.incremental else "full review")
    parts.append(f"<sub>Commit `{rs.head_sha[:7]}` ({scope}). prmedic keeps this summary up to date on every push."
                 "</sub>")
    body = "\n\n".join(parts)
    return redact(body if len(body) <= BODY_MAX else body[: BODY_MAX - 40] + "\n\n…(summary cut)")


def delta_body(rs: ReviewSession, result: Published, summary_url: str | None) -> str:
    new = counts_line({s: sum(1 for f in result.inline if f.comment.severity == s) for s in SEVERITY_ORDER})
    link = f" The [summary]({summary_url}) is updated." if summary_url else ""
    return redact(f"{DELTA_MARKER}\n**prmedic** re-reviewed `{rs.head_sha[:7]}`: {len(result.inline)} new inline "
                  f"finding(s) ({new}).{link}")


# -- the tool ---------------------------------------------------------------------------------

def triage(rs: ReviewSession, args: PublishReviewInput, known: set[str]) -> Published:
    review = rs.config.review
    threshold = SEVERITY_ORDER[review.min_severity]
    kept = [c for c in args.comments if SEVERITY_ORDER[c.severity] <= threshold]
    kept.sort(key=lambda c: SEVERITY_ORDER[c.severity])
    result = Published(0, "", args.event, [], [], [], len(args.comments) - len(kept), list(args.tests_run), [],
                       summary=args.summary)
    seen: set[str] = set()
    for comment in kept:
        finding = Finding(comment, fingerprint(comment, rs.files.get(comment.path)))
        if finding.fingerprint in seen:
            continue  # the same finding twice in one call
        seen.add(finding.fingerprint)
        finding.reason = placement_problem(comment, rs.files)
        if finding.reason:
            result.folded.append(finding)
        elif finding.fingerprint in known:
            result.repeated.append(finding)
        elif len(result.inline) >= review.max_comments:
            finding.reason = f"over this repository's cap of {review.max_comments} inline comments"
            result.folded.append(finding)
        else:
            result.inline.append(finding)
    if args.event == "APPROVE" and not review.allow_approve:
        result.event = "COMMENT"
        result.notes.append("The agents would have approved; this repository's config does not allow approval, so "
                            "this is a comment.")
    return result


def is_clean(result: Published) -> bool:
    """Nothing for the author: no finding stands, no test failed, nothing but a comment."""
    return (not result.findings and result.event == "COMMENT"
            and not any(t.outcome in ("failed", "error") for t in result.tests_run))


async def publish_review(ctx: ToolContext, args: PublishReviewInput) -> str:
    rs = ctx.review
    assert rs is not None  # CustomTool.needs
    if rs.published is not None:
        raise ToolError(f"This run already published its review: {rs.published.url or 'no findings, nothing posted'}. A run publishes one review; "
                        "say anything else in your final message.")
    result = triage(rs, args, set(rs.state.fingerprints))
    gh = await ctx.github()
    first = rs.state.summary_review_id is None
    if first and is_clean(result):
        pass  # silence on the pull request: the check run passes and carries the agents' summary
    elif first:
        answer = await _post(gh, rs, result, lambda: summary_body(rs, args, result), result.inline)
        result.review_id, result.url = int(answer["id"]), answer["html_url"]
    else:
        delta = result.inline or (result.event in ("REQUEST_CHANGES", "APPROVE")
                                  and result.event != rs.state.summary_event)
        if delta:
            answer = await _post(gh, rs, result, lambda: delta_body(rs, result, rs.state.summary_review_url),
                                 result.inline)
            result.review_id, result.url = int(answer["id"]), answer["html_url"]
        else:
            result.review_id, result.url = rs.state.summary_review_id or 0, rs.state.summary_review_url or ""
    # Remembered before the summary is touched: whatever happens next, these comments are out and a
    # retried call must not post them again.
    rs.published = result
    await _remember(ctx, rs, result, first)
    if not first:
        await _refresh_summary(ctx, gh, rs, args, result, replaces_url=not delta)
    return _answer(rs, result)


async def _refresh_summary(ctx: ToolContext, gh: Any, rs: ReviewSession, args: PublishReviewInput,
                           result: Published, *, replaces_url: bool) -> None:
    """Update the PR's one summary in place; if it is gone, post a new one; if GitHub fails, say so."""
    try:
        if await _update_summary(gh, rs, summary_body(rs, args, result)):
            return
        answer = await _post(gh, rs, result, lambda: summary_body(rs, args, result), [], event="COMMENT")
    except (HTTPException, ToolError) as exc:
        log.warning("%s#%s: summary not refreshed: %s", rs.repo, rs.pr_number, redact(str(exc)))
        result.notes.append("The summary review could not be updated this time (GitHub did not answer); the "
                            "next run updates it.")
        return
    rs.state.summary_review_id, rs.state.summary_review_url = int(answer["id"]), answer["html_url"]
    if replaces_url:
        result.review_id, result.url = rs.state.summary_review_id, rs.state.summary_review_url
    await ctx.store.save_pull_review(rs.state)


async def _post(gh: Any, rs: ReviewSession, result: Published, body: Any, inline: list[Finding], *,
                event: str | None = None) -> dict[str, Any]:
    """POST the review; on 422, again with the plainest anchors only, then with none."""
    event = event or result.event
    attempts = [list(inline), [f for f in inline if _plainly_placeable(f, rs.files)], []]
    error, previous = "", None
    while attempts:
        comments = attempts.pop(0)
        if comments == previous and previous is not None and not error.startswith("own"):
            continue
        for finding in [f for f in inline if f not in comments and f in result.inline]:
            finding.reason = f"GitHub refused the inline comments ({error}); shown here instead"
            result.inline.remove(finding)
            result.folded.append(finding)
        payload: dict[str, Any] = {"event": event, "body": body(), "comments": [_api_comment(f) for f in comments]}
        if comments:
            payload["commit_id"] = rs.head_sha
        previous = comments
        try:
            return await gh.post(f"/repos/{rs.repo}/pulls/{rs.pr_number}/reviews", data=payload)
        except BadRequest as exc:
            if int(exc.status_code) != 422:
                raise
            error = f"422: {redact(str(exc))[:200]}"
            log.warning("%s#%s: review refused (%s)", rs.repo, rs.pr_number, error)
            if "own pull request" in str(exc) and event != "COMMENT":
                event = result.event = "COMMENT"
                result.notes.append("GitHub does not let the bot approve or request changes on its own pull "
                                    "request; this is a comment.")
                error = "own pull request"
                attempts.insert(0, comments)
    raise ToolError(f"GitHub refused the review even without inline comments ({error}). Shorten the summary and "
                    "call publish_review again.")


async def _update_summary(gh: Any, rs: ReviewSession, body: str) -> bool:
    try:
        await gh.put(f"/repos/{rs.repo}/pulls/{rs.pr_number}/reviews/{rs.state.summary_review_id}",
                     data={"body": body})
        return True
    except BadRequest as exc:
        if int(exc.status_code) in (403, 404, 422):
            log.warning("%s#%s: could not update the summary review %s (%s); posting a new one", rs.repo,
                        rs.pr_number, rs.state.summary_review_id, exc.status_code)
            return False
        raise


async def _remember(ctx: ToolContext, rs: ReviewSession, result: Published, first: bool) -> None:
    state = rs.state
    if first and result.posted:
        state.summary_review_id, state.summary_review_url = result.review_id, result.url
    if first or result.event in ("REQUEST_CHANGES", "APPROVE"):
        state.summary_event = result.event
    state.fingerprints = list(dict.fromkeys([*state.fingerprints, *(f.fingerprint for f in result.inline)]))
    state.findings = [*state.findings, *(describe(f) for f in result.inline)][-FINDINGS_REMEMBERED:]
    mark_reviewed(state, rs, ctx.job.id)
    await ctx.store.save_pull_review(state)


def mark_reviewed(state: PullReviewState, rs: ReviewSession, job_id: int) -> None:
    state.head_sha, state.job_id = rs.head_sha, job_id
    state.file_shas = {path: change.blob_sha for path, change in rs.files.items() if change.blob_sha}


def describe(finding: Finding) -> str:
    c = finding.comment
    first = re.split(r"(?<=[.!?])\s", c.body.strip(), maxsplit=1)[0]
    return f"`{c.path}:{c.line}` [{c.severity}] {first[:160]}"


def _answer(rs: ReviewSession, result: Published) -> str:
    if not result.posted:
        return ("Recorded: no findings, so nothing was posted on the pull request; the check run passes and shows "
                "your summary. This run's review is done; do not call publish_review again.")
    lines = [f"Published: {result.url}", f"Inline comments posted: {len(result.inline)}."]
    if result.folded:
        lines.append(f"Folded into the summary ({len(result.folded)}):")
        lines += [f"- {f.comment.path}:{f.comment.line} ({f.comment.side}): {f.reason}" for f in result.folded]
    if result.repeated:
        lines.append(f"Not posted again (already on the pull request): {len(result.repeated)}.")
    if result.below_threshold:
        lines.append(f"Left out below the `{rs.config.review.min_severity}` threshold: {result.below_threshold}.")
    lines += result.notes
    lines.append("This run's review is done; do not call publish_review again.")
    return "\n".join(lines)


# -- what earlier runs left on GitHub (when the store does not remember) -------------------

async def existing_findings(gh: Any, repo: str, number: int, bot_login: str | None) -> tuple[set[str], list[str], int | None]:
    """(fingerprints, one line per finding, the earliest review holding them) from the PR's review comments."""
    fingerprints: set[str] = set()
    lines: list[str] = []
    review_ids: list[int] = []
    async for comment in gh.getiter(f"/repos/{repo}/pulls/{number}/comments?per_page=100"):
        user = comment.get("user") or {}
        if user.get("type") != "Bot" or (bot_login and user.get("login") != bot_login):
            continue
        match = FINDING_MARKER.search(comment.get("body") or "")
        if not match:
            continue
        fingerprints.add(match[1])
        body = FINDING_MARKER.sub("", comment.get("body") or "").split("\n", 1)[0]
        lines.append(f"`{comment.get('path')}:{comment.get('line') or comment.get('original_line')}` {body[:180]}")
        if comment.get("pull_request_review_id"):
            review_ids.append(int(comment["pull_request_review_id"]))
    return fingerprints, lines, min(review_ids) if review_ids else None
