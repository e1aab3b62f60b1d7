"""The review pipeline: a `pull_request` event → one review with inline comments, and a check run.

GitHub calls of an automatic review of a PR with ≤ 100 files (at most 6):
config (1) · check run created (1) · changed files (1 per 100) · the review (1) · on a re-review
the summary updated in place (1) · check run completed (1). The PR itself comes from the
payload; earlier findings and the last reviewed commit come from the store, so GitHub's review
comments are listed only when the store has no record of the PR (a fresh database, or a PR
reviewed before prmedic kept one) on a trigger other than `opened`. Progress reports from the
agents add one PATCH each, at most one every 10 s.

Incremental review: the store keeps, per PR, the last reviewed head and the blob sha of every
file at it. On `synchronize`, files whose blob changed (or that are new to the PR) are "changed
since the last review": listed and shown first, the rest is context. A push that changes none
of the reviewed files gets no new session: the previous review's conclusion is carried to the
new head's check run.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

from app.agents.definitions import MAX_EXTRA_INSTRUCTIONS_CHARS
from app.errors import will_retry
from app.logs import redact
from app.pipelines.checks import CHECK_NAMES, RERUN_HINTS, complete_check, complete_known_check, finish_check, \
    open_check_run
from app.pipelines.context import JobContext, PipelineRun, config_problems_markdown, prepare
from app.pipelines.diff import FileChange, fetch_pull_files, looks_generated, matches_any
from app.pipelines.pr_state import PAUSED_REASON, paused_by, stopped_by
from app.pipelines.review.brief import Brief, BriefInput, Incremental, build_brief
from app.pipelines.review.endings import (RefusedPublish, ReviewPosts, WatchedTools, publish_refused,
                                          unfinished_reason)
from app.pipelines.review.overlap import leave_to_command, running_command_review
from app.pipelines.review.publish import Published, ReviewSession, counts_line, existing_findings, tests_table
from app.pipelines.review.route import route_for
from app.pipelines.review.router import RouterRun, ask_router
from app.pipelines.session import cost_and_duration, run_agents, tool_context
from app.repo_config import SEVERITY_ORDER, RepoConfig
from app.sessions import SessionOutcome
from app.sessions.cost import JobCost
from app.store import JobState, PullReviewState
from app.tools import default_registry

log = logging.getLogger("prmedic.review")

CHECK_NAME = CHECK_NAMES["review"]
MIN_REVIEW_BUDGET_USD = 0.10  # what a review session keeps at least (or its whole budget, if smaller) after the router
AUTOMATIC = ("opened", "reopened", "synchronize", "ready_for_review")


def skip_reason(config: RepoConfig, pr: dict[str, Any], trigger: str, *, force: bool = False) -> str | None:
    """Why the repository's config says not to review this PR, or None."""
    review = config.review
    if pr.get("state") == "closed":
        return "the pull request is closed"
    if force:
        return None
    if trigger in AUTOMATIC and trigger not in review.triggers:
        return f"the `{trigger}` trigger is off in `.github/prmedic.yml` (`review.triggers`)"
    if pr.get("draft") and not review.drafts:
        return "the pull request is a draft (`review.drafts: false`)"
    author = (pr.get("author") or "").lower()
    if pr.get("author_type") == "Bot" and not review.bot_authors:
        return f"the author `{pr.get('author')}` is a bot (`review.bot_authors: false`)"
    if author and author in {a.lower() for a in review.ignore_authors}:
        return f"the author `{pr.get('author')}` is in `review.ignore_authors`"
    for pattern in review.ignore_titles:
        if re.search(pattern, pr.get("title") or "", re.IGNORECASE):
            return f"the title matches `{pattern}` (`review.ignore_titles`)"
    labels = {(label or "").lower() for label in pr.get("labels") or []}
    hit = sorted(labels & {label.lower() for label in review.ignore_labels})
    if hit:
        return f"the pull request has the label `{hit[0]}` (`review.ignore_labels`)"
    return None


def split_ignored(files: list[FileChange], config: RepoConfig) -> tuple[list[FileChange], dict[str, str]]:
    reviewed, ignored = [], {}
    patterns = config.all_ignore_paths
    for change in files:
        pattern = matches_any(change.path, patterns)
        if pattern:
            ignored[change.path] = f"matches `{pattern}`"
        elif looks_generated(change):
            ignored[change.path] = "marked as generated"
        else:
            reviewed.append(change)
    return reviewed, ignored


def incremental_since(stored: PullReviewState | None, reviewed: list[FileChange], all_paths: set[str],
                      head_sha: str) -> Incremental | None:
    if stored is None or not stored.head_sha or stored.head_sha == head_sha or not stored.file_shas:
        return None
    changed = {c.path for c in reviewed if stored.file_shas.get(c.path) != c.blob_sha}
    gone = sorted(p for p in stored.file_shas if p not in all_paths)
    return Incremental(stored.head_sha, changed, gone)


