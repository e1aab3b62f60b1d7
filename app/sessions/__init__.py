"""The agent runtime: one Managed Agents session per job, many watched by one process.

`types` (settings, spec, outcome) and `errors` are what callers handle; `state` folds a session's
events and decides what to do next, with no I/O; `runner` does one session's network work and
`runtime` holds what the process shares (clients, the concurrency cap)."""

from app.sessions.errors import SessionFailed, SessionRetryable
from app.sessions.runtime import SessionRuntime
from app.sessions.types import SessionOutcome, SessionSettings, SessionSpec

__all__ = ["SessionFailed", "SessionOutcome", "SessionRetryable", "SessionRuntime", "SessionSettings", "SessionSpec"]
