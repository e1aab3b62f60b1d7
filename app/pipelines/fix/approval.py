"""A fix waiting for a person's approval (`fix.approval: required`) on GitHub: the check run that
offers the buttons while it waits, and carrying out a decision (`/apply`, `/apply pr`, `/discard`,
or a button on that check run).

`propose_fix` commits an approved-to-be fix on prmedic's own branch and records it
`awaiting_approval`: nothing reaches the pull request. The fix job then completes its check run
`action_required` with three buttons (`offer_decision`). A decision (`decide_fix`, the fix
pipeline's entry for a `FixDecision`) re-reads the fix and the pull request under a lock named
after the fix, decides what to do (`approval_texts.plan`, pure), does it so that a retry or a
second click does nothing twice, records it once (`Store.decide_fix_proposal`, compare-and-set)
and updates the check run. The words are in `approval_texts.py`.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from gidgethub import BadRequest

from app.errors import describe
from app.logs import redact
from app.pipelines.context import JobContext, prepare
from app.pipelines.fix.approval_texts import (
    AWAITING,
    NOTHING_WAITING,
    Step,
    Waiting,
    already_answer,
    approval_actions,
    commit_url,
    decided_answer,
    decided_as,
    decided_check,
    plan,
    recorded,
    waiting_summary,
    waiting_title,
)
from app.pipelines.fix.delivery import HeadMoved, branch_sha, fast_forward, open_fix_pr
from app.pipelines.fix_request import FixDecision
from app.pipelines.progress import SUMMARY_MAX, TITLE_MAX
from app.store import FixProposal, Store

log = logging.getLogger("prmedic.pipeline.fix")


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_run_key(proposal_id: int) -> str:
    """Where the store keeps the check run that offers the decision on a fix."""
    return f"fix_approval:{proposal_id}:check_run"


def decided_by_key(proposal_id: int) -> str:
    return f"fix_approval:{proposal_id}:by"


async def offer_decision(gh: Any, store: Store, repo: str, check_run_id: int | None, proposal_id: int,
                         w: Waiting, *, purpose: str = "a fix", footer: str = "") -> None:
    """Complete the fix job's check run `action_required` with the fix and the three buttons;
    `details_url` is the fix commit's page (GitHub shows it as the place for the details)."""
    if check_run_id is None:
        return
    await store.set_meta(check_run_key(proposal_id), str(check_run_id))
    latest = await store.get_fix_proposal(proposal_id)
    if latest is not None and latest.outcome != AWAITING:  # someone decided (`/apply`) before this job ended
        await gh.patch(f"/repos/{repo}/check-runs/{check_run_id}", data={
            "status": "completed", "conclusion": "success" if latest.delivery == "push" else "neutral",
            "completed_at": _now_iso(), "output": {
                "title": f"The fix was {decided_as(latest)}"[:TITLE_MAX],
                "summary": redact(f"prmedic committed {purpose} as [{w.fix_sha[:7]}]({w.commit_url}); it was "
                                  f"{decided_as(latest)} before this job ended (the answer on the pull request "
                                  f"says more).\n\n{footer}".strip())[:SUMMARY_MAX]}})
        return
    await gh.patch(f"/repos/{repo}/check-runs/{check_run_id}", data={
        "status": "completed", "conclusion": "action_required", "completed_at": _now_iso(),
        "details_url": w.commit_url, "actions": approval_actions(proposal_id),
        "output": {"title": waiting_title()[:TITLE_MAX],
                   "summary": redact(f"{waiting_summary(w, purpose=purpose)}\n\n{footer}".strip())[:SUMMARY_MAX]}})


