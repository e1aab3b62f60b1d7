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
from dataclasses import dataclass, field
from typing import Any, Literal

from gidgethub import BadRequest, HTTPException
from pydantic import BaseModel

from app.logs import redact
from app.pipelines import JobContext
from app.pipelines.ci_logs import CiLogs, FailingCheck, gather_failures, read_ci_log
from app.pipelines.common import (CHECK_NAMES, PipelineRun, cost_and_duration, finish_check, give_up_reason,
                                  open_check_run, prepare, run_agents, will_retry)
from app.pipelines.fix_brief import FixBrief, build_fix_task
from app.pipelines.diff import fetch_pull_files
from app.pipelines.fix_delivery import (
    HeadMoved, Snapshot, create_commit, fast_forward, fence, load_snapshot, no_fix_comment, open_fix_pr,
    post_suggestions,
    put_fix_branch, read_blobs, suggestion_comments, upsert_comment,
)
from app.pipelines.patches import PatchError, apply_patch, check_patch, parse_patch, summarize
from app.routing.fixes import fix_branch_name, fix_branch_pr
from app.sessions import SessionOutcome
from app.store import FixProposal
from app.tools import ToolContext, ToolError, default_registry
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


@dataclass
class FixTarget:
    """Everything `propose_fix` needs to check and deliver a patch for this job."""

    repo: str
    pr_number: int
    pr_url: str
    head_sha: str  # the commit the session checked out; the patch applies to it
    root_sha: str  # the PR head the attempts count against
    expected_pr_head: str
    head_ref: str
    base_ref: str
    delivery: str  # pull_request | push | offered
    fix_branch: str | None  # prmedic's branch to fast-forward (following up on a fix PR), else None
    attempt: int
    max_attempts: int
    allow_workflows: bool
    max_patch_bytes: int
    job_id: int
    snapshot: Snapshot | None = None
    delivered: FixProposal | None = None
    refusals: list[str] = field(default_factory=list)


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
    app_id = getattr(ctx.settings, "app_id", None)
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
        metrics = ctx.services.get("metrics")
        if metrics is not None:
            metrics.fix_outcomes.labels(outcome).inc()
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
            services={"fix": target, "ci_logs": CiLogs(req.repo, checks)},
            repo_language=(run.job.payload.get("repository") or {}).get("language"))
    except asyncio.CancelledError:
        await _finish(run, target, None, stopped=True)
        raise
    except Exception as exc:
        if not will_retry(run.job, exc):  # else the retry takes the check run up again
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
            await upsert_comment(await run.github(), target.repo, target.pr_number, comment)
        except Exception as exc:  # noqa: BLE001 - the check run says it too
            log.warning("%s#%s: could not comment that no fix was produced: %s", target.repo, target.pr_number,
                        redact(str(exc)))


# ---------------------------------------------------------------------------------------------
# propose_fix
# ---------------------------------------------------------------------------------------------


async def propose_fix(ctx: ToolContext, args: ProposeFixInput) -> str:
    """Check the patch and deliver it; a refusal is remembered for the job's check run and comment."""
    try:
        return await _propose_fix(ctx, args)
    except ToolError as exc:
        ctx.services["fix"].refusals.append(redact(str(exc)))
        raise


async def _propose_fix(ctx: ToolContext, args: ProposeFixInput) -> str:
    t: FixTarget = ctx.services["fix"]
    if t.delivered is not None:
        return f"A fix was already delivered in this job: {t.delivered.url}. Nothing more to do."
    patch_bytes = len(args.patch.encode())
    if patch_bytes > t.max_patch_bytes:
        raise ToolError(f"The patch is {patch_bytes} bytes; this repository allows at most {t.max_patch_bytes} "
                        "(fix.max_patch_bytes). Make a smaller change.")
    try:
        files = parse_patch(args.patch)
    except PatchError as exc:
        raise ToolError(f"The patch could not be read: {exc}") from None
    gh = await ctx.github()
    pr = await gh.getitem(f"/repos/{t.repo}/pulls/{t.pr_number}")
    if pr["head"]["sha"] != t.expected_pr_head or pr.get("state") != "open":
        moved = "was closed" if pr.get("state") != "open" else f"moved to {pr['head']['sha']}"
        raise HeadMoved(f"The pull request's head {moved} while you worked (your checkout is at {t.head_sha}). "
                        "Nothing was pushed. Do not call propose_fix again: a failing check on the new head starts "
                        "a new fix job. End your turn with a short account of the fix you had verified.")
    if t.snapshot is None:
        t.snapshot = await load_snapshot(gh, t.repo, t.head_sha)
    problems = check_patch(files, t.snapshot.entries, allow_workflows=t.allow_workflows, patch_bytes=patch_bytes,
                           max_patch_bytes=t.max_patch_bytes)
    if problems:
        raise ToolError("The patch was refused; nothing was pushed:\n" + "\n".join(f"- {p}" for p in problems))
    originals = await read_blobs(gh, t.repo, t.snapshot, [f.old_path for f in files if f.old_path])
    starts: dict[str, list[int]] = {}
    try:
        changes = apply_patch(files, originals, t.snapshot.entries, starts)
    except PatchError as exc:
        raise ToolError(str(exc)) from None
    if all(c.content is not None and c.content == originals.get(c.path) for c in changes):
        raise ToolError("The patch changes nothing at the head commit.")
    title, body = redact(args.title), redact(args.body)
    if t.delivery == "offered":
        proposal = await _offer(gh, t, pr, files, starts, title, body, redact(args.patch))
        t.delivered = await ctx.store.record_fix_proposal(proposal)
        return _answer(t, files, proposal)
    proposal, comment = await _push(gh, t, changes, title, body)
    # Recorded as soon as the fix is on GitHub, before the courtesy comment: its CI outcome must be
    # settled, and counted against the cap, whatever happens to the comment.
    t.delivered = await ctx.store.record_fix_proposal(proposal)
    try:
        await upsert_comment(gh, t.repo, t.pr_number, comment)
    except HTTPException as exc:
        log.warning("%s#%s: the fix is delivered but the PR comment failed: %s", t.repo, t.pr_number, exc)
    return _answer(t, files, proposal)