def repo_instructions(config: RepoConfig, reviewed: list[FileChange]) -> str | None:
    """The maintainers' instructions (trusted: read from the default branch) for the files in this PR."""
    parts = []
    if config.review.instructions.strip():
        parts.append(config.review.instructions.strip())
    paths = [c.path for c in reviewed]
    for entry in config.review.path_instructions:
        if any(matches_any(path, [entry.path]) for path in paths):
            parts.append(f"For files matching `{entry.path}`:\n{entry.instructions.strip()}")
    text = "\n\n".join(parts)
    return text[:MAX_EXTRA_INSTRUCTIONS_CHARS] or None


def conclusion_for(config: RepoConfig, published: Published | None) -> tuple[str, str]:
    if published is None or not published.findings:
        return "success", "No findings worth raising"
    counts = published.counts()
    fail_on = config.review.fail_on
    title = f"{len(published.findings)} finding(s): " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if fail_on != "never" and any(n for s, n in counts.items() if SEVERITY_ORDER[s] <= SEVERITY_ORDER[fail_on]):
        return "failure", title
    return "neutral", title


def incomplete_conclusion(config: RepoConfig, published: Published | None) -> str:
    """A review that did not finish: `neutral`, or `failure` when what it published reaches `review.fail_on`."""
    return "failure" if conclusion_for(config, published)[0] == "failure" else "neutral"


async def review_pipeline(ctx: JobContext) -> dict[str, Any]:
    job, payload = ctx.job, ctx.job.payload
    pr = payload["pull_request"]
    trigger = payload.get("trigger", "opened")
    force = bool(payload.get("force"))
    run = await prepare(ctx)
    config, errors = run.config, run.loaded.errors
    if not config.review.enabled and not force:
        return {"skipped": "automatic reviews are disabled (`review.enabled: false`)"}
    # Before the head's record: a `/review` that ended since its mark was read has recorded it.
    asker = None if force else await running_command_review(ctx.store, job)
    if asker:
        return await leave_to_command(run, asker)
    stored = await ctx.store.get_pull_review(job.repo, job.pr_number)
    if stored and stored.head_sha == job.head_sha and not force:
        if stored.job_id == job.id:  # a retry after this job had already published
            link = f": {stored.summary_review_url}" if stored.summary_review_url else ""
            await complete_known_check(run, stored.conclusion or "neutral", "Review published",
                                       f"The review was published{link}; the job was interrupted afterwards.")
        return {"skipped": f"commit {job.head_sha[:7]} was already reviewed"}
    reason = skip_reason(config, pr, trigger, force=force)
    if not reason and trigger in AUTOMATIC and not force and await paused_by(ctx.store, job.repo, job.pr_number):
        reason = PAUSED_REASON
    if reason:
        return await _skip(run, reason)

    files = await fetch_pull_files(run.gh, job.repo, job.pr_number)
    reviewed, ignored = split_ignored(files, config)
    if not reviewed:
        return await _skip(run, f"all {len(files)} changed file(s) are ignored (generated, vendored or "
                                "`ignore_paths`)" if files else "the pull request changes no files")
    # `/review full` ignores what was reviewed before: a full review, not one of what changed since.
    incremental = None if payload.get("full") else incremental_since(stored, reviewed, {c.path for c in files},
                                                                      job.head_sha)
    if incremental is not None and not incremental.changed and not incremental.gone and not force:
        return await _carry_over(run, stored, incremental)

    state = stored or PullReviewState(repo=job.repo, pr_number=job.pr_number)
    if stored is None and trigger != "opened":
        fingerprints, lines, review_id = await existing_findings(run.gh, job.repo, job.pr_number,
                                                                 ctx.bot_login)
        state.fingerprints, state.findings, state.summary_review_id = sorted(fingerprints), lines, review_id

    await open_check_run(run, CHECK_NAME, job.head_sha)
    route, router = route_for(config, files, pr, payload.get("depth")), None
    if route.by == "default":
        try:
            router = await ask_router(run, pr, reviewed)
        except asyncio.CancelledError:
            await _stopped(run)
            raise
        route = router.route
    brief = build_brief(BriefInput(repo=job.repo, pr=pr, files=reviewed, ignored=ignored, config=config,
                                   incremental=incremental, prior_findings=state.findings, listed_files=len(files),
                                   route=route))
    rs = ReviewSession(repo=job.repo, pr_number=job.pr_number, head_sha=job.head_sha, base_sha=pr.get("base_sha"),
                       files={c.path: c for c in files}, config=config, state=state,
                       web_url=(ctx.settings.github_web_url if ctx.settings else None) or "https://github.com",
                       incremental=incremental, config_errors=errors)
    posts = ReviewPosts()
    tools = WatchedTools(default_registry())
    budget_usd = payload.get("budget_usd") or config.budget.review_usd
    if router is not None and router.cost is not None:  # the router's spending comes out of the review's budget
        budget_usd = max(budget_usd - router.cost.total_usd, min(MIN_REVIEW_BUDGET_USD, budget_usd))
    try:
        outcome = await run_agents(run, task=brief.text, tools=tools, budget_usd=budget_usd, depth=route.depth,
                                   extra_instructions=repo_instructions(config, reviewed),
                                   review=rs, review_posts=posts,
                                   repo_language=(job.payload.get("repository") or {}).get("language"),
                                   title=f"prmedic review {job.repo}#{job.pr_number} @ {job.head_sha[:7]}")
    except asyncio.CancelledError:
        await _stopped(run)
        raise
    except Exception as exc:
        if not will_retry(job.attempts, job.max_attempts, exc):
            await _gave_up(run, rs, brief, tools.refused, posts, exc)
        raise
    return await _finish(run, rs, brief, outcome, tools.refused, posts, router)


