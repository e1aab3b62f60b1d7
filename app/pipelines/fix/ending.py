"""How a fix session ends on GitHub: the `prmedic fix` check run completed with what happened (a
fix proposed, why none was, or who stopped it), and for CI fixes without a fix the PR's fix
comment. A command's work (`/fix`, `/test`) posts no fix comment: its answer comment says it."""

from __future__ import annotations

import asyncio
import logging

from app.logs import redact
from app.pipelines.checks import finish_check, give_up_reason
from app.pipelines.context import PipelineRun
from app.pipelines.fix.approval import offer_decision
from app.pipelines.fix.delivery import no_fix_comment, upsert_fix_comment
from app.pipelines.fix.propose import FixTarget
from app.pipelines.fix.verify_texts import failure_reason, verification_refusal
from app.pipelines.fix_request import NOUN, PHRASE
from app.pipelines.markdown import fence
from app.pipelines.pr_state import stopped_by
from app.pipelines.session import cost_and_duration
from app.sessions import SessionOutcome
from app.store import JobState

log = logging.getLogger("prmedic.pipeline.fix")


def no_fix_reason(target: FixTarget, outcome: SessionOutcome | None, error: BaseException | None = None) -> str:
    """Why the session proposed no fix, in words for a check run title."""
    if error is not None:
        return give_up_reason(error)
    if target.refusals and target.refused_by_verification and target.verification is not None:
        return failure_reason(target.verification)
    if target.refusals:
        lines = [line.strip() for line in target.refusals[-1].splitlines() if line.strip()] or ["refused"]
        first = next((line[2:] for line in lines if line.startswith("- ")), lines[0])
        return f"the agents' last patch was refused: {first[:120]}"
    if outcome is not None and outcome.budget_reached:
        budget = " (`budget.command_usd`)" if target.command else ""
        return f"the budget{budget} ran out before the agents proposed a patch"
    return "the agents ended without proposing a patch"


def delivered_title(target: FixTarget) -> str:
    assert target.delivered is not None
    what = "Fix" if target.command is None else NOUN[target.purpose].capitalize()
    return f"{what} proposed: {target.delivered.url}"


def command_no_fix_summary(target: FixTarget, why: str, final_message: str | None) -> str:
    """The check run summary of a command's work that proposed nothing (pure)."""
    parts = [f"prmedic proposed no {NOUN[target.purpose]} for `{target.command}` by @{target.requested_by}: {why}."]
    if target.refusals:
        parts.append(verification_refusal(target.refusals[-1]) if target.refused_by_verification else
                     "Why prmedic refused the last patch:\n\n" + fence(target.refusals[-1][:3000]))
    if final_message and final_message.strip():
        parts.append("The agents' last message:\n\n> " + final_message.strip()[:2000].replace("\n", "\n> "))
    return redact("\n\n".join(parts))


async def finish(run: PipelineRun, target: FixTarget, outcome: SessionOutcome | None, *,
                 error: BaseException | None = None) -> None:
    """Complete the check run with the session's result; a CI fix without a fix also says so on the PR."""
    footer = cost_and_duration(outcome, run, target.verification_cost)
    comment = None
    if target.delivered is not None and target.waiting is not None:
        await _offer(run, target, footer)
        return
    if target.delivered is not None:
        title = delivered_title(target)
        counted = f" (attempt {target.attempt} of {target.max_attempts})" if target.command is None else \
            f" (asked with `{target.command}` by @{target.requested_by})"
        summary = f"prmedic proposed {PHRASE[target.purpose]}{counted}: {target.delivered.url}\n\n{footer}"
    else:
        why = no_fix_reason(target, outcome, error)
        last = outcome.final_message if outcome else None
        if target.command is not None:  # the command's answer comment says it: no fix comment
            title = f"No {NOUN[target.purpose]} proposed: {why}"
            summary = f"{command_no_fix_summary(target, why, last)}\n\n{footer}"
        else:
            title = f"prmedic could not produce a fix: {why}"
            comment = no_fix_comment(target, why, last)
            summary = f"{comment}\n\n{footer}"
    try:
        await finish_check(run, "neutral", title, summary)
    except Exception as exc:  # noqa: BLE001 - the fix itself stands
        log.warning("could not complete the fix check run: %s", redact(str(exc)))
    if comment is not None:
        try:
            await upsert_fix_comment(await run.github(), target.repo, target.pr_number, comment)
        except Exception as exc:  # noqa: BLE001 - the check run says it too
            log.warning("%s#%s: could not comment that no fix was produced: %s", target.repo, target.pr_number,
                        redact(str(exc)))


async def _offer(run: PipelineRun, target: FixTarget, footer: str) -> None:
    """A fix awaiting approval: its check run ends `action_required` with the buttons."""
    assert target.delivered is not None and target.waiting is not None
    try:
        await offer_decision(await run.github(), run.ctx.store, target.repo, run.check_run_id, target.delivered.id,
                             target.waiting, purpose=PHRASE[target.purpose], footer=footer)
    except Exception as exc:  # noqa: BLE001 - the fix stands; `/apply` and `/discard` still work
        log.warning("could not offer the decision on the fix check run: %s", redact(str(exc)))


async def stopped(run: PipelineRun, target: FixTarget) -> None:
    """Cancelled: if someone stopped the job (`/stop`) or newer CI results superseded it, close its
    check run `cancelled` saying so. When the worker itself is shutting down, the check run stays
    open for the next attempt, which takes it up again. A fix delivered before the stop stands."""
    job = await run.ctx.store.get_job(run.job.id)
    if job is None or job.state not in (JobState.superseded, JobState.cancelled) or run.check_run_id is None:
        return
    if target.delivered is not None:
        try:
            await asyncio.shield(asyncio.wait_for(finish(run, target, None), 15))
        except (asyncio.CancelledError, asyncio.TimeoutError) as exc:
            log.warning("job %s: could not close the check run of a delivered fix: %s", run.job.id, exc)
        return
    what = PHRASE[target.purpose]
    if job.state is JobState.superseded:
        title, summary = "Superseded by newer CI results", ("Newer CI results arrived on this pull request while "
                                                           "this fix ran; prmedic works on those instead.")
    else:
        by = await stopped_by(run.ctx.store, job.id)
        title = f"Stopped by @{by}" if by else "Cancelled"
        summary = (f"@{by} stopped this job with `/stop` before it proposed {what}." if by else
                   f"The job was stopped before it proposed {what}.")
    try:
        await asyncio.shield(asyncio.wait_for(
            finish_check(run, "cancelled", title, f"{summary}\n\n{cost_and_duration(None, run)}"), 15))
    except (asyncio.CancelledError, asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - best effort
        log.warning("job %s: could not close the check run after %s: %s", run.job.id, title.lower(), exc)
