"""A fix's independent verification (sequential agents): after `propose_fix` checked and committed
a patch, and before anything is delivered, a second, fresh session runs the verifier
(`agents/verifier.md`: reads and runs, never edits) with the repository mounted at the fix commit
and the read-only token as always. It runs the commands the fix session named and the tests of the
touched code, and reports through `report_verification`. Only a passed report is delivered;
anything else goes back to the fix session as `propose_fix`'s answer (`VerificationFailed`).

The verifier's session is an `inner` one: it runs within the fix session's slot of the runtime's
cap (the fix session holds it while `propose_fix` runs; a second slot could deadlock a full
runtime) and never attaches to the job's open session, the fix session's. If the process dies
while it runs, the fix session is resumed: its `propose_fix` is answered "effect unknown" by the
runner, which resumes only a session of the fix's own agent and closes the verifier's. Its cost is part of the job's.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anthropic

from app.agents.derived import environment_for_job
from app.agents.sync import default_definitions, ensure_synced
from app.errors import describe
from app.logs import redact
from app.pipelines.context import PipelineRun
from app.pipelines.fix.approval import delete_branch
from app.pipelines.fix.approval_texts import approval_branch
from app.pipelines.fix.delivery import put_fix_branch
from app.pipelines.fix.verify_texts import (
    VerificationResult,
    failure_answer,
    read_report,
    verifier_task,
)
from app.pipelines.session import count_cost
from app.routing.fixes import fix_branch_name
from app.sessions import SessionFailed, SessionSpec
from app.sessions.cost import spent_before_failing
from app.sessions.errors import SessionRetryable
from app.store import JobState
from app.tools import ToolContext, ToolError, ToolRegistry, catalog_tool
from app.tools.schemas import ReportVerificationInput

if TYPE_CHECKING:
    from app.pipelines.fix.propose import FixTarget

log = logging.getLogger("prmedic.pipeline.fix")

BUDGET_SHARE = 0.25  # of `budget.fix_usd`
BUDGET_MAX_USD = 2.0
BUDGET_MIN_USD = 0.10
TIMEOUT_SECONDS = 900.0
JOB_POLL_SECONDS = 2.0  # how often the job's state is read while the verifier runs


class VerificationFailed(ToolError):
    """The verification did not pass: nothing was delivered; the text goes back to the fix session."""


class VerificationsExhausted(ToolError):
    """`propose_fix` called again after the last verification the job allows failed: refused
    without a verifier; the job's ending still reports that last failure."""


@dataclass
class Verification:
    """The verifier session's state (`ToolContext.verification`): the commit it checks, its report."""

    fix_sha: str
    report: ReportVerificationInput | None = None


async def report_verification(ctx: ToolContext, args: ReportVerificationInput) -> str:
    """The verifier's report; the last one counts."""
    assert ctx.verification is not None  # CustomTool.needs
    ctx.verification.report = args
    verdict = "passed" if args.passed else "did not pass"
    return f"Recorded: the verification {verdict} ({len(args.commands)} command(s)). End your turn now."


def budget_usd(fix_usd: float) -> float:
    """The verifier's budget: a share of the fix's, within bounds (never more than the fix's)."""
    return min(max(fix_usd * BUDGET_SHARE, BUDGET_MIN_USD), BUDGET_MAX_USD, fix_usd)


def verify_branch(t: FixTarget) -> str:
    """Where a fix waits while it is verified: the approval branch (the fix is delivered there),
    else a branch of its own, deleted after delivery; never the pull request's or a fix PR's branch."""
    if t.approval:
        return approval_branch(t.pr_number, t.root_sha, t.job_id)
    return f"{fix_branch_name(t.pr_number, t.root_sha)}-verify-{t.job_id}"


def verifier_name() -> str | None:
    teams = default_definitions().teams
    return teams.verifier if teams is not None else None


async def verify_fix(ctx: ToolContext, t: FixTarget, fix_sha: str, commands: list[str],
                     changed_paths: list[str]) -> tuple[VerificationResult, str]:
    """Put the fix commit on its branch and verify it: the result and the branch when it passed;
    `VerificationFailed` (the branch deleted) when it did not."""
    gh = await ctx.github()  # type: ignore[misc]
    branch = verify_branch(t)
    await put_fix_branch(gh, t.repo, branch, fix_sha, expected=None)
    try:
        result = await run_verifier(ctx, t, fix_sha, commands, changed_paths)
        t.verification = result
        t.verification_cost = result.cost if t.verification_cost is None else t.verification_cost.plus(result.cost)
        stopped = await _stopped(ctx.run)  # type: ignore[arg-type]
        if stopped is not None:  # a stopped job delivers nothing, whatever the verifier found
            raise ToolError(stopped)
    except ToolError:
        await _delete(gh, t.repo, branch)
        raise
    if result.passed:
        return result, branch
    t.failed_verifications += 1
    await _delete(gh, t.repo, branch)
    raise VerificationFailed(failure_answer(result, failed=t.failed_verifications, allowed=t.verifications_allowed))


