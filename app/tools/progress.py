"""`report_progress`: the agent's progress, shown on the job's check run.

The pipeline that opened the check run hands the tools a reporter for it (`ToolContext.progress`,
`app.pipelines.checks.ProgressReporter`), which throttles and coalesces the reports.
"""

from __future__ import annotations

from app.tools.registry import ToolContext
from app.tools.schemas import ReportProgressInput


async def report_progress(ctx: ToolContext, args: ReportProgressInput) -> str:
    if ctx.progress is None:
        return "Progress noted (this job has no check run to show it on)."
    return await ctx.progress.report(args.message, args.done, args.todo)