async def _finish(run: PipelineRun, rs: ReviewSession, brief: Brief, outcome: SessionOutcome,
                  refused: RefusedPublish | None, posts: ReviewPosts, router: RouterRun | None) -> dict[str, Any]:
    unfinished = salvage = None
    if rs.published is None:
        # The coordinator ends every review with publish_review; a session that did not has not
        # finished its review, whatever its last message says.
        unfinished = unfinished_reason(outcome, refused)
        if refused is not None:
            salvage = await publish_refused(tool_context(run, review=rs, review_posts=posts), refused)
    published = rs.published
    conclusion, title = conclusion_for(run.config, published)
    if unfinished:
        conclusion, title = incomplete_conclusion(run.config, published), _title(unfinished, published)
    if published is not None:
        rs.state.conclusion = conclusion
        await run.ctx.store.save_pull_review(rs.state)
    ending = Ending(unfinished, refused, salvage) if unfinished else None
    router_cost = router.cost if router is not None else None
    await finish_check(run, conclusion, title, check_summary(run, rs, brief, outcome, ending, router_cost))
    result: dict[str, Any] = {
        "conclusion": conclusion, "review_url": (published.url or None) if published else None,
        "findings": published.counts() if published else {}, "inline": len(published.inline) if published else 0,
        "folded": len(published.folded) if published else 0, "incremental": rs.incremental is not None,
        "brief_tokens": brief.tokens, "files": brief.files_named,
    }
    if brief.route is not None:
        result["route"] = brief.route.as_dict()
    if unfinished:
        result["unfinished"] = unfinished
    result |= outcome.as_result()
    if router is not None:  # the job's cost is both sessions'
        result["router"] = router.as_dict()
        result["cost"] = outcome.cost.plus(router_cost).as_dict()
    return result


@dataclass
class Ending:
    """Why a review session did not finish, and what became of a refused `publish_review` call."""

    reason: str
    refused: RefusedPublish | None = None
    salvage_failed: str | None = None  # why its valid parts could not be published (None: they were)
    agents_published: bool = False  # the session failed after the agents' review went out


def _title(reason: str, published: Published | None) -> str:
    title = reason[:1].upper() + reason[1:]
    if published is not None:
        title += f"; {len(published.findings)} finding(s) published from its refused review"
    return title


def _quote(text: str) -> str:
    return "> " + redact(text.strip())[:2000].replace("\n", "\n> ")


def ending_markdown(ending: Ending, outcome: SessionOutcome | None) -> list[str]:
    parts = [f"**The review did not finish:** {ending.reason}." + (
        "" if ending.agents_published else
        " prmedic does not claim there is nothing to raise: the agents did not publish their review.")]
    if ending.refused is not None:
        parts.append("Their last `publish_review` call was refused; prmedic answered:")
        parts.append(_quote(ending.refused.answer))
        parts.append("prmedic published the valid parts of that call." if ending.salvage_failed is None else
                     f"prmedic could not publish any of it: {ending.salvage_failed}.")
    if outcome is not None and outcome.final_message:
        parts += ["The agents' last message:", _quote(outcome.final_message)]
    return parts


