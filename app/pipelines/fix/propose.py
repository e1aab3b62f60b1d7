"""`propose_fix`: check the agents' patch against the pull request's head, commit it, have it
verified independently (`verify.py`, unless `fix.verify: false`), and deliver it (a fix PR, a pushed
commit, a fix awaiting approval, or for forks suggestions / a patch comment, which are not
verified); `FixTarget` is what it works on."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from gidgethub import BadRequest, HTTPException

from app.logs import redact
from app.pipelines.diff import fetch_pull_files
from app.pipelines.fix.approval_texts import Waiting, approval_branch, commit_url, waiting_comment
from app.pipelines.fix.delivery import (FIX_MARKER, HeadMoved, Snapshot, create_commit, fast_forward, load_snapshot,
                                        open_fix_pr, post_suggestions, put_fix_branch, read_blobs,
                                        suggestion_comments, upsert_fix_comment)
from app.pipelines.fix.patches import PatchError, apply_patch, check_patch, parse_patch, summarize
from app.pipelines.fix.verify import VerificationFailed, VerificationsExhausted, verify_fix
from app.pipelines.fix.verify_texts import NOT_VERIFIED, NOT_VERIFIED_FORK, VerificationResult, verification_section
from app.pipelines.markdown import fence
from app.routing.fixes import fix_branch_name
from app.sessions.cost import JobCost
from app.store import FixProposal
from app.tools import ToolContext, ToolError
from app.tools.schemas import ProposeFixInput

log = logging.getLogger("prmedic.pipeline.fix")


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
    # A slash-command's work (`/fix`, `/test`): not counted against `fix.max_attempts`, on a
    # branch of its own, and its answer comment, not the PR's fix comment, tells the outcome.
    purpose: str = "repair"  # repair | change | tests
    command: str | None = None  # the command that asked (`/fix`, `/test`); None for CI
    requested_by: str | None = None  # who asked with it
    new_branch: str | None = None  # where a new fix PR goes; None: `fix_branch_name(pr, root)`
    # `fix.approval: required`: the fix is committed on a branch of its own and waits for a person's
    # decision (app/pipelines/fix/approval.py); nothing reaches the pull request's branch.
    approval: bool = False
    # `fix.verify`: a verifier session checks each committed fix before it is delivered (verify.py).
    verify: bool = True
    unverified: str = NOT_VERIFIED  # what the fix says about verification when `verify` is off, and why
    failing_checks: tuple[str, ...] = ()  # the names of the checks that failed, for the verifier's task
    budget_usd: float | None = None  # the session's budget (`budget.fix_usd`, or a command's); the verifier's is a share
    verification: VerificationResult | None = None  # the last one
    verification_cost: JobCost | None = None  # every verifier session of the job, together
    failed_verifications: int = 0
    refused_by_verification: bool = False  # the last refusal was a verification that did not pass
    snapshot: Snapshot | None = None
    delivered: FixProposal | None = None
    delivered_text: tuple[str, str] | None = None  # the delivered patch's (title, body), for the command's answer
    waiting: Waiting | None = None  # a fix awaiting approval: what its check run shows
    refusals: list[str] = field(default_factory=list)

    @property
    def comment_marker(self) -> str:
        """CI fixes share one fix comment per PR; a command's patch comment is its own."""
        return FIX_MARKER if self.command is None else f"<!-- prmedic:fix:job:{self.job_id} -->"

    @property
    def verifications_allowed(self) -> int:
        """Verifications that may fail in this job before `propose_fix` stops (`fix.max_attempts`)."""
        return max(1, self.max_attempts)


async def propose_fix(ctx: ToolContext, args: ProposeFixInput) -> str:
    """Check the patch and deliver it; a refusal is remembered for the job's check run and comment."""
    try:
        return await _propose_fix(ctx, args)
    except VerificationsExhausted:
        raise
    except ToolError as exc:
        assert ctx.fix is not None  # CustomTool.needs
        ctx.fix.refusals.append(redact(str(exc)))
        ctx.fix.refused_by_verification = isinstance(exc, VerificationFailed)
        raise


