"""The fix pipeline: a failing check on a PR → a session that reproduces, fixes and verifies →
`propose_fix` → a fix PR (or a pushed commit, or for forks suggestions / a patch comment).

It also follows up on its own fixes: when CI finishes on a commit prmedic made, the outcome is
recorded (fix success rate) and, if it failed and attempts remain, the next attempt starts from
that commit with the new logs. Attempts are counted per PR head ("root"), across follow-ups.

`run_fix(ctx, FixRequest(...))` is the entry for an explicit (repo, PR, head) such as `/fix`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from pydantic import BaseModel

from app.errors import will_retry
from app.logs import redact
from app.pipelines.checks import CHECK_NAMES, finish_check, give_up_reason, open_check_run
from app.pipelines.context import JobContext, PipelineRun, prepare
from app.pipelines.fix.brief import FixBrief, build_fix_task
from app.pipelines.fix.ci_logs import CiLogs, FailingCheck, gather_failures, read_ci_log
from app.pipelines.fix.delivery import no_fix_comment, upsert_fix_comment
from app.pipelines.fix.propose import FixTarget, propose_fix
from app.pipelines.session import cost_and_duration, run_agents
from app.routing.fixes import fix_branch_pr
from app.sessions import SessionOutcome
from app.store import FixProposal
from app.tools import default_registry
from app.tools.schemas import ProposeFixInput, ReadCiLogInput

log = logging.getLogger("prmedic.pipeline.fix")

class FixRequest(BaseModel):
    """What to fix: a head commit of a repository, and the PR if known."""

    repo: str
    head_sha: str
    pr_number: int | None = None
    pr_candidates: list[int] = []
    head_branch: str | None = None
    run_ids: list[int] = []
    follow_up: bool = False
    trigger: Literal["ci", "command"] = "ci"
    requested_by: str | None = None

    @classmethod
    def from_job(cls, job: Any) -> "FixRequest":
        p = job.payload
        failure = p.get("failure") or {}
        return cls(repo=job.repo, head_sha=job.head_sha or p.get("head_sha"), pr_number=job.pr_number,
                   pr_candidates=[pr["number"] for pr in p.get("pull_requests") or []],
                   head_branch=p.get("head_branch"),
                   run_ids=[failure["id"]] if failure.get("source") == "workflow_run" else [],
                   follow_up=bool(p.get("follow_up")))


def _own_check_names() -> set[str]:
    return set(CHECK_NAMES.values())


async def fix_pipeline(ctx: JobContext) -> dict[str, Any]:
    return await run_fix(ctx, FixRequest.from_job(ctx.job))


async def run_fix(ctx: JobContext, req: FixRequest) -> dict[str, Any]:
    run = await prepare(ctx)
    cfg = run.config.fix
    if req.trigger == "ci" and not cfg.enabled and not req.follow_up:
        return {"skipped": "fixes are turned off in .github/prmedic.yml (fix.enabled)"}
    gh = run.gh
    previous = await ctx.store.find_fix_proposal(req.repo, fix_sha=req.head_sha)
    if previous is None and fix_branch_pr(req.head_branch) is not None:
        previous = await ctx.store.find_fix_proposal(req.repo, branch=req.head_branch)
    pr = await _find_pr(gh, req, previous)
    if pr is None:
        return {"skipped": f"{req.head_sha[:7]} is not the head of an open pull request"}
    number = pr["number"]
    app_id = ctx.settings.app_id if ctx.settings else None
    checks = await gather_failures(gh, req.repo, req.head_sha, run_ids=req.run_ids, app_id=app_id,
                                   own_names=_own_check_names())
    result: dict[str, Any] = {"pr_number": number, "head_sha": req.head_sha}
    if previous is not None:
        result["follows_up"] = previous.id
        settled = await _record_outcome(ctx, gh, req, previous, failing=bool(checks), app_id=app_id)
        result["previous_fix_outcome"] = settled
        if not checks:
            return result
    elif not checks:
        return {**result, "skipped": "no failing checks on this commit (anymore)"}
    elif pr["head"]["sha"] != req.head_sha:
        return {**result, "skipped": f"the pull request has moved on to {pr['head']['sha'][:7]}"}
    if previous is None and req.trigger == "ci" and _is_bot(pr) and not cfg.bot_authors:
        return {**result, "skipped": f"@{pr['user']['login']} is a bot; fix.bot_authors is off"}
    if not cfg.enabled and req.trigger == "ci":
        return {**result, "skipped": "fixes are turned off in .github/prmedic.yml (fix.enabled)"}
    root = previous.root_sha if previous is not None else req.head_sha
    if previous is not None and pr["head"]["sha"] not in (root, req.head_sha):
        return {**result, "skipped": "the pull request moved on since the previous fix"}
    allowed, attempt = await ctx.store.claim_fix_attempt(req.repo, number, root, ctx.job.id, cfg.max_attempts)
    if not allowed:
        log.info("fix %s#%s@%s: attempt cap (%d) reached", req.repo, number, root[:7], cfg.max_attempts)
        return {**result, "skipped": f"attempt cap reached ({attempt} of {cfg.max_attempts} for {root[:7]})"}
    return {**result, **await _attempt(run, req, pr, checks, previous, root, attempt)}


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


async def _attempt(run: PipelineRun, req: FixRequest, pr: dict, checks: list[FailingCheck],
                   previous: FixProposal | None, root: str, attempt: int) -> dict[str, Any]:
    cfg = run.config.fix
    fork = _is_fork(pr)
    follows_fix_branch = previous is not None and previous.delivery == "pull_request"
    delivery = "offered" if fork else ("push" if cfg.delivery == "push" and not follows_fix_branch else
                                       "pull_request")
    target = FixTarget(
        repo=req.repo, pr_number=pr["number"], pr_url=pr["html_url"], head_sha=req.head_sha, root_sha=root,
        expected_pr_head=root if follows_fix_branch else req.head_sha, head_ref=pr["head"]["ref"],
        base_ref=pr["base"]["ref"], delivery=delivery,
        fix_branch=previous.branch if follows_fix_branch else None, attempt=attempt,
        max_attempts=cfg.max_attempts, allow_workflows=cfg.allow_workflow_changes,
        max_patch_bytes=cfg.max_patch_bytes, job_id=run.job.id)
    await open_check_run(run, CHECK_NAMES["fix"], req.head_sha, title="Reproducing the failure",
                         summary=f"prmedic is reproducing and fixing {len(checks)} failing check(s).")
    task = build_fix_task(FixBrief(
        repo=req.repo, pr_number=pr["number"], pr_title=pr.get("title") or "", pr_body=pr.get("body") or "",
        pr_author=(pr.get("user") or {}).get("login"), head_ref=target.head_ref, base_ref=target.base_ref,
        head_sha=req.head_sha, attempt=attempt, max_attempts=cfg.max_attempts, delivery=delivery,
        allow_workflows=cfg.allow_workflow_changes, max_patch_bytes=cfg.max_patch_bytes, checks=checks,
        previous_fix=(f"{previous.url}" if previous is not None else None), requested_by=req.requested_by))
    tools = default_registry()
    tools.register("propose_fix", ProposeFixInput, propose_fix)
    tools.register("read_ci_log", ReadCiLogInput, read_ci_log)
    try:
        outcome = await run_agents(
            run, task=task, tools=tools, budget_usd=run.config.budget.fix_usd, head_sha=req.head_sha,
            pr_number=pr["number"], title=f"prmedic fix {req.repo}#{pr['number']} @ {req.head_sha[:7]}",
            fix=target, ci_logs=CiLogs(req.repo, checks),
            repo_language=(run.job.payload.get("repository") or {}).get("language"))
    except asyncio.CancelledError:
        await _finish(run, target, None, stopped=True)
        raise
    except Exception as exc:
        if not will_retry(run.job.attempts, run.job.max_attempts, exc):  # else the retry takes the check run up again
            await _finish(run, target, None, error=exc)
        raise
    await _finish(run, target, outcome)
    result: dict[str, Any] = {"attempt": attempt, "delivery": delivery, **(outcome.as_result() if outcome else {})}
    if target.delivered is not None:
        result.update(fix_url=target.delivered.url, fix_sha=target.delivered.fix_sha, proposal=target.delivered.id)
    else:
        result["no_fix"] = no_fix_reason(target, outcome)
    return result


def no_fix_reason(target: FixTarget, outcome: SessionOutcome | None, error: BaseException | None = None) -> str:
    """Why the session proposed no fix, in words for a check run title."""
    if error is not None:
        return give_up_reason(error)
    if target.refusals:
        lines = [line.strip() for line in target.refusals[-1].splitlines() if line.strip()] or ["refused"]
        first = next((line[2:] for line in lines if line.startswith("- ")), lines[0])
        return f"the agents' last patch was refused: {first[:120]}"
    if outcome is not None and outcome.budget_reached:
        return "the budget ran out before the agents proposed a patch"
    return "the agents ended without proposing a patch"


async def _finish(run: PipelineRun, target: FixTarget, outcome: SessionOutcome | None, *,
                  error: BaseException | None = None, stopped: bool = False) -> None:
    footer = cost_and_duration(outcome, run)
    why = comment = None
    if target.delivered is not None:
        title = f"Fix proposed: {target.delivered.url}"
        summary = f"prmedic proposed a fix (attempt {target.attempt} of {target.max_attempts}): " \
                  f"{target.delivered.url}\n\n{footer}"
    elif stopped:
        title, summary = "Stopped before a fix was proposed", f"The fix job was stopped.\n\n{footer}"
    else:
        why = no_fix_reason(target, outcome, error)
        title = f"prmedic could not produce a fix: {why}"
        comment = no_fix_comment(target, why, outcome.final_message if outcome else None)
        summary = f"{comment}\n\n{footer}"
    try:
        await finish_check(run, "neutral", title, summary)
    except Exception as exc:  # noqa: BLE001 - the fix itself stands
        log.warning("could not complete the fix check run: %s", redact(str(exc)))
    if why is not None:
        try:
            await upsert_fix_comment(await run.github(), target.repo, target.pr_number, comment)
        except Exception as exc:  # noqa: BLE001 - the check run says it too
            log.warning("%s#%s: could not comment that no fix was produced: %s", target.repo, target.pr_number,
                        redact(str(exc)))
