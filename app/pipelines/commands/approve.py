"""`/apply [pr]` and `/discard`: a person's decision on the fix waiting for approval on this PR
(`fix.approval: required`), also what the buttons on the `prmedic fix` check run become
(app/routing/approvals.py). The fix pipeline carries it out (`FixDecision` through `Command.fix`,
wired in `app.runtime`); this handler only asks and answers.

`/apply` pushes the fix onto the PR's branch, `/apply pr` opens it as a pull request instead,
`/discard` deletes it. A button names its fix; a comment decides on the PR's newest fix awaiting
approval. Deciding twice does nothing twice: the answer says how it was decided, and by whom.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.pipelines.commands import texts
from app.pipelines.fix_request import Decision, FixDecision

if TYPE_CHECKING:
    from app.pipelines.commands.pipeline import Command

Result = tuple[bool, dict[str, Any]]
DONE = frozenset({"apply", "applied", "open_pr", "discard"})  # results where the decision was carried out


def decision_of(name: str, args: str) -> Decision:
    """`/apply` → apply, `/apply pr` → open_pr, `/discard` → discard (pure); other words are ignored."""
    if name == "discard":
        return "discard"
    return "open_pr" if (args.split() or [""])[0].lower() in ("pr", "pull_request", "pull-request") else "apply"


async def apply(command: Command) -> Result:
    return await _decide(command, decision_of("apply", command.args))


async def discard(command: Command) -> Result:
    return await _decide(command, "discard")


async def _decide(command: Command, decision: Decision) -> Result:
    if command.fix is None:  # this process was wired without the fix pipeline
        await command.feedback.answer(texts.not_available(command.name))
        return False, {"result": "not_available"}
    job = command.ctx.job
    payload = job.payload
    assert job.pr_number is not None
    request = FixDecision(repo=job.repo, pr_number=job.pr_number, decision=payload.get("decision") or decision,
                          decided_by=command.user or "someone", proposal_id=payload.get("proposal_id"),
                          check_run_id=payload.get("check_run_id"))
    result = await command.fix(command.ctx, request) or {}
    await command.feedback.answer(result.get("answer") or f"`/{command.name}`: nothing to do.")
    kept = {k: result[k] for k in ("proposal", "decision", "outcome", "fix_sha", "fix_url") if result.get(k)}
    return result.get("result") in DONE, {"result": result.get("result", "unknown"), **kept}


HANDLERS = {"apply": apply, "discard": discard}
