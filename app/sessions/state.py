"""The session's state, folded from its events, and the next thing to do about it: no I/O.

The runner (`app/sessions/runner.py`) feeds every event it reads, from the back-fill and from the
live stream, to `SessionState.ingest` and after each batch asks `next_action` what to do; it does
the network work, then tells the state what it did (`mark_task_sent`, `mark_answered`). Acting on
the state rather than on single events is what makes a resumed session, a re-read event or a
reconnect harmless (docs/architecture.md, "Sessions"):

- the task is sent if the log has no `user.message` yet;
- the ids of the latest `requires_action` that have no answer in the log are answered, one by one:
  a custom tool call with its result, a tool waiting for a confirmation by the operator's tool
  policy (`app/agents/tool_policy.py`, applied by the runner);
- `end_turn` finishes, `budget_reached` finishes flagged; `retries_exhausted`, a terminal error
  and a termination fail for now (a retry makes a new session); `refusal` fails for good; a
  `repository_*` error fails for good and interrupts the session (it would work without the code).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, NamedTuple

from app.agents.tool_policy import ToolIdentity
from app.logs import redact
from app.sessions.errors import SessionFailed, SessionRetryable


# ----------------------------------------------------------------------------------------------
# decisions
# ----------------------------------------------------------------------------------------------


class ToolUse(NamedTuple):
    name: str
    input: Any


@dataclass(frozen=True)
class Wait:
    """Nothing to do until the next event."""


@dataclass(frozen=True)
class SendTask:
    """Send the task (`user.message`); the log has none yet."""


@dataclass(frozen=True)
class Confirm:
    """Answer a built-in or MCP tool call that waits for a confirmation, by the tool policy;
    `tool` is None when its tool-use event was not seen."""

    event_id: str
    tool: ToolIdentity | None = None


@dataclass(frozen=True)
class Answer:
    """Answer a custom tool call; `use` is None when its `agent.custom_tool_use` was not seen
    (read it from the log)."""

    event_id: str
    use: ToolUse | None


@dataclass(frozen=True)
class Finish:
    """The session is done: record the outcome."""

    stop_reason: str  # end_turn | budget_reached
    budget_reached: bool = False


@dataclass(frozen=True)
class Fail:
    """The session cannot go on: close its record and raise `error`, interrupting it first if
    `interrupt` (it is still running)."""

    error: SessionFailed | SessionRetryable
    interrupt: bool = False


Action = Wait | SendTask | Confirm | Answer | Finish | Fail


# ----------------------------------------------------------------------------------------------
# state
# ----------------------------------------------------------------------------------------------


class EventWindow:
    """A bounded set of recently seen event ids."""

    __slots__ = ("ids", "order")

    def __init__(self, size: int) -> None:
        self.ids: set[str] = set()
        self.order: collections.deque[str] = collections.deque(maxlen=size)

    def add(self, event_id: str) -> bool:
        """Remember `event_id`; False if it was seen already."""
        if event_id in self.ids:
            return False
        if len(self.order) == self.order.maxlen:
            self.ids.discard(self.order[0])
        self.order.append(event_id)
        self.ids.add(event_id)
        return True


class SessionState:
    """What the event log says about one session, and what to do next."""

    def __init__(self, *, repo: str = "", head_sha: str = "", session_id: str = "", dedup_window: int = 256) -> None:
        self.repo = repo
        self.head_sha = head_sha
        self.session_id = session_id
        self.seen = EventWindow(dedup_window)
        self.events = 0  # distinct events folded in
        self.watermark: Any = None  # the latest processed_at seen
        self.status: str | None = None  # running | idle | rescheduling | terminated
        self.stop_reason: Any = None
        self.stop_details: Any = None
        self.task_seen = False
        self.task_sent = False
        self.tool_uses: dict[str, ToolUse] = {}  # unanswered custom tool uses
        self.confirmations: dict[str, ToolIdentity] = {}  # tool uses waiting for a confirmation
        self.confirmed: collections.Counter[str] = collections.Counter()  # confirmations in the log, by result
        self.answered: set[str] = set()
        self.pending: list[str] = []
        self.failure: SessionFailed | SessionRetryable | None = None
        self.interrupt_needed = False
        self.terminal_error: str | None = None
        self.errors: list[str] = []
        self.usage: dict[str, Any] | None = None
        self.list_cost_cents: int | None = None
        self.final_message: str | None = None

    # -- events → state ------------------------------------------------------------------------
    def ingest(self, ev: Any) -> bool:
        """Fold one event into the state; False for a duplicate or a preview (an event without id)."""
        if not self.accept(ev):
            return False
        self.fold(ev)
        return True

    def accept(self, ev: Any) -> bool:
        """The first half of `ingest`: count the event and move the watermark, unless it is a
        duplicate or a preview (False)."""
        event_id = getattr(ev, "id", None)
        if event_id is None or not self.seen.add(event_id):
            return False
        self.events += 1
        processed = getattr(ev, "processed_at", None)
        if processed is not None and (self.watermark is None or processed > self.watermark):
            self.watermark = processed
        return True

    def fold(self, ev: Any) -> None:
        """The second half of `ingest`: what the event changes."""
        t = ev.type
        if t == "agent.custom_tool_use":
            if ev.id not in self.answered:
                self.tool_uses[ev.id] = ToolUse(ev.name, ev.input)
        elif t == "user.custom_tool_result":
            self.mark_answered(ev.custom_tool_use_id)
        elif t in ("agent.tool_use", "agent.mcp_tool_use"):
            if getattr(ev, "evaluated_permission", None) == "ask" and ev.id not in self.answered:
                self.confirmations[ev.id] = ToolIdentity.of_event(ev)
        elif t == "user.tool_confirmation":
            self.confirmations.pop(ev.tool_use_id, None)
            self.answered.add(ev.tool_use_id)
            self.confirmed[ev.result] += 1
        elif t == "user.message":
            self.task_seen = True
        elif t == "session.status_idle":
            self.status = "idle"
            self.stop_reason = ev.stop_reason
            self.stop_details = getattr(ev, "stop_details", None)
            if ev.stop_reason.type == "requires_action":
                self.pending = [e for e in ev.stop_reason.event_ids if e not in self.answered]
            else:
                self.pending = []
        elif t == "session.status_running":
            self.status = "running"
        elif t == "session.status_rescheduled":
            self.status = "rescheduling"
        elif t in ("session.status_terminated", "session.deleted"):
            self.status = "terminated"
        elif t == "session.error":
            self._on_error(ev.error)
        elif t == "session.usage":
            self.set_usage(ev.usage)
        elif t == "agent.message" and getattr(ev, "session_thread_id", None) is None:
            text = "".join(getattr(b, "text", "") or "" for b in ev.content)
            self.final_message = text[:4000]

    def _on_error(self, err: Any) -> None:
        kind = err.type
        retry = getattr(getattr(err, "retry_status", None), "type", None)
        self.errors.append(kind)
        if len(self.errors) > 50:
            del self.errors[:-50]
        if kind.startswith("repository_") and self.failure is None:
            what = {
                "repository_authentication_error": "the repository token was not accepted",
                "repository_forbidden_error": "access to the repository was refused",
                "repository_not_found_error": "the repository was not found",
                "repository_checkout_error": f"commit {self.head_sha[:12]} could not be checked out",
                "repository_clone_error": "the repository could not be cloned",
            }.get(kind, kind)
            self.failure = SessionFailed(
                f"the agent session could not mount {self.repo}: {what} ({redact(err.message or kind)}); "
                "it was stopped rather than let it work without the code", reason=kind, session_id=self.session_id)
            self.interrupt_needed = True
        elif retry == "terminal":
            self.terminal_error = f"{kind}: {redact(err.message or '')}"

    def set_usage(self, usage: Any) -> None:
        """Take the usage and list cost (from a `session.usage` event or the session itself)."""
        if usage is None:
            return
        self.usage = usage.model_dump(mode="json", exclude_none=True) if hasattr(usage, "model_dump") else dict(usage)
        cost = getattr(usage, "list_cost", None)
        if cost is not None and getattr(cost, "amount", None) is not None:
            try:
                self.list_cost_cents = int(cost.amount)
            except ValueError:
                pass

    # -- what the runner did -------------------------------------------------------------------
    def mark_task_sent(self) -> None:
        self.task_sent = True

    def mark_answered(self, event_id: str) -> None:
        """An answer (or a confirmation) was sent, or seen in the log, for `event_id`."""
        self.answered.add(event_id)
        self.tool_uses.pop(event_id, None)
        if event_id in self.pending:
            self.pending.remove(event_id)

    def mark_interrupted(self) -> None:
        self.interrupt_needed = False

    def mark_confirmed(self, event_id: str) -> None:
        self.confirmations.pop(event_id, None)

    def skip(self, event_id: str) -> None:
        """Leave a call that cannot be answered (its tool use is nowhere in the log)."""
        self.answered.add(event_id)

    # -- state → action ------------------------------------------------------------------------
    def next_action(self) -> Action:
        """What to do now. After `Confirm` or `Answer` ask again: the next pending call follows."""
        if self.failure is not None:
            return Fail(self.failure, interrupt=self.interrupt_needed and self.status != "terminated")
        if self.status == "terminated":
            if self.terminal_error is None and self.stop_reason is not None and self.stop_reason.type == "end_turn":
                return Finish("end_turn")
            return Fail(SessionRetryable(
                f"the agent session ended early ({self.terminal_error or 'terminated'}); the job will be retried "
                "with a new session", reason="terminated", session_id=self.session_id))
        if not self.task_seen and not self.task_sent:
            return SendTask()
        if self.status != "idle" or self.stop_reason is None:
            return Wait()
        reason = self.stop_reason.type
        if reason == "requires_action":
            for event_id in self.pending:
                if event_id in self.answered:
                    continue
                if event_id in self.confirmations:
                    return Confirm(event_id, self.confirmations[event_id])
                return Answer(event_id, self.tool_uses.get(event_id))
        elif reason == "end_turn" and self.task_seen:
            return Finish("end_turn")
        elif reason == "budget_reached":
            return Finish("budget_reached", budget_reached=True)
        elif reason == "retries_exhausted":
            last = self.errors[-1] if self.errors else "repeated errors"
            return Fail(SessionRetryable(
                f"the agent session gave up after the platform's retries were exhausted ({last}); the job will be "
                "retried with a new session", reason="retries_exhausted", session_id=self.session_id))
        elif reason == "refusal":
            details = self.stop_details
            category = getattr(details, "category", None) or "unspecified"
            explanation = getattr(details, "explanation", None)
            return Fail(SessionFailed(
                f"the model declined the task (refusal, category {category})"
                + (f": {explanation}" if explanation else ""), reason="refusal", session_id=self.session_id))
        return Wait()
