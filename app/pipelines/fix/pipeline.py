"""The fix pipeline: a failing check on a PR → a session that reproduces, fixes and verifies →
`propose_fix` → a fix PR (or a pushed commit, or for forks suggestions / a patch comment).

It also follows up on its own fixes: when CI finishes on a commit prmedic made, the outcome is
recorded (fix success rate) and, if it failed and attempts remain, the next attempt starts from
that commit with the new logs. Attempts are counted per PR head ("root"), across follow-ups.

`run_fix(ctx, FixRequest(...))` is also the entry for the slash-commands (`/fix`, `/test`, wired
through `app.runtime`): work on the PR's head a person asked for. It runs also when no check
failed (a change, tests; a plain `/fix` with nothing failing is skipped with a hint), and it does
not count against `fix.max_attempts`: that cap stops prmedic from looping on its own CI results,
while a command is one explicit request, from someone with the permission it needs, paid from
`budget.command_usd` — and it must not use up the attempts the automatic repair has left.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.errors import will_retry
from app.pipelines.checks import CHECK_NAMES, open_check_run
from app.pipelines.context import JobContext, PipelineRun, prepare
from app.pipelines.fix.approval import decide_fix
from app.pipelines.fix.approval_texts import AWAITING
from app.pipelines.fix.brief import FixBrief, build_task
from app.pipelines.fix.ci_logs import CiLogs, FailingCheck, gather_failures, read_ci_log
from app.pipelines.fix.ending import finish, no_fix_reason, stopped
from app.pipelines.fix.verify_texts import NOT_VERIFIED, NOT_VERIFIED_DRY_RUN
from app.pipelines.fix.propose import FixTarget, propose_fix
from app.pipelines.fix_request import NOUN, FixDecision, FixRequest, nothing_failing
from app.pipelines.session import run_agents
from app.routing.fixes import fix_branch_name, fix_branch_pr
from app.store import FixProposal
from app.tools import default_registry
from app.tools.schemas import ProposeFixInput, ReadCiLogInput

log = logging.getLogger("prmedic.pipeline.fix")

__all__ = ["FixRequest", "fix_pipeline", "no_fix_reason", "run_fix"]


def _own_check_names() -> set[str]:
    return set(CHECK_NAMES.values())


async def fix_pipeline(ctx: JobContext) -> dict[str, Any]:
    return await run_fix(ctx, FixRequest.from_job(ctx.job))


async def run_fix(ctx: JobContext, req: FixRequest | FixDecision) -> dict[str, Any]:
    if isinstance(req, FixDecision):  # `/apply`, `/discard` or a button: a fix awaiting approval
        return await decide_fix(ctx, req)
    run = await prepare(ctx)
    if req.trigger == "command":
        return await _for_command(run, req)
    cfg = run.config.fix
    if not cfg.enabled and not req.follow_up:
        return {"skipped": "fixes are turned off in .github/prmedic.yml (fix.enabled)"}
    gh = run.gh
    previous = await ctx.store.find_fix_proposal(req.repo, fix_sha=req.head_sha)
    if previous is None and fix_branch_pr(req.head_branch) is not None:
        previous = await ctx.store.find_fix_proposal(req.repo, branch=req.head_branch)
    if previous is not None and previous.outcome == AWAITING:  # CI on its branch: a person decides first
        return {"head_sha": req.head_sha, "skipped": f"the fix {req.head_sha[:7]} waits for a person's approval"}
    pr = await _find_pr(gh, req, previous)
    if pr is None:
        return {"skipped": f"{req.head_sha[:7]} is not the head of an open pull request"}
    number = pr["number"]
    checks = await _failing(run, req)
    result: dict[str, Any] = {"pr_number": number, "head_sha": req.head_sha}
    if previous is not None:
        result["follows_up"] = previous.id
        app_id = ctx.settings.app_id if ctx.settings else None
        settled = await _record_outcome(ctx, gh, req, previous, failing=bool(checks), app_id=app_id)
        result["previous_fix_outcome"] = settled
        if not checks:
            return result
    elif not checks:
        return {**result, "skipped": "no failing checks on this commit (anymore)"}
    elif pr["head"]["sha"] != req.head_sha:
        return {**result, "skipped": f"the pull request has moved on to {pr['head']['sha'][:7]}"}
    if previous is None and _is_bot(pr) and not cfg.bot_authors:
        return {**result, "skipped": f"@{pr['user']['login']} is a bot; fix.bot_authors is off"}
    if not cfg.enabled:
        return {**result, "skipped": "fixes are turned off in .github/prmedic.yml (fix.enabled)"}
    root = previous.root_sha if previous is not None else req.head_sha
    if previous is not None and pr["head"]["sha"] not in (root, req.head_sha):
        return {**result, "skipped": "the pull request moved on since the previous fix"}
    allowed, attempt = await ctx.store.claim_fix_attempt(req.repo, number, root, ctx.job.id, cfg.max_attempts)
    if not allowed:
        log.info("fix %s#%s@%s: attempt cap (%d) reached", req.repo, number, root[:7], cfg.max_attempts)
        return {**result, "skipped": f"attempt cap reached ({attempt} of {cfg.max_attempts} for {root[:7]})"}
    return {**result, **await _attempt(run, req, pr, checks, previous, root, attempt)}


async def _for_command(run: PipelineRun, req: FixRequest) -> dict[str, Any]:
    """`/fix` or `/test` on the PR's head: its own PR, open, still at the head the command saw.
    Neither `fix.enabled` nor `fix.bot_authors` apply (they are about automatic repairs), nor the
    attempt cap (module docstring); a fix PR goes on a branch of its own, one per command job."""
    assert req.pr_number is not None
    pr = await run.gh.getitem(f"/repos/{req.repo}/pulls/{req.pr_number}")
    result: dict[str, Any] = {"pr_number": req.pr_number, "head_sha": req.head_sha, "purpose": req.purpose}
    if pr.get("state") != "open":
        return {**result, "skipped": "the pull request is closed"}
    if pr["head"]["sha"] != req.head_sha:
        return {**result, "skipped": f"the pull request has moved on to {pr['head']['sha'][:7]}"}
    checks = await _failing(run, req)
    if req.purpose == "repair" and not checks:
        return {**result, "skipped": nothing_failing(req.head_sha)}
    return {**result, **await _attempt(run, req, pr, checks, None, req.head_sha, 0)}


async def _failing(run: PipelineRun, req: FixRequest) -> list[FailingCheck]:
    app_id = run.ctx.settings.app_id if run.ctx.settings else None
    return await gather_failures(run.gh, req.repo, req.head_sha, run_ids=req.run_ids, app_id=app_id,
                                 own_names=_own_check_names())


async def _find_pr(gh: Any, req: FixRequest, previous: FixProposal | None) -> dict | None:
    if previous is not None:
        return await gh.getitem(f"/repos/{req.repo}/pulls/{previous.pr_number}")
    numbers = [req.pr_number] if req.pr_number else list(req.pr_candidates)
    if not numbers:
        numbers = [pr["number"] async for pr in gh.getiter(f"/repos/{req.repo}/commits/{req.head_sha}/pulls")
                   if pr.get("state") == "open" and pr["head"]["sha"] == req.head_sha]
    if not numbers:
        # A fork's commit lists no pull request on the base repository (and the event's
        # `pull_requests` is empty for forks): find the open pull request whose head it is.
        numbers = [pr["number"] async for pr in gh.getiter(f"/repos/{req.repo}/pulls?state=open&per_page=100")
                   if pr["head"]["sha"] == req.head_sha]
    for number in numbers:
        pr = await gh.getitem(f"/repos/{req.repo}/pulls/{number}")
        if pr.get("state") == "open" and fix_branch_pr(pr["head"]["ref"]) is None:
            return pr
    return None


def _is_bot(pr: dict) -> bool:
    user = pr.get("user") or {}
    return user.get("type") == "Bot" or str(user.get("login", "")).endswith("[bot]")


def _is_fork(pr: dict) -> bool:
    head_repo = (pr.get("head") or {}).get("repo") or {}
    return head_repo.get("full_name") != ((pr.get("base") or {}).get("repo") or {}).get("full_name")


async def _record_outcome(ctx: JobContext, gh: Any, req: FixRequest, previous: FixProposal, *, failing: bool,
                          app_id: int | None) -> str:
    """Settle a delivered fix's outcome once its CI is done: failed as soon as a check fails,
    succeeded when every check (other than prmedic's) completed and passed."""
    if previous.outcome != "pending":
        return previous.outcome
    if not failing:
        runs = [r async for r in gh.getiter(f"/repos/{req.repo}/commits/{req.head_sha}/check-runs?per_page=100",
                                            iterable_key="check_runs")
                if r.get("name") not in _own_check_names()]
        if not runs or any(r.get("status") != "completed" for r in runs):
            return "pending"
    outcome = "failed" if failing else "succeeded"
    if await ctx.store.resolve_fix_proposal(previous.id, outcome):
        if ctx.metrics is not None:
            ctx.metrics.fix_outcomes.labels(outcome).inc()
        log.info("fix %s (%s) %s", previous.id, previous.fix_sha, outcome)
    return outcome


BODY_KEPT = 3000  # characters of a command's delivered patch body kept in the result (its answer quotes it)
OPENING = {  # the check run while the session works: (title, summary)
    "repair": ("Reproducing the failure", "prmedic is reproducing and fixing {n} failing check(s)."),
    "change": ("Making the requested change", "prmedic is making the change @{user} asked for with `/fix`."),
    "tests": ("Writing tests", "prmedic is writing and running tests, asked with `/test` by @{user}."),
}


async def _attempt(run: PipelineRun, req: FixRequest, pr: dict, checks: list[FailingCheck],
                   previous: FixProposal | None, root: str, attempt: int) -> dict[str, Any]:
    """One session on `req.head_sha`; `attempt` 0 is a command's work (not counted)."""
    cfg = run.config.fix
    fork = _is_fork(pr)
    follows_fix_branch = previous is not None and previous.delivery == "pull_request"
    delivery = "offered" if fork else ("push" if cfg.delivery == "push" and not follows_fix_branch else
                                       "pull_request")
    approval = cfg.approval == "required" and not fork and not follows_fix_branch
    approval_note = None
    if approval and not run.ctx.can_wait_for_approval:
        # A fix pull request is itself the request for approval, and it outlives this run.
        approval, delivery = False, "pull_request"
        approval_note = ("`fix.approval` is required, and a run without a prmedic server cannot wait for a "
                         "decision: the fix is proposed as a pull request instead of being pushed")
    command = req.slash if req.trigger == "command" else None
    budget = req.budget_usd or run.config.budget.fix_usd
    verify = cfg.verify and not run.ctx.simulated_writes
    target = FixTarget(
        repo=req.repo, pr_number=pr["number"], pr_url=pr["html_url"], head_sha=req.head_sha, root_sha=root,
        expected_pr_head=root if follows_fix_branch else req.head_sha, head_ref=pr["head"]["ref"],
        base_ref=pr["base"]["ref"], delivery=delivery,
        fix_branch=previous.branch if follows_fix_branch else None, attempt=attempt,
        max_attempts=cfg.max_attempts, allow_workflows=cfg.allow_workflow_changes,
        max_patch_bytes=cfg.max_patch_bytes, job_id=run.job.id, purpose=req.purpose, command=command,
        requested_by=req.requested_by, approval=approval, verify=verify,
        unverified=NOT_VERIFIED_DRY_RUN if run.ctx.simulated_writes else NOT_VERIFIED,
        failing_checks=tuple(c.name for c in checks), budget_usd=budget,
        new_branch=f"{fix_branch_name(pr['number'], root)}-{req.purpose}-{run.job.id}" if command else None)
    title, summary = OPENING[req.purpose]
    await open_check_run(run, CHECK_NAMES["fix"], req.head_sha, title=title,
                         summary=summary.format(n=len(checks), user=req.requested_by))
    task = build_task(FixBrief(
        repo=req.repo, pr_number=pr["number"], pr_title=pr.get("title") or "", pr_body=pr.get("body") or "",
        pr_author=(pr.get("user") or {}).get("login"), head_ref=target.head_ref, base_ref=target.base_ref,
        head_sha=req.head_sha, attempt=attempt, max_attempts=cfg.max_attempts,
        delivery="approval" if approval else delivery,
        allow_workflows=cfg.allow_workflow_changes, max_patch_bytes=cfg.max_patch_bytes, checks=checks,
        previous_fix=(f"{previous.url}" if previous is not None else None), requested_by=req.requested_by,
        purpose=req.purpose, instructions=req.instructions, base_sha=(pr.get("base") or {}).get("sha"),
        verify=verify))
    tools = default_registry()
    tools.register("propose_fix", ProposeFixInput, propose_fix)
    tools.register("read_ci_log", ReadCiLogInput, read_ci_log)
    kind = f"{command} ({NOUN[req.purpose]})" if command else "fix"
    try:
        outcome = await run_agents(
            run, task=task, tools=tools, budget_usd=budget,
            head_sha=req.head_sha, pr_number=pr["number"],
            title=f"prmedic {kind} {req.repo}#{pr['number']} @ {req.head_sha[:7]}",
            fix=target, ci_logs=CiLogs(req.repo, checks),
            repo_language=(run.job.payload.get("repository") or {}).get("language"))
    except asyncio.CancelledError:
        await stopped(run, target)
        raise
    except Exception as exc:
        if not will_retry(run.job.attempts, run.job.max_attempts, exc):  # else the retry takes the check run up again
            await finish(run, target, None, error=exc)
        raise
    await finish(run, target, outcome)
    result: dict[str, Any] = {"delivery": delivery, **(outcome.as_result() if outcome else {})}
    if approval_note:
        result["approval_note"] = approval_note
    if target.verification is not None:  # the job's cost is every session's: the fix's and its verifiers'
        result["verification"] = target.verification.as_dict()
    if outcome is not None and target.verification_cost is not None:
        result["cost"] = outcome.cost.plus(target.verification_cost).as_dict()
    if attempt:
        result["attempt"] = attempt
    if target.delivered is not None:
        result.update(fix_url=target.delivered.url, fix_sha=target.delivered.fix_sha, proposal=target.delivered.id,
                      delivered_as=target.delivered.delivery)
        if command and target.delivered_text:
            result.update(fix_title=target.delivered_text[0], fix_body=target.delivered_text[1][:BODY_KEPT])
    else:
        result["no_fix"] = no_fix_reason(target, outcome)
        if command and outcome is not None and outcome.final_message:
            result["last_message"] = outcome.final_message.strip()[:1500]
    return result
