"""What a one-shot run prints when it is done (pure, but for `ToolInputs`, which the session's
event hook feeds): the outcome, and what the run posted on GitHub — or, in a dry run, what it
would have posted: the review with its inline comments, comments, the pull request's new
description, the fix pull request and its patch, the check run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from app.oneshot.result import EXIT_FAILED, EXIT_FINDINGS, RunResult

_MARKER = re.compile(r"[ \t]*<!--\s*prmedic:[^>]*?-->[ \t]*\n?", re.I)
_REPO = r"/repos/[^/]+/[^/]+"
SUMMARY_LINES = 40  # of a check run's summary


class ToolInputs:
    """The agents' custom tool calls in this run, and which of them prmedic refused."""

    def __init__(self) -> None:
        self.calls: dict[str, tuple[str, dict[str, Any]]] = {}
        self.refused: set[str] = set()

    def see(self, ev: Any) -> None:
        kind = getattr(ev, "type", "")
        if kind == "agent.custom_tool_use":
            self.calls[ev.id] = (ev.name, dict(getattr(ev, "input", None) or {}))
        elif kind == "user.custom_tool_result" and getattr(ev, "is_error", False):
            self.refused.add(getattr(ev, "custom_tool_use_id", ""))

    def last(self, name: str) -> dict[str, Any] | None:
        """The input of the last call of `name` that was not refused."""
        kept = [args for call_id, (tool, args) in self.calls.items() if tool == name and call_id not in self.refused]
        return kept[-1] if kept else None


def clean(text: str | None) -> str:
    """`text` without prmedic's HTML-comment markers (they mean nothing on a terminal)."""
    return _MARKER.sub("", text or "").strip()


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


def capped(text: str, lines: int) -> str:
    rows = text.splitlines()
    return text if len(rows) <= lines else "\n".join(rows[:lines] + [f"… ({len(rows) - lines} more lines)"])


@dataclass
class Posted:
    """One object the run wrote, in its final state."""

    title: str
    body: str = ""
    items: list[str] = field(default_factory=list)


def _inline(comment: dict[str, Any]) -> str:
    where = f"{comment.get('path')}:{comment.get('line')}"
    if comment.get("start_line"):
        where = f"{comment.get('path')}:{comment['start_line']}-{comment.get('line')}"
    return f"{where} ({comment.get('side') or 'RIGHT'})\n{indent(clean(comment.get('body')), '  ')}"


def collect(writes: list[Any]) -> list[Posted]:
    """The run's writes (`github.Write`) as the objects they leave on GitHub, first written first."""
    objects: dict[str, Posted] = {}
    checks: dict[str, dict[str, Any]] = {}
    for w in writes:
        body = w.body if isinstance(w.body, dict) else {}
        answer = w.answer if isinstance(w.answer, dict) else {}
        path, method = w.path, w.method
        if m := re.fullmatch(rf"{_REPO}/pulls/(\d+)/reviews", path):
            key = f"review:{answer.get('id')}"
            objects[key] = Posted(f"Review on #{m[1]} ({body.get('event') or 'COMMENT'})", clean(body.get("body")),
                                  [_inline(c) for c in body.get("comments") or []])
        elif m := re.fullmatch(rf"{_REPO}/pulls/(\d+)/reviews/(\d+)", path):
            objects[f"review:{m[2]}"] = Posted(f"Review on #{m[1]} (its summary, updated)", clean(body.get("body")))
        elif m := re.fullmatch(rf"{_REPO}/issues/(\d+)/comments", path):
            objects[f"comment:{answer.get('id')}"] = Posted(f"Comment on #{m[1]}", clean(body.get("body")))
        elif m := re.fullmatch(rf"{_REPO}/(?:issues|pulls)/comments/(\d+)", path):
            earlier = objects.get(f"comment:{m[1]}")
            objects[f"comment:{m[1]}"] = Posted(earlier.title if earlier else f"Comment {m[1]} (edited)",
                                                clean(body.get("body")))
        elif m := re.fullmatch(rf"{_REPO}/pulls/(\d+)/comments/\d+/replies", path):
            objects[f"comment:{answer.get('id')}"] = Posted(f"Reply in a review thread on #{m[1]}",
                                                            clean(body.get("body")))
        elif m := re.fullmatch(rf"{_REPO}/check-runs(?:/(\d+))?", path):
            key = f"check:{m[1] or answer.get('id')}"
            checks[key] = {**checks.get(key, {}), **body}
            objects[key] = _check(checks[key])
        elif method == "PATCH" and (m := re.fullmatch(rf"{_REPO}/pulls/(\d+)", path)):
            objects[f"pull:{m[1]}"] = Posted(f"Description of #{m[1]} (the pull request's new body)",
                                             clean(body.get("body")))
        elif m := re.fullmatch(rf"{_REPO}/pulls", path):
            objects[f"pull:{answer.get('number')}"] = Posted(
                f"Fix pull request “{body.get('title')}” ({body.get('head')} → {body.get('base')})",
                clean(body.get("body")))
        elif m := re.fullmatch(rf"{_REPO}/git/commits", path):
            message = (body.get("message") or "").splitlines() or [""]
            objects[f"commit:{answer.get('sha')}"] = Posted(f"Commit {str(answer.get('sha'))[:7]}: {message[0]}")
        elif m := re.fullmatch(rf"{_REPO}/git/refs(?:/heads/(.+))?", path):
            branch = m[1] or str(body.get("ref") or "").removeprefix("refs/heads/")
            objects[f"ref:{branch}:{body.get('sha')}"] = Posted(f"Branch `{branch}` set to {str(body.get('sha'))[:7]}")
    return list(objects.values())


