"""The commands that need no agent session: `/pause`, `/resume`, `/stop`, `/config`, and
`/review` (which runs the review pipeline inline, for this command job)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from app.pipelines.checks import known_check_run
from app.pipelines.commands import texts
from app.pipelines.context import JobContext
from app.pipelines.pr_state import (
    CommandReview,
    clear_command_review,
    mark_command_review,
    set_paused,
    stopped_by_key,
)
from app.routing.fields import pull_request_fields
from app.sessions.cost import cost_from_result
from app.store import JobState

if TYPE_CHECKING:
    from app.pipelines.commands.pipeline import Command

Result = tuple[bool, dict[str, Any]]


async def pause(command: Command) -> Result:
    job = command.ctx.job
    await set_paused(command.ctx.store, job.repo, job.pr_number, command.user or "someone")
    await command.feedback.answer(
        f"Automatic reviews are **paused** on this pull request (by @{command.user}): pushes are not reviewed "
        "until `/resume`. Commands still work: `/review` reviews the head now.")
    return True, {"result": "paused"}


async def resume(command: Command) -> Result:
    job = command.ctx.job
    await set_paused(command.ctx.store, job.repo, job.pr_number, None)
    await command.feedback.answer(
        f"Automatic reviews are **on** again for this pull request (by @{command.user}): the next push is "
        "reviewed; `/review` reviews the head now.")
    return True, {"result": "resumed"}


async def stop(command: Command) -> Result:
    """Cancel prmedic's running and queued jobs on this PR (all but this one)."""
    store, job = command.ctx.store, command.ctx.job
    jobs = await store.list_jobs(states=[JobState.queued, JobState.running], repo=job.repo,
                                 pr_number=job.pr_number, limit=200)
    stopped = []
    for other in sorted(jobs, key=lambda j: j.id):
        if other.id == job.id:
            continue
        await store.set_meta(stopped_by_key(other.id), command.user or "someone")
        if await store.request_cancel(other.id, JobState.cancelled):
            stopped.append(f"- {other.kind.value} job #{other.id} ({other.state.value})")
    if stopped:
        body = f"Stopped {len(stopped)} job(s) on this pull request (by @{command.user}):\n\n" + "\n".join(stopped)
    else:
        body = "prmedic had nothing running or queued on this pull request."
    await command.feedback.answer(body)
    return True, {"result": "stopped", "stopped": len(stopped)}


async def config(command: Command) -> Result:
    await command.feedback.answer(texts.config_text(command.run.loaded))
    return True, {"result": "answered", "config_problems": len(command.run.loaded.errors)}


async def review(command: Command) -> Result:
    """A review of the PR head now, through the review pipeline, as this command job (`force`:
    config skips do not apply); a head already reviewed is reviewed again only with `full` or a
    depth (`deep`, `light`, `standard`: this review's route, app/pipelines/review/route.py)."""
    run, ctx = command.run, command.ctx
    job = ctx.job
    full, depth = review_args(command.args)
    again = full or depth is not None
    pr = pull_request_fields(await run.gh.getitem(f"/repos/{job.repo}/pulls/{job.pr_number}"))
    head = pr["head_sha"]
    if pr.get("state") == "closed":
        await command.feedback.answer("The pull request is closed: prmedic does not review it.")
        return False, {"result": "closed"}
    # Marked before looking at the automatic review and the head's record, so an automatic review
    # starting from now on sees this command, and one that ended before has recorded the head
    # (app/pipelines/review/overlap.py); "reviewing" once this command has decided to review.
    mark = CommandReview(head, job.id, reviewing=again)
    await mark_command_review(ctx.store, job.repo, job.pr_number, mark)
    try:
        if not again:
            answer = await _already(ctx, head)
            if answer is not None:
                await clear_command_review(ctx.store, job.repo, job.pr_number, job.id)  # an automatic review may wait
                await command.feedback.answer(answer[0])
                return True, {"result": answer[1], "head_sha": head}
            await mark_command_review(ctx.store, job.repo, job.pr_number, dataclasses.replace(mark, reviewing=True))
        return await _review_head(command, pr, full, depth)
    finally:
        await clear_command_review(ctx.store, job.repo, job.pr_number, job.id)