async def decide_fix(ctx: JobContext, d: FixDecision) -> dict[str, Any]:
    """Carry out `d` on the fix it names (or the PR's newest fix awaiting approval), once. The
    result's `answer` is what the command answers on the pull request."""
    run = await prepare(ctx)
    store, gh = ctx.store, run.gh
    found = await _find(store, d)
    if found is None:
        return {"result": "nothing_waiting", "answer": NOTHING_WAITING}
    async with store.exclusive(f"fix-approval:{found.id}"):
        p = await store.get_fix_proposal(found.id) or found
        base = {"proposal": p.id, "decision": d.decision, "fix_sha": p.fix_sha}
        if p.outcome != AWAITING:
            by = await store.get_meta(decided_by_key(p.id))
            return {**base, "result": "already", "outcome": p.outcome, "answer": already_answer(p, by)}
        pr = await gh.getitem(f"/repos/{d.repo}/pulls/{p.pr_number}")
        head, head_ref = pr["head"]["sha"], pr["head"]["ref"]
        step = plan(d.decision, outcome=p.outcome, pr_open=pr.get("state") == "open", pr_head=head,
                    base_sha=p.base_sha, fix_sha=p.fix_sha)
        assert p.fix_sha is not None and p.branch is not None  # an awaiting fix is a commit on its branch
        fix_pr: tuple[int, str] | None = None
        url: str | None = None
        if step == "apply":
            step, head = await _apply(gh, d.repo, head_ref, p)
        if step == "open_pr":
            opened = await _open_pr(gh, d.repo, head_ref, p, d)
            fix_pr, url = (opened["number"], opened["html_url"]), opened["html_url"]
        else:
            await delete_branch(gh, d.repo, p.branch)  # applied (the head holds it), discarded or stale
        if step in ("apply", "applied"):
            url = f"{pr['html_url']}/commits/{p.fix_sha}"
        outcome, delivery = recorded(step)
        if not await store.decide_fix_proposal(p.id, outcome, delivery=delivery, url=url):
            latest = await store.get_fix_proposal(p.id) or p
            return {**base, "result": "already", "outcome": latest.outcome, "answer": already_answer(
                latest, await store.get_meta(decided_by_key(p.id)))}
        await store.set_meta(decided_by_key(p.id), d.decided_by)
        words = {"by": d.decided_by, "head_ref": head_ref, "fix_sha": p.fix_sha, "pr_head": head, "fix_pr": fix_pr}
        await _update_check(gh, store, d, p, decided_check(step, **words))
        answer = decided_answer(step, commit=commit_url(pr["html_url"], p.fix_sha), **words)
    log.info("fix %s on %s#%s: %s by %s", p.id, d.repo, p.pr_number, step, d.decided_by)
    return {**base, "result": step, "outcome": outcome, "answer": answer, **({"fix_url": url} if url else {})}


async def _find(store: Store, d: FixDecision) -> FixProposal | None:
    """The fix a button names (only if it belongs to this repository and PR), else the PR's newest awaiting one."""
    if d.proposal_id is not None:
        p = await store.get_fix_proposal(d.proposal_id)
        ok = p is not None and p.repo.lower() == d.repo.lower() and p.pr_number == d.pr_number
        return p if ok else None
    return await store.find_fix_proposal(d.repo, pr_number=d.pr_number, outcome=AWAITING)


async def _apply(gh: Any, repo: str, head_ref: str, p: FixProposal) -> tuple[Step, str]:
    """Fast-forward the PR's branch from the fix's base to the fix: ("applied", fix) or, when the
    branch moved meanwhile, ("stale", where it is) unless it moved to the fix itself."""
    assert p.fix_sha is not None
    try:
        await fast_forward(gh, repo, head_ref, p.fix_sha, expected=p.base_sha)
    except HeadMoved:
        now = await branch_sha(gh, repo, head_ref)
        return ("applied", p.fix_sha) if now == p.fix_sha else ("stale", now or "")
    return "applied", p.fix_sha


async def _open_pr(gh: Any, repo: str, head_ref: str, p: FixProposal, d: FixDecision) -> dict:
    """The fix as a pull request from its branch onto the PR's branch (found, if it exists already),
    with the title and body the agents gave it (its commit's message)."""
    commit = await gh.getitem(f"/repos/{repo}/git/commits/{p.fix_sha}")
    title, _, body = (commit.get("message") or "prmedic fix").partition("\n")
    return await open_fix_pr(gh, repo, branch=p.branch, base=head_ref, title=title.strip() or "prmedic fix",
                             body=f"{body.strip()}\n\n---\nFixes the failing CI of #{p.pr_number}, opened as a pull "
                                  f"request by @{d.decided_by}'s decision. Merge it into the pull request's branch "
                                  "to apply the fix.")


async def delete_branch(gh: Any, repo: str, branch: str) -> None:
    """Delete prmedic's branch; one already gone is fine (a retry, or someone deleted it)."""
    try:
        await gh.delete(f"/repos/{repo}/git/refs/heads/{branch}")
    except BadRequest as exc:
        if int(exc.status_code) not in (404, 422):
            raise


async def _update_check(gh: Any, store: Store, d: FixDecision, p: FixProposal,
                        check: tuple[str, str, str]) -> None:
    """The check run says what was decided, and offers no more buttons. Best effort: the decision stands."""
    known = d.check_run_id or await store.get_meta(check_run_key(p.id))
    if not known:
        return
    conclusion, title, summary = check
    try:
        await gh.patch(f"/repos/{d.repo}/check-runs/{int(known)}", data={
            "status": "completed", "conclusion": conclusion, "completed_at": _now_iso(), "actions": [],
            "output": {"title": title[:TITLE_MAX], "summary": redact(summary)[:SUMMARY_MAX]}})
    except Exception as exc:  # noqa: BLE001 - the decision is recorded; the answer says it too
        log.warning("fix %s: could not update its check run %s: %s", p.id, known, redact(describe(exc)))


__all__ = ["Waiting", "commit_url", "decide_fix", "delete_branch", "offer_decision"]
