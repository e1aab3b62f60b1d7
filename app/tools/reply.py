"""`reply`: the bot's answer comment on the pull request, one per PR, updated in place on later calls."""

from __future__ import annotations

from app.logs import redact
from app.tools.comments import upsert_comment
from app.tools.registry import ToolContext, ToolError
from app.tools.schemas import ReplyInput

REPLY_MARKER = "<!-- prmedic:reply -->"
REPLY_MAX = 60_000  # GitHub refuses comment bodies over 65,536 characters


async def reply(ctx: ToolContext, args: ReplyInput) -> str:
    number = ctx.job.pr_number
    if number is None or ctx.github is None:
        raise ToolError("This job has no pull request to reply on; say it in your final report_progress instead.")
    body = redact(args.body)
    if len(body) > REPLY_MAX:
        body = body[:REPLY_MAX] + "\n\n…(cut)"
    if ctx.answer is not None:  # a command: its answer goes where the command was asked
        url = await ctx.answer(body)
        return (f"Answer posted: {url}. Calling reply again replaces it (one answer per command); the app adds the "
                "outcome, cost and duration under it when the job ends.")
    url = await upsert_comment(await ctx.github(), ctx.repo, number, body, marker=REPLY_MARKER)
    return (f"Answer posted on the pull request: {url}. Calling reply again replaces it (one answer comment per pull "
            "request).")
