"""Custom tools the coordinator agent calls (DESIGN §3.3); the contract is `schemas.CUSTOM_TOOLS`."""

from app.tools.catalog import catalog_tool, handler_of, unhandled
from app.tools.progress import ProgressReporter, complete_check_run, report_progress, start_check_run
from app.tools.registry import Tool, ToolAnswer, ToolContext, ToolError, ToolRegistry, describe_validation_error
from app.tools.schemas import CUSTOM_TOOLS, CustomTool


def default_registry() -> ToolRegistry:
    """Every custom tool of the contract. A tool that needs what only another kind of job provides
    (`publish_review` outside a review, `propose_fix` and `read_ci_log` outside a fix) is refused
    with what to do instead; pipelines may register their own handler over any entry."""
    return ToolRegistry(catalog_tool(name) for name in CUSTOM_TOOLS)


__all__ = [
    "CUSTOM_TOOLS", "CustomTool", "ProgressReporter", "Tool", "ToolAnswer", "ToolContext", "ToolError", "ToolRegistry",
    "catalog_tool", "complete_check_run", "default_registry", "describe_validation_error", "handler_of",
    "report_progress", "start_check_run", "unhandled",
]