async def _delete(gh: Any, repo: str, branch: str) -> None:
    try:
        await delete_branch(gh, repo, branch)
    except Exception as exc:  # noqa: BLE001 - the fix is refused either way
        log.warning("%s: could not delete the verification branch %s: %s", repo, branch, redact(str(exc)))


async def _stopped(run: PipelineRun) -> str | None:
    """Why the job may no longer deliver (superseded, cancelled), or None while it runs."""
    job = await run.ctx.store.get_job(run.job.id)
    if job is not None and job.state is JobState.running:
        return None
    what = job.state.value if job is not None else "deleted"
    return f"Refused: this job was {what} while the fix was being verified, so nothing was delivered. Stop now."


async def run_verifier(ctx: ToolContext, t: FixTarget, fix_sha: str, commands: list[str],
                       changed_paths: list[str]) -> VerificationResult:
    """The verifier's session at `fix_sha`; whatever goes wrong is a result that did not pass.
    Refused (`ToolError`) if the job stops meanwhile: its session is interrupted, nothing delivered."""
    run = ctx.run
    assert run is not None  # the fix pipeline sets it
    runtime, client, name = run.ctx.sessions, run.ctx.anthropic, verifier_name()
    if runtime is None or client is None or name is None:
        why = "no verifier agent is defined in agents/teams.yml" if name is None else "no agent runtime"
        return VerificationResult(False, fix_sha, problem=why)
    model = default_definitions().agents[name].model
    state = Verification(fix_sha)
    task = verifier_task(repo=t.repo, pr_number=t.pr_number, fix_sha=fix_sha, base_sha=t.head_sha,
                         commands=commands, changed_paths=changed_paths, failing_checks=list(t.failing_checks))
    try:
        team = await ensure_synced(client, run.ctx.store)
        agent = team.agents[name]
        environment_id = await environment_for_job(client, run.ctx.store, team, run.config.environment,
                                                   (run.job.payload.get("repository") or {}).get("language"))
        job = run.job.model_copy(update={"head_sha": fix_sha, "pr_number": t.pr_number})
        spec = SessionSpec.for_job(
            job, task=task, agent_id=agent.id, agent_version=agent.version, environment_id=environment_id,
            budget_cents=max(1, round(budget_usd(t.budget_usd or run.config.budget.fix_usd) * 100)),
            title=f"prmedic verify {t.repo}#{t.pr_number} @ {fix_sha[:7]}", metadata={"role": "verifier"},
            max_duration_seconds=TIMEOUT_SECONDS, inner=True)
        verifier_ctx = ToolContext(job=job, store=run.ctx.store, github=run.github, run=run, verification=state)
        outcome = await _while_running(run, runtime.run(
            spec, verifier_ctx, tools=ToolRegistry([catalog_tool("report_verification")])))
    except (SessionFailed, SessionRetryable) as exc:
        cost = spent_before_failing(exc, model)
        _count(run, cost)
        return read_report(fix_sha, state.report, error=str(exc), cost=cost)
    except anthropic.AnthropicError as exc:
        return read_report(fix_sha, state.report, error=describe(exc))
    cost = outcome.cost if outcome.usage is not None or outcome.list_cost_cents is not None else None
    _count(run, cost)
    return read_report(fix_sha, state.report, final_message=outcome.final_message,
                       budget_reached=outcome.budget_reached, cost=cost)


async def _while_running(run: PipelineRun, session: Any) -> Any:
    """Await the verifier's session, stopping it if the job is superseded or cancelled meanwhile
    (the fix session's tool call is shielded from cancellation, so the job's stop does not reach it)."""
    task = asyncio.ensure_future(session)
    while True:
        done, _ = await asyncio.wait([task], timeout=JOB_POLL_SECONDS)
        if done:
            return task.result()
        stopped = await _stopped(run)
        if stopped is not None:
            task.cancel()
            await asyncio.wait([task])
            raise ToolError(stopped)


def _count(run: PipelineRun, cost: Any) -> None:
    if cost is not None:
        count_cost(run, cost, None)

