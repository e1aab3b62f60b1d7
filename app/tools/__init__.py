"""Custom tools the coordinator agent calls (DESIGN §3.3)."""

from app.tools.progress import ProgressReporter, complete_check_run, report_progress, start_check_run
from app.tools.registry import Tool, ToolAnswer, ToolContext, ToolError, ToolRegistry, describe_validation_error
from app.tools.schemas import ReportProgressInput


def default_registry() -> ToolRegistry:
    """The tools implemented so far; pipelines add theirs (publish_review, propose_fix, …)."""
    registry = ToolRegistry()
    registry.register("report_progress", ReportProgressInput, report_progress)
    return registry


__all__ = [
    "ProgressReporter", "Tool", "ToolAnswer", "ToolContext", "ToolError", "ToolRegistry", "complete_check_run",
    "default_registry", "describe_validation_error", "report_progress", "start_check_run",
]
