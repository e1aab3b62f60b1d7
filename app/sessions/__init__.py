"""The agent runtime: one Managed Agents session per job, many watched by one process."""

from app.sessions.runner import (
    SessionFailed,
    SessionOutcome,
    SessionRetryable,
    SessionRuntime,
    SessionSettings,
    SessionSpec,
)

__all__ = ["SessionFailed", "SessionOutcome", "SessionRetryable", "SessionRuntime", "SessionSettings", "SessionSpec"]