def check_summary(run: PipelineRun, rs: ReviewSession, brief: Brief, outcome: SessionOutcome | None,
                  ending: Ending | None = None, router_cost: JobCost | None = None) -> str:
    published = rs.published
    parts = ending_markdown(ending, outcome) if ending is not None else []
    if published is not None and not published.posted:
        parts.append("**No findings.** Nothing was posted on the pull request. The agents' summary:")
        parts.append(_quote(published.summary or "(none)"))
        if published.tests_run:
            parts.append(tests_table(published.tests_run))
        parts += published.notes
    elif published is not None:
        parts.append(f"**Findings:** {counts_line(published.counts())} — [the review]({published.url})")
        parts.append(f"{len(published.inline)} inline, {len(published.folded)} in the review summary (not placeable "
                     f"on the diff or over the cap), {len(published.repeated)} posted earlier and not repeated.")
        if published.tests_run:
            parts.append(tests_table(published.tests_run))
        parts += published.notes
    scope = (f"Re-review: {len(rs.incremental.changed)} file(s) changed since `{rs.incremental.since_sha[:7]}`"
             if rs.incremental else "Full review")
    left = f"; the diffs of {brief.diffs_left_out} left for the agents to read" if brief.diffs_left_out else ""
    parts.append(f"{scope} of {brief.files_named} changed file(s){left}. Brief: ~{brief.tokens:,} of "
                 f"{brief.budget_tokens:,} tokens.")
    if brief.route is not None:
        parts.append(brief.route.line)
    if rs.config_errors:
        parts.append(config_problems_markdown(rs.config_errors))
    if ending is not None and published is None:
        parts.append(RERUN_HINTS["review"])
    parts.append(cost_and_duration(outcome, run, router_cost))
    return redact("\n\n".join(parts))


# -- the ways a review ends without a session of its own --------------------------------------

async def _skip(run: PipelineRun, reason: str) -> dict[str, Any]:
    """A completed `skipped` check run saying why (required checks pass; the author knows)."""
    summary = f"prmedic did not review this pull request: {reason}."
    if run.loaded.errors:
        summary += "\n\n" + config_problems_markdown(run.loaded.errors)
    await complete_check(run, CHECK_NAME, "skipped", f"Skipped: {reason}"[:200], summary)
    return {"skipped": reason}


async def _carry_over(run: PipelineRun, stored: PullReviewState, inc: Incremental) -> dict[str, Any]:
    conclusion = stored.conclusion or "success"
    link = f" ([review]({stored.summary_review_url}))" if stored.summary_review_url else ""
    summary = (f"No reviewed file changed since `{inc.since_sha[:7]}`, so its review{link} stands "
               f"(conclusion: {conclusion}).")
    await complete_check(run, CHECK_NAME, conclusion, f"Unchanged since {inc.since_sha[:7]}: the earlier review stands",
                         summary)
    stored.head_sha, stored.job_id = run.job.head_sha, run.job.id
    await run.ctx.store.save_pull_review(stored)
    return {"skipped": f"no reviewed file changed since {inc.since_sha[:7]}", "conclusion": conclusion}


async def _stopped(run: PipelineRun) -> None:
    """Cancelled: if a newer push superseded the job (or someone stopped it), close its check run."""
    job = await run.ctx.store.get_job(run.job.id)
    if job is None or job.state not in (JobState.superseded, JobState.cancelled) or run.check_run_id is None:
        return  # the worker is shutting down: the next attempt takes the check run up again
    title = "Superseded by a newer push" if job.state is JobState.superseded else "Cancelled"
    summary = ("A newer commit was pushed while this review ran; prmedic reviews that one instead."
               if job.state is JobState.superseded else "The review was stopped before it finished.")
    stopper = await stopped_by(run.ctx.store, job.id) if job.state is JobState.cancelled else None
    if stopper:
        title, summary = f"Stopped by @{stopper}", f"@{stopper} stopped this review with `/stop` before it finished."
    try:
        await asyncio.shield(asyncio.wait_for(finish_check(run, "cancelled", title, summary), 15))
    except (asyncio.CancelledError, asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - best effort
        log.warning("job %s: could not close the check run after %s: %s", run.job.id, title.lower(), exc)


async def _gave_up(run: PipelineRun, rs: ReviewSession, brief: Brief, refused: RefusedPublish | None,
                   posts: ReviewPosts, exc: Exception) -> None:
    """The session failed and no retry follows: publish what the agents had, and say why it stopped."""
    if run.check_run_id is None:
        return  # the worker completes whatever check run the job opened
    try:
        agents_published = rs.published is not None
        refused = None if agents_published else refused
        salvage = None
        if refused is not None:
            salvage = await publish_refused(tool_context(run, review=rs, review_posts=posts), refused)
        reason = unfinished_reason(None, refused, exc)
        published = rs.published
        conclusion = incomplete_conclusion(run.config, published)
        if published is not None:
            rs.state.conclusion = conclusion
            await run.ctx.store.save_pull_review(rs.state)
        ending = Ending(reason, refused, salvage, agents_published)
        await finish_check(run, conclusion, f"prmedic could not finish: {reason}",
                           check_summary(run, rs, brief, None, ending))
    except Exception as inner:  # noqa: BLE001 - the job's own error matters more; the worker tries again
        log.warning("job %s: could not complete the check run: %s", run.job.id, redact(str(inner)))