async def _propose_fix(ctx: ToolContext, args: ProposeFixInput) -> str:
    t, github = ctx.fix, ctx.github
    assert t is not None and github is not None  # CustomTool.needs; the fix pipeline sets both
    if t.delivered is not None:
        return f"A fix was already delivered in this job: {t.delivered.url}. Nothing more to do."
    if t.verify and t.delivery != "offered" and t.failed_verifications >= t.verifications_allowed:
        raise VerificationsExhausted(
            f"The independent verification failed {t.failed_verifications} time(s) in this job, the most it allows "
            "(`fix.max_attempts`); nothing was delivered and nothing more will be. Do not call propose_fix again: end "
            "your turn with a short account of what failed.")
    patch_bytes = len(args.patch.encode())
    if patch_bytes > t.max_patch_bytes:
        raise ToolError(f"The patch is {patch_bytes} bytes; this repository allows at most {t.max_patch_bytes} "
                        "(fix.max_patch_bytes). Make a smaller change.")
    try:
        files = parse_patch(args.patch)
    except PatchError as exc:
        raise ToolError(f"The patch could not be read: {exc}") from None
    gh = await github()
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
        unchecked = verification_section(None, unverified=NOT_VERIFIED_FORK if t.verify else t.unverified)
        proposal = await _offer(gh, t, pr, files, starts, title, f"{body}\n\n{unchecked}", redact(args.patch))
        t.delivered, t.delivered_text = await ctx.store.record_fix_proposal(proposal), (title, body)
        return _answer(t, files, proposal)
    sha = await create_commit(gh, t.repo, t.snapshot, changes, f"{title}\n\n{body}".strip())
    verified, on_branch = None, None
    if t.verify:
        verified, on_branch = await verify_fix(ctx, t, sha, args.verify_commands, [f.path for f in files])
    try:
        proposal, comment = await _push(gh, t, sha, title, body, summarize(files), verified, on_branch)
    finally:
        if on_branch is not None and not t.approval:  # the verification's own branch: delivered or not, done
            await _drop_branch(gh, t.repo, on_branch)
    # Recorded as soon as the fix is on GitHub, before the courtesy comment: its CI outcome must be
    # settled, and counted against the cap, whatever happens to the comment.
    t.delivered, t.delivered_text = await ctx.store.record_fix_proposal(proposal), (title, body)
    if t.command is not None:  # the command's answer comment links it
        return _answer(t, files, proposal)
    try:
        await upsert_fix_comment(gh, t.repo, t.pr_number, comment)
    except HTTPException as exc:
        log.warning("%s#%s: the fix is delivered but the PR comment failed: %s", t.repo, t.pr_number, exc)
    return _answer(t, files, proposal)


async def _drop_branch(gh: Any, repo: str, branch: str) -> None:
    from app.pipelines.fix.approval import delete_branch
    try:
        await delete_branch(gh, repo, branch)
    except HTTPException as exc:
        log.warning("%s: could not delete the verification branch %s: %s", repo, branch, exc)


async def _push(gh: Any, t: FixTarget, sha: str, title: str, body: str, changed: str,
                verified: VerificationResult | None, on_branch: str | None) -> tuple[FixProposal, str]:
    """Deliver the fix commit `sha` (verified, or `fix.verify: false`); returns the proposal and
    the comment to leave on the PR. `on_branch`: the branch the verification put it on."""
    common = dict(repo=t.repo, pr_number=t.pr_number, root_sha=t.root_sha, base_sha=t.head_sha, fix_sha=sha,
                  job_id=t.job_id)
    checked = verification_section(verified, unverified=t.unverified)
    if t.approval:
        branch = approval_branch(t.pr_number, t.root_sha, t.job_id)
        if on_branch != branch:
            await put_fix_branch(gh, t.repo, branch, sha, expected=None)
        url = commit_url(t.pr_url, sha)
        t.waiting = Waiting(fix_sha=sha, branch=branch, head_ref=t.head_ref, commit_url=url, title=title,
                            body=f"{body}\n\n{checked}", changes=changed)
        return (FixProposal(branch=branch, delivery="awaiting_approval", outcome="awaiting_approval", url=url,
                            **common),
                waiting_comment(t.waiting, f"attempt {t.attempt} of {t.max_attempts} for {t.root_sha[:7]}"))
    if t.delivery == "push":
        await fast_forward(gh, t.repo, t.head_ref, sha, expected=t.head_sha)
        url = f"{t.pr_url}/commits/{sha}"
        return (FixProposal(branch=t.head_ref, delivery="push", url=url, **common),
                _comment(t, f"pushed commit {sha[:7]} to `{t.head_ref}`", url, title, body, checked))
    branch = t.fix_branch or t.new_branch or fix_branch_name(t.pr_number, t.root_sha)
    await put_fix_branch(gh, t.repo, branch, sha, expected=t.head_sha if t.fix_branch else None)
    fix_pr = await open_fix_pr(gh, t.repo, branch=branch, base=t.head_ref, title=title,
                               body=f"{body}\n\n{checked}\n\n---\n{_origin(t)}")
    return (FixProposal(branch=branch, delivery="pull_request", url=fix_pr["html_url"], **common),
            _comment(t, f"opened #{fix_pr['number']}", fix_pr["html_url"], title, body, checked))


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
            if t.command is None:  # a command's answer comment links the suggestions
                await upsert_fix_comment(gh, t.repo, t.pr_number,
                                         _comment(t, "suggested the fix in a review", url, title, body))
            return FixProposal(delivery="suggestions", url=url, **common)
    details = (f"<details><summary>The patch ({summarize(files)}); apply it with <code>git apply</code></summary>"
               f"\n\n{fence(patch, 'diff')}\n\n</details>")
    url = await upsert_fix_comment(gh, t.repo, t.pr_number,
                                   _comment(t, "prepared a patch (this pull request comes from a fork, so prmedic "
                                               "pushes nothing)", None, title, body, details), marker=t.comment_marker)
    return FixProposal(delivery="patch_comment", url=url, **common)