def _check(check: dict[str, Any]) -> Posted:
    output = check.get("output") or {}
    state = check.get("conclusion") or check.get("status") or "in_progress"
    summary = capped(clean(output.get("summary")), SUMMARY_LINES)
    return Posted(f"Check run “{check.get('name') or 'prmedic'}”: {state} — {output.get('title') or ''}".rstrip(" —"),
                  summary)


def render_posted(writes: list[Any], inputs: ToolInputs | None, *, dry_run: bool) -> str:
    """What the run posted (or, dry, would have posted), one section per object."""
    posted = collect(writes)
    patch = inputs.last("propose_fix") if inputs is not None else None
    if patch is not None and patch.get("patch"):
        posted.append(Posted("The patch (the agents' last accepted propose_fix call)", patch["patch"].rstrip()))
    if not posted:
        return "Dry run: nothing would have been posted." if dry_run else "Nothing was posted on GitHub."
    head = ("Dry run: nothing was posted. prmedic would have posted:" if dry_run else "Posted on GitHub:")
    sections = [head]
    for item in posted:
        text = f"\n── {item.title}"
        if item.body:
            text += "\n" + indent(item.body)
        for line in item.items:
            text += "\n  • " + line.replace("\n", "\n    ")
        sections.append(text)
    return "\n".join(sections)


def _counts(findings: dict[str, int]) -> str:
    shown = [f"{n} {severity}" for severity, n in findings.items() if n]
    return f"{sum(findings.values())} finding(s)" + (f": {', '.join(shown)}" if shown else "")


def render_result(action: str, target: str, result: RunResult, *, dry_run: bool) -> str:
    """The outcome in a few lines: what happened, the links, cost and session, the exit status."""
    r = result.result
    lines: list[str] = []
    if result.error:
        lines.append(f"prmedic run {action} {target} failed: {result.error}")
    elif r.get("skipped") or result.conclusion == "skipped":
        lines.append(f"Nothing done on {target}: {r.get('skipped') or clean(r.get('answer')) or 'skipped'}")
    elif result.kind == "review":
        if r.get("unfinished"):
            lines.append(f"The review of {target} did not finish: {r['unfinished']}")
        lines.append(f"Reviewed {target}: {_counts(r.get('findings') or {})} · conclusion {result.conclusion}")
    else:
        answer = clean(r.get("answer"))
        lines.append(f"prmedic run {action} {target}: " + ("done" if r.get("ok") else "no result"))
        if answer:
            lines += ["", answer, ""]
    links = [("review", result.review_url), ("fix", result.fix_url), ("answer", result.comment_url),
             ("description", r.get("description_url"))]
    for name, url in links:
        if url:
            lines.append(f"{name}: {url}" + (" (not posted: dry run)" if dry_run else ""))
    if r.get("approval_note"):
        lines.append(f"Note: {r['approval_note']}.")
    facts = []
    if result.cost_usd is not None:
        facts.append(f"cost (list price) ${result.cost_usd:.2f}")
    if result.session_id:
        facts.append(f"session {result.session_id}")
    if facts:
        lines.append(" · ".join(facts))
    why = {EXIT_FINDINGS: " (findings at or above review.fail_on)", EXIT_FAILED: " (the job did not succeed)"}
    lines.append(f"exit status {result.exit_code}{why.get(result.exit_code, '')}")
    return "\n".join(lines)
