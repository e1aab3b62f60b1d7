"""Scripts: what drives a session, and the context a step is played with.

A script is ``Script(*steps)`` (one turn per ``user.message``; ``.then_turn(*steps)`` adds turns).
The step builders are in :mod:`.steps`, ready-made scripts in :mod:`.ready`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Union

from .common import SimulatorBug, _content_text

if TYPE_CHECKING:
    from .session import SimSession
    from .simulator import ManagedAgentsSimulator


Step = Callable[["ScriptContext"], Awaitable[None]]


class _TurnEnded(Exception):
    pass


class Script:
    """A sequence of turns; each turn is a sequence of steps played for one ``user.message``.

    ``Script(step, step, ...)`` is a single-turn script; ``.then_turn(...)`` adds more.
    When the turns run out, further messages get ``fallback`` (a short reply + end_turn).
    A turn that ends without an explicit ``stop_*``/``terminate`` ends with ``end_turn``.
    Scripts are stateless and may be shared by many sessions.
    """

    def __init__(self, *steps: Step, name: str = "script") -> None:
        self.turns: list[list[Step]] = [list(steps)]
        self.name = name

    def then_turn(self, *steps: Step) -> "Script":
        self.turns.append(list(steps))
        return self

    def __repr__(self) -> str:
        return f"Script({self.name!r}, turns={len(self.turns)})"


ScriptLike = Union[Script, Callable[[], Script]]


@dataclass
class ToolResult:
    """A ``user.custom_tool_result`` (or ``user.tool_confirmation``) the client sent."""

    custom_tool_use_id: str
    name: str
    input: dict
    content: list
    is_error: bool
    event: dict
    session_thread_id: str | None = None

    @property
    def text(self) -> str:
        return _content_text(self.content)


@dataclass
class _Pending:
    kind: str  # "custom" | "confirm"
    event: dict
    future: asyncio.Future
    thread_id: str | None


@dataclass
class _Subscriber:
    queue: asyncio.Queue
    thread_id: str | None  # None => session stream
    deltas: set[str]
    delivered: int = 0


_DROP_ABORT = object()
_DROP_EOF = object()
_CLOSE = object()


class ScriptContext:
    """What a step gets: emit events, manage threads, wait for tool results."""

    def __init__(self, sim: "ManagedAgentsSimulator", session: "SimSession", message: dict | None) -> None:
        self.sim = sim
        self.session = session
        self.message = message  # the user.message that started this turn
        self.last_tool_result: ToolResult | None = None
        self.tool_results: list[ToolResult] = []  # this turn's results, in order
        self.ended = False

    # -- threads -------------------------------------------------------------------
    def thread_id(self, thread: str | None) -> str | None:
        """Resolve a thread key (agent name / key given to thread_created) or id; None => primary."""
        if thread is None:
            return None
        s = self.session
        if thread in s.threads:
            return thread
        if thread in s.thread_keys:
            return s.thread_keys[thread]
        raise SimulatorBug(f"script refers to unknown thread {thread!r}; create it with thread_created() first")

    # -- events ----------------------------------------------------------------------
    async def emit(self, type_: str, *, thread: str | None = None, delay: bool = True, **fields: Any) -> dict:
        if delay and self.sim.step_delay:
            await asyncio.sleep(self.sim.step_delay)
        return self.sim._emit(self.session, type_, thread_id=self.thread_id(thread), fields=fields)

    async def set_running(self) -> None:
        s = self.session
        if s.status != "running":
            s.set_status("running", self.sim.clock.now())
        await self.emit("session.status_running")

    async def idle(self, stop_reason: dict, stop_details: dict | None = None, *, delay: bool = True) -> dict:
        s = self.session
        fields: dict[str, Any] = {"stop_reason": stop_reason}
        if stop_details is not None:
            fields["stop_details"] = stop_details
        if delay and self.sim.step_delay:
            await asyncio.sleep(self.sim.step_delay)
        s.set_status("idle", self.sim.clock.now())
        return self.sim._emit(s, "session.status_idle", thread_id=None, fields=fields)

    async def stop(self, stop_reason: dict, stop_details: dict | None = None) -> None:
        await self.idle(stop_reason, stop_details)
        self.ended = True
        raise _TurnEnded()

    async def wait_for_results(self, event_ids: list[str]) -> list[ToolResult]:
        """Idle with requires_action for ``event_ids`` until every one is answered, then run again."""
        s = self.session
        remaining = list(event_ids)
        results: dict[str, ToolResult] = {}
        if self.sim.step_delay:
            await asyncio.sleep(self.sim.step_delay)
        unanswered = [e for e in remaining if not s.pending[e].future.done()]
        went_idle = bool(unanswered)
        if unanswered:  # a client that answered straight from the tool-use event never sees an idle
            await self.idle({"type": "requires_action", "event_ids": unanswered}, delay=False)
        while True:
            for eid in list(remaining):
                p = s.pending.get(eid)
                if p is not None and p.future.done():
                    results[eid] = p.future.result()
                    del s.pending[eid]
                    remaining.remove(eid)
            if not remaining:
                break
            if len(results) and s.status == "idle" and s._last_requires_action != remaining:
                # partially answered: idle again with what is left
                await self.idle({"type": "requires_action", "event_ids": list(remaining)}, delay=False)
            await asyncio.wait({s.pending[e].future for e in remaining}, return_when=asyncio.FIRST_COMPLETED)
        out = [results[e] for e in event_ids]
        self.tool_results.extend(out)
        self.last_tool_result = out[-1] if out else None
        if went_idle or s.status != "running":
            await self.set_running()
        return out

    async def check_budget(self) -> None:
        s = self.session
        if s.budget is None or s.budget_stopped:
            return
        if s.cost_cents() >= Decimal(s.budget["max_list_cost"]["amount"]):
            s.budget_stopped = True
            await self.emit("session.usage", usage=s.usage_snapshot(), budget=s.budget)
            await self.stop({"type": "budget_reached"})