def _origin(t: FixTarget) -> str:
    """The fix PR's last lines: what it is for, and how to apply it."""
    apply = "Opened by prmedic; merge it into the pull request's branch to " + \
        {"repair": "apply the fix.", "change": "apply the change.", "tests": "add the tests."}[t.purpose]
    if t.command is None:
        return f"Fixes the failing CI of #{t.pr_number}. {apply}"
    what = {"repair": "Fixes the failing CI of", "change": "The change asked for on", "tests": "Tests for"}[t.purpose]
    return f"{what} #{t.pr_number}, asked with `{t.command}` by @{t.requested_by}. {apply}"


def _comment(t: FixTarget, what: str, url: str | None, title: str, body: str, extra: str = "") -> str:
    link = f" — {url}" if url else ""
    if t.command is None:
        heading, why = "prmedic fixed the failing CI", f"attempt {t.attempt} of {t.max_attempts} for {t.root_sha[:7]}"
    else:
        heading = {"repair": "prmedic fixed the failing CI", "change": "prmedic made the requested change",
                   "tests": "prmedic wrote tests"}[t.purpose]
        why = f"asked with `{t.command}` by @{t.requested_by}"
    return (f"### {heading}\n\nprmedic {what}{link} ({why}).\n\n**{title}**\n\n{body}\n\n{extra}").rstrip() + "\n"


def _answer(t: FixTarget, files: list, proposal: FixProposal) -> str:
    if proposal.delivery == "awaiting_approval":
        told = ("The original pull request has a comment saying so" if t.command is None else
                f"The answer to `{t.command}` on the pull request says so")
        checked = " An independent verifier ran the commands at it: all passed." if t.verify else ""
        return (f"Fix committed ({summarize(files)}) as {proposal.fix_sha} on prmedic's branch `{proposal.branch}`."
                f"{checked} This repository requires a person's approval (`fix.approval`): nothing was pushed to the pull "
                f"request's branch, and the fix waits for someone to apply or discard it. {told}. You are done: end "
                "your turn with a short account.")
    where = {"pull_request": f"Fix pull request: {proposal.url} (branch `{proposal.branch}`, "
                             f"commit {proposal.fix_sha})",
             "push": f"Pushed commit {proposal.fix_sha} to `{proposal.branch}`: {proposal.url}",
             "suggestions": f"Offered as review suggestions (fork PR, nothing pushed): {proposal.url}",
             "patch_comment": f"Offered as a patch comment (fork PR, nothing pushed): {proposal.url}"}[
        proposal.delivery]
    linked = ("The original pull request has a comment linking it" if t.command is None else
              f"The answer to `{t.command}` on the pull request links it")
    checked = ""
    if proposal.delivery not in ("suggestions", "patch_comment"):
        checked = (" An independent verifier ran the commands at the fix commit: all passed." if t.verify else
                   f" {t.unverified}")
    return (f"Fix delivered ({summarize(files)}). {where}.{checked} {linked}. prmedic watches the fix's CI; you are "
            "done: end your turn with a short account.")
