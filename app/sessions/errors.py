"""How a session fails: for good (`SessionFailed`) or for now (`SessionRetryable`). Both carry the
reason, the session id and what the session had spent, for the job's record."""

from __future__ import annotations

from typing import Any

from app.errors import PermanentError, TransientError


class _SessionErrorMixin:
    session_id: str | None
    reason: str
    usage: dict[str, Any] | None
    list_cost_cents: int | None

    def _init(self, message: str, *, reason: str, session_id: str | None, usage: dict[str, Any] | None = None,
              list_cost_cents: int | None = None) -> None:
        self.reason = reason
        self.session_id = session_id
        self.usage = usage
        self.list_cost_cents = list_cost_cents


class SessionFailed(PermanentError, _SessionErrorMixin):
    """The session cannot do the job; retrying will not help. The message says why."""

    def __init__(self, message: str, *, reason: str, session_id: str | None = None, **kw: Any) -> None:
        super().__init__(message)
        self._init(message, reason=reason, session_id=session_id, **kw)


class SessionRetryable(TransientError, _SessionErrorMixin):
    """The session failed for a reason that may pass (overload, lost contact): retry the job later."""

    def __init__(self, message: str, *, reason: str, session_id: str | None = None, **kw: Any) -> None:
        super().__init__(message)
        self._init(message, reason=reason, session_id=session_id, **kw)

