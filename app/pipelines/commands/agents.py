"""Commands that run an agent session of their own: `/ask` (and the shared runner `/describe` uses).

The session gets the PR's head mounted, `budget.command_usd`, and the command's answer comment as
its channel (`CommandAnswer`): progress shows there as a checklist, `reply` writes the answer, and
the outcome, cost and duration end it. A session that gives no answer says so: it never looks done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.pipelines.commands.brief import CommandBrief, Thread, build_command_task
from app.pipelines.diff import fetch_pull_files
from app.pipelines.session import cost_and_duration, run_agents
from app.routing.fields import pull_request_fields
from app.sessions import SessionOutcome
from app.tools import ToolRegistry, catalog_tool

if TYPE_CHECKING:
    from app.pipelines.commands.describe import DescribeTarget
    from app.pipelines.commands.pipeline import Command

Result = tuple[bool, dict[str, Any]]


async def open_pull(command: Command) -> dict[str, Any] | None:
    """The PR's fields now, or None (answered) when it is closed."""
    job = command.ctx.job
    pr = pull_request_fields(await command.run.gh.getitem(f"/repos/{job.repo}/pulls/{job.pr_number}"))
    if pr.get("state") == "closed":
        await command.feedback.answer(f"The pull request is closed: prmedic does not run `/{command.name}` on it.")
        return None
    return pr


def thread_of(command: Command) -> Thread | None:
    """The review thread the command was written in, if any."""
    comment = command.ctx.job.payload.get("comment") or {}
    if command.ctx.job.payload.get("source") != "pull_request_review_comment" or not comment.get("path"):
        return None
    return Thread(path=comment["path"], line=comment.get("line"), side=comment.get("side"),
                  diff_hunk=comment.get("diff_hunk"))


def registry(*names: str) -> ToolRegistry:
    """Only the tools this command's session may use; any other call is answered as unknown."""
    return ToolRegistry(catalog_tool(name) for name in names)


async def run_command_session(command: Command, pr: dict[str, Any], *, tools: ToolRegistry,
                              describe: DescribeTarget | None = None) -> SessionOutcome:
    run, job = command.run, command.ctx.job
    files = await fetch_pull_files(run.gh, job.repo, pr["number"])
    task = build_command_task(CommandBrief(command=command.name, args=command.args, user=command.user,
                                           repo=job.repo, pr=pr, files=files, thread=thread_of(command),
                                           describe_mode=describe.mode if describe else "body"))
    await command.answer.start()
    return await run_agents(
        run, task=task, tools=tools, budget_usd=run.config.budget.command_usd, head_sha=pr["head_sha"],
        pr_number=pr["number"], title=f"prmedic /{command.name} {job.repo}#{pr['number']} @ {pr['head_sha'][:7]}",
        repo_language=(job.payload.get("repository") or {}).get("language"), describe=describe)


def no_answer_reason(outcome: SessionOutcome) -> str:
    if outcome.budget_reached:
        return "the budget (`budget.command_usd`) ran out before the agents answered"
    return "the agents ended without answering"


def quoted(text: str | None) -> str:
    if not text or not text.strip():
        return ""
    return "\n\nTheir last message:\n\n" + "\n".join(f"> {line}" for line in text.strip()[:1500].splitlines())


async def ask(command: Command) -> Result:
    if not command.args.strip():
        await command.feedback.answer("`/ask` needs a question, e.g. `/ask why is the retry limit 3 here?`")
        return False, {"result": "usage"}
    pr = await open_pull(command)
    if pr is None:
        return False, {"result": "closed"}
    outcome = await run_command_session(command, pr, tools=registry("report_progress", "reply"))
    footer = f"`/ask` by @{command.user} · {cost_and_duration(outcome, command.run)}"
    session = outcome.as_result()
    if command.answer.reply_body is None:
        why = no_answer_reason(outcome)
        await command.answer.finish(footer, body=f"`/ask` ended without an answer: {why}.{quoted(outcome.final_message)}")
        return False, {"result": "no_answer", "reason": why, **session}
    await command.answer.finish(footer)
    return True, {"result": "answered", **session}


HANDLERS = {"ask": ask}