def review_args(args: str) -> tuple[bool, str | None]:
    """`/review`'s words, in any order: `full` (from scratch) and a depth; other words are ignored."""
    words = [word.lower() for word in args.split()[:3]]
    depth = next((word for word in words if word in ("light", "standard", "deep")), None)
    return "full" in words, depth


async def _already(ctx: JobContext, head: str) -> tuple[str, str] | None:
    """Why `/review` (not `full`) does not review `head`: (the answer, the result), or None."""
    job = ctx.job
    running = await ctx.store.list_jobs(states=[JobState.running], repo=job.repo, pr_number=job.pr_number,
                                        kind="review")
    if any(other.head_sha == head for other in running):
        return (f"A review of `{head[:7]}` is already running; it posts its result here when it is done (one "
                "review per commit).", "already_running")
    stored = await ctx.store.get_pull_review(job.repo, job.pr_number)
    if stored and stored.head_sha == head:
        link = f" ([the review]({stored.summary_review_url}))" if stored.summary_review_url else ""
        return (f"Commit `{head[:7]}` was already reviewed{link}. `/review full` reviews it again from scratch.",
                "already_reviewed")
    return None


async def _review_head(command: Command, pr: dict[str, Any], full: bool, depth: str | None = None) -> Result:
    """`/review`'s review itself: the review pipeline on the head, its outcome in the answer comment."""
    run, ctx = command.run, command.ctx
    job, head = ctx.job, pr["head_sha"]
    command.answer.heading = (f"Reviewing `{head[:7]}`" + (" from scratch" if full else "") +
                              (f", {depth}" if depth else "") +
                              f" (asked by @{command.user})…")
    await command.answer.start()
    payload = {"repository": job.payload.get("repository") or {}, "pull_request": pr, "trigger": "command",
               "force": True, "full": full, "requested_by": command.user,
               "budget_usd": run.config.budget.command_usd}
    if depth:
        payload["depth"] = depth
    review_job = job.model_copy(update={"head_sha": head, "payload": payload})
    result = await command.review(dataclasses.replace(ctx, job=review_job)) or {}
    check_id = await known_check_run(run)
    web = ((ctx.settings.github_web_url if ctx.settings else None) or "https://github.com").rstrip("/")
    links = []
    if result.get("review_url"):
        links.append(f"[the review]({result['review_url']})")
    if check_id:
        links.append(f"[the check run]({web}/{job.repo}/runs/{check_id})")
    where = (" — " + ", ".join(links)) if links else ""
    if result.get("skipped"):
        body = f"Not reviewed: {result['skipped']}{where}."
    elif result.get("unfinished"):
        body = f"The review of `{head[:7]}` did not finish: {result['unfinished']}{where}."
    else:
        findings = sum((result.get("findings") or {}).values())
        body = f"Reviewed `{head[:7]}`: {findings} finding(s), conclusion **{result.get('conclusion')}**{where}."
    total = cost_from_result(result)
    cost = f"Cost (list price): ${total:.2f} · " if total is not None else ""
    await command.answer.finish(f"`/review` by @{command.user} · {cost}Duration: {run.elapsed()}", body=body)
    ok = not result.get("skipped") and not result.get("unfinished")
    return ok, {"result": "reviewed" if ok else "not_reviewed", "head_sha": head,
                "review": {k: result.get(k) for k in ("conclusion", "review_url", "skipped", "unfinished", "route")
                           if result.get(k) is not None}}


HANDLERS: dict[str, Callable[[Command], Awaitable[Result]]] = {
    "pause": pause, "resume": resume, "stop": stop, "config": config, "review": review}
