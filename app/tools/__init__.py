"""Custom tools the coordinator agent calls; the contract is `schemas.CUSTOM_TOOLS`
(docs/architecture.md, "Custom tools")."""

from app.tools.catalog import catalog_tool, handler_of, unhandled
from app.tools.progress import report_progress
from app.tools.registry import (Progress, Tool, ToolAnswer, ToolContext, ToolError, ToolRegistry,
                                describe_validation_error)
from app.tools.schemas import CUSTOM_TOOLS, CustomTool


def default_registry() -> ToolRegistry:
    """Every custom tool of the contract. A tool that needs what only another kind of job provides
    (`publish_review` outside a review, `propose_fix` and `read_ci_log` outside a fix) is refused
    with what to do instead; pipelines may register their own handler over any entry."""
    return ToolRegistry(catalog_tool(name) for name in CUSTOM_TOOLS)


__all__ = [
    "CUSTOM_TOOLS", "CustomTool", "Progress", "Tool", "ToolAnswer", "ToolContext", "ToolError", "ToolRegistry",
    "catalog_tool", "default_registry", "describe_validation_error", "handler_of", "report_progress", "unhandled",
]