async def _push(gh: Any, t: FixTarget, changes: list, title: str, body: str) -> tuple[FixProposal, str]:
    """Commit the change and deliver it; returns the proposal and the comment to leave on the PR."""
    sha = await create_commit(gh, t.repo, t.snapshot, changes, f"{title}\n\n{body}".strip())
    common = dict(repo=t.repo, pr_number=t.pr_number, root_sha=t.root_sha, base_sha=t.head_sha, fix_sha=sha,
                  job_id=t.job_id)
    if t.delivery == "push":
        await fast_forward(gh, t.repo, t.head_ref, sha, expected=t.head_sha)
        url = f"{t.pr_url}/commits/{sha}"
        return (FixProposal(branch=t.head_ref, delivery="push", url=url, **common),
                _comment(t, f"pushed commit {sha[:7]} to `{t.head_ref}`", url, title, body))
    branch = t.fix_branch or fix_branch_name(t.pr_number, t.root_sha)
    await put_fix_branch(gh, t.repo, branch, sha, expected=t.head_sha if t.fix_branch else None)
    fix_pr = await open_fix_pr(gh, t.repo, branch=branch, base=t.head_ref, title=title,
                               body=f"{body}\n\n---\nFixes the failing CI of #{t.pr_number}. Opened by prmedic; "
                                    "merge it into the pull request's branch to apply the fix.")
    return (FixProposal(branch=branch, delivery="pull_request", url=fix_pr["html_url"], **common),
            _comment(t, f"opened #{fix_pr['number']}", fix_pr["html_url"], title, body))


async def _offer(gh: Any, t: FixTarget, pr: dict, files: list, starts: dict[str, list[int]], title: str,
                 body: str, patch: str) -> FixProposal:
    """Fork PRs: nothing is pushed anywhere; the fix is offered as suggestions, else as a patch."""
    common = dict(repo=t.repo, pr_number=t.pr_number, root_sha=t.root_sha, base_sha=t.head_sha, job_id=t.job_id,
                  outcome="offered")
    comments = suggestion_comments(files, starts, await fetch_pull_files(gh, t.repo, t.pr_number))
    if comments is not None:
        try:
            url = await post_suggestions(gh, t.repo, t.pr_number, t.head_sha,
                                         f"**{title}**\n\n{body}\n\nprmedic cannot push to a fork; commit the "
                                         "suggestions below to apply the fix.", comments)
        except BadRequest as exc:  # GitHub would not place them: the patch comment below still offers the fix
            log.warning("%s#%s: suggestions refused (%s); offering the patch instead", t.repo, t.pr_number,
                        exc.status_code)
        else:
            await upsert_comment(gh, t.repo, t.pr_number,
                                 _comment(t, "suggested the fix in a review", url, title, body))
            return FixProposal(delivery="suggestions", url=url, **common)
    details = (f"<details><summary>The patch ({summarize(files)}); apply it with <code>git apply</code></summary>"
               f"\n\n{fence(patch, 'diff')}\n\n</details>")
    url = await upsert_comment(gh, t.repo, t.pr_number,
                               _comment(t, "prepared a patch (this pull request comes from a fork, so prmedic "
                                           "pushes nothing)", None, title, body, details))
    return FixProposal(delivery="patch_comment", url=url, **common)


def _comment(t: FixTarget, what: str, url: str | None, title: str, body: str, extra: str = "") -> str:
    link = f" — {url}" if url else ""
    return (f"### prmedic fixed the failing CI\n\nprmedic {what}{link} (attempt {t.attempt} of {t.max_attempts} for "
            f"{t.root_sha[:7]}).\n\n**{title}**\n\n{body}\n\n{extra}").rstrip() + "\n"


def _answer(t: FixTarget, files: list, proposal: FixProposal) -> str:
    where = {"pull_request": f"Fix pull request: {proposal.url} (branch `{proposal.branch}`, "
                             f"commit {proposal.fix_sha})",
             "push": f"Pushed commit {proposal.fix_sha} to `{proposal.branch}`: {proposal.url}",
             "suggestions": f"Offered as review suggestions (fork PR, nothing pushed): {proposal.url}",
             "patch_comment": f"Offered as a patch comment (fork PR, nothing pushed): {proposal.url}"}[
        proposal.delivery]
    return (f"Fix delivered ({summarize(files)}). {where}. The original pull request has a comment linking it. "
            "prmedic watches the fix's CI; you are done: end your turn with a short account.")
