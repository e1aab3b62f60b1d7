"""`/fix [instructions]` and `/test [what]`: work on the PR's head through the fix pipeline, as
this command job (`Command.fix`, wired in `app.runtime`).

`/fix` alone repairs the failing checks (with none failing it answers how to ask for a change);
`/fix <instructions>` makes the change asked for, also when nothing failed; `/test [what]` writes
tests for the PR's changes (or for `what`) and runs them. What comes of it is proposed through
`propose_fix` as the repository's `fix.delivery` says (a fork PR gets suggestions or a patch:
nothing is pushed to a fork), on the budget `budget.command_usd`. The agents' progress shows in
the command's answer comment, which ends with the fix PR (or why there is none), the check run,
cost and duration: 🚀 only when something was delivered.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from app.pipelines.checks import known_check_run
from app.pipelines.commands import texts
from app.pipelines.commands.agents import open_pull, quoted
from app.pipelines.fix_request import NOUN, FixRequest, Purpose
from app.sessions.cost import cost_from_result

if TYPE_CHECKING:
    from app.pipelines.commands.pipeline import Command

Result = tuple[bool, dict[str, Any]]

HEADINGS: dict[str, str] = {
    "repair": "`/fix` asked by @{user}: looking at the failing checks of `{head}` and repairing them…",
    "change": "`/fix` asked by @{user}: making the change on `{head}`…",
    "tests": "`/test` asked by @{user}: writing and running tests on `{head}`…",
}
WHAT = {"repair": "a fix", "change": "the change", "tests": "tests"}


async def fix(command: Command) -> Result:
    return await _run(command, "change" if command.args.strip() else "repair")


async def test(command: Command) -> Result:
    return await _run(command, "tests")


async def _run(command: Command, purpose: Purpose) -> Result:
    if command.fix is None:  # this process was wired without the fix pipeline
        await command.feedback.answer(texts.not_available(command.name))
        return False, {"result": "not_available"}
    pr = await open_pull(command)
    if pr is None:
        return False, {"result": "closed"}
    run, ctx = command.run, command.ctx
    head = pr["head_sha"]
    command.answer.heading = HEADINGS[purpose].format(user=command.user, head=head[:7])
    await command.answer.start()
    request = FixRequest(repo=ctx.job.repo, head_sha=head, pr_number=pr["number"], trigger="command",
                         requested_by=command.user, purpose=purpose, instructions=command.args or None,
                         budget_usd=run.config.budget.command_usd)
    job = ctx.job.model_copy(update={"head_sha": head})
    result = await command.fix(dataclasses.replace(ctx, job=job), request) or {}
    check_id = await known_check_run(run)
    web = ((ctx.settings.github_web_url if ctx.settings else None) or "https://github.com").rstrip("/")
    check_url = f"{web}/{ctx.job.repo}/runs/{check_id}" if check_id else None
    body = answer_body(purpose, result, head_ref=pr.get("head_ref"), check_url=check_url,
                       reply=command.answer.reply_body)
    total = cost_from_result(result)
    cost = f"Cost (list price): ${total:.2f} · " if total is not None else ""
    await command.answer.finish(f"`/{command.name}` by @{command.user} · {cost}Duration: {run.elapsed()}", body=body)
    ok = bool(result.get("fix_url"))
    outcome = "proposed" if ok else ("skipped" if result.get("skipped") else "not_proposed")
    kept = {k: result[k] for k in ("fix_url", "delivered_as", "fix_sha", "skipped", "no_fix", "session_id",
                                   "list_cost_usd", "budget_reached", "approval_note") if result.get(k) is not None}
    return ok, {"result": outcome, "purpose": purpose, "head_sha": head, "check_run_id": check_id, **kept}


def answer_body(purpose: str, result: dict[str, Any], *, head_ref: str | None, check_url: str | None,
                reply: str | None = None) -> str:
    """The command's answer once the fix pipeline is done (pure): what was delivered and where, or
    why nothing was (with the agents' own explanation, `reply`, when they gave one, else their last
    message); then the check run."""
    check = f"\n\nDetails: [the check run]({check_url})." if check_url else ""
    if result.get("skipped"):
        return f"Nothing done: {result['skipped']}.{check}"
    url, what = result.get("fix_url"), WHAT[purpose]
    if not url:
        why = f"No {NOUN[purpose]} proposed: {result.get('no_fix') or 'the agents ended without a patch'}."
        said = f"\n\n{reply.strip()}" if reply and reply.strip() else quoted(result.get("last_message"))
        return f"{why}{said}{check}"
    fork = "this pull request comes from a fork, so prmedic pushes nothing"
    where = {
        "pull_request": f"Proposed {what} in [a fix pull request]({url})" + (f" onto `{head_ref}`" if head_ref else "")
                        + ": merge it to apply it.",
        "push": f"Pushed {what} to the pull request's branch: [commit `{(result.get('fix_sha') or '')[:7]}`]({url}).",
        "awaiting_approval": (f"Committed {what} as [`{(result.get('fix_sha') or '')[:7]}`]({url}) on prmedic's own "
                              "branch; **nothing was applied yet**: it waits for approval (`fix.approval`). "
                              "`/apply` pushes it onto the pull request's branch, `/apply pr` opens it as a pull "
                              "request, `/discard` deletes it (or use the buttons on the check run)."),
        "suggestions": f"Offered {what} as [review suggestions]({url}): {fork}; commit the suggestions to apply them.",
        "patch_comment": f"Offered {what} as [a patch]({url}) to apply with `git apply`: {fork}.",
    }.get(result.get("delivered_as") or "", f"Proposed {what}: {url}.")
    parts = [where + (f" ({result['approval_note']}.)" if result.get("approval_note") else "")]
    if result.get("fix_title"):
        parts.append(f"**{result['fix_title']}**")
    if result.get("fix_body"):
        parts.append(result["fix_body"].strip())
    return "\n\n".join(parts) + check


HANDLERS = {"fix": fix, "test": test}
