"""A strict, stateful simulator of Anthropic's Managed Agents API (aiohttp).

The real ``anthropic`` SDK reaches it through ``base_url`` / ``ANTHROPIC_BASE_URL``.

* Strict: every request must carry ``anthropic-beta: managed-agents-2026-04-01``, an API key
  (``x-api-key`` or ``Authorization: Bearer``) and ``anthropic-version``. Bodies are validated
  against the SDK's own param ``TypedDict``s (types *and* unknown keys) plus the documented
  rules (tool names, metadata limits, multiagent roster, networking/packages, budget, ...).
  Anything wrong is answered with the Anthropic error shape and recorded in ``sim.violations``.
* Every response and every emitted event is validated against the SDK's response models
  before it leaves the simulator (a failure there is a simulator bug and is reported loudly).
* Stateful: agents (with versions), environments, sessions, resources, threads and an
  append-only event log per session; sessions are driven by *scripts* (see the step builders
  and the ready-made scripts at the end of this module).

Public surface:

    sim = ManagedAgentsSimulator(step_delay=0.005, ping_interval=0.5)
    app = sim.make_app()                        # aiohttp application (the fixture serves it)

    # choosing a session's script (first match wins):
    sim.scripts["review"] = normal_review_run()  # + session metadata {"script": "review"}
    sim.script_for(lambda create_body: ...)      # return a Script (or a factory) or None
    sim.queue_script(s1, s2)                     # the next sessions created, in order
    sim.default_script = end_turn_only()         # otherwise (built-in default: end_turn_only())
    sim.sessions[sid].script = ...               # swap for the session's next turns

    # faults
    sim.fail_next_session_creates(n, status=529 | 429, retry_after=0.01)
    sim.fail_next(method, path, n, status=...)
    sim.drop_streams_after(n_events, times=1, mode="abort" | "eof")

    # inspection
    sim.calls (Call(method, path, body)), sim.write_calls(since=sim.mark()), sim.requests
    sim.violations, sim.expect_violations, sim.interrupts, sim.conflicts
    sim.agents / sim.environments / sim.sessions[sid] (SimSession: status, events, thread_logs,
    threads, tool_results, confirmations, interrupts, user_messages, usage, stream_drops,
    resources[i]["_token"])
    await sim.wait_idle(sid, "requires_action"), sim.wait_for_event(sid, type, **match),
    sim.wait_until(predicate)

A script is ``Script(*steps)`` (one turn per ``user.message``; ``.then_turn(*steps)`` adds
turns). The runner emits ``session.status_running`` when a turn starts and after tool results
come back, and ``session.status_idle`` (end_turn) if a turn ends without a ``stop_*`` step.
Sub-agent work stays in its thread's log; ``CROSSPOSTED_TYPES`` are copied to the session log
(``sim.flatten_threads = True`` copies everything).
"""

from __future__ import annotations

import asyncio
import base64
import collections.abc
import json
import re
import secrets
import string
import time
import types
import typing
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Awaitable, Callable, Iterable, NamedTuple, Sequence, Union

import pydantic
import typing_extensions as te
from aiohttp import web

from anthropic.types.beta import (
    BetaEnvironment,
    BetaEnvironmentDeleteResponse,
    BetaManagedAgentsAgent,
    BetaManagedAgentsDeletedSession,
    BetaManagedAgentsSession,
    agent_create_params,
    agent_update_params,
    environment_create_params,
    environment_update_params,
    session_create_params,
    session_update_params,
)
from anthropic.types.beta.sessions import (
    BetaManagedAgentsDeleteSessionResource,
    BetaManagedAgentsFileResource,
    BetaManagedAgentsSendSessionEvents,
    BetaManagedAgentsSessionEvent,
    BetaManagedAgentsSessionResource,
    BetaManagedAgentsSessionThread,
    BetaManagedAgentsStreamSessionEvents,
    ResourceRetrieveResponse,
    ResourceUpdateResponse,
    event_send_params,
    resource_add_params,
    resource_update_params,
)

__all__ = [
    "BETA",
    "ApiError",
    "Call",
    "ManagedAgentsSimulator",
    "Script",
    "ScriptContext",
    "SimSession",
    "ToolResult",
    # steps
    "agent_message",
    "agent_thinking",
    "custom_tool_use",
    "custom_tool_uses",
    "drop_stream",
    "if_tool_error",
    "model_request",
    "on_tool_result",
    "pause",
    "session_error",
    "status_rescheduled",
    "status_running",
    "stop",
    "stop_budget_reached",
    "stop_end_turn",
    "stop_refusal",
    "stop_retries_exhausted",
    "terminate",
    "thread_created",
    "thread_idle",
    "thread_message",
    "thread_reply",
    "thread_running",
    "thread_terminated",
    "tool_use",
    "usage_snapshot",
    # scripts
    "bad_tool_input_then_fix",
    "budget_reached",
    "dropped_stream",
    "end_turn_only",
    "normal_review_run",
    "refusal",
    "repository_clone_error",
    "retries_exhausted",
    "terminated",
]

BETA = "managed-agents-2026-04-01"

if hasattr(web, "RequestKey"):
    _JSON: Any = web.RequestKey("managed_agents_sim_json", object)
    _REC: Any = web.RequestKey("managed_agents_sim_record", object)
else:  # pragma: no cover - older aiohttp
    _JSON, _REC = "managed_agents_sim_json", "managed_agents_sim_record"

BUILTIN_TOOLS = ("bash", "edit", "read", "write", "glob", "grep", "web_fetch", "web_search")
CUSTOM_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
AMOUNT_RE = re.compile(r"^[1-9][0-9]*$")
GITHUB_URL_RE = re.compile(r"^https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?(\.git)?/?$")

# Event types that, emitted inside a sub-agent thread, are also copied to the session's
# (primary) event log and stream. Everything else a sub-agent does stays in its thread log
# (``GET /v1/sessions/{sid}/threads/{tid}/events``) unless ``sim.flatten_threads`` is set.
CROSSPOSTED_TYPES = frozenset(
    {
        "agent.custom_tool_use",
        "session.thread_status_running",
        "session.thread_status_idle",
        "session.thread_status_rescheduled",
        "session.thread_status_terminated",
        "session.error",
    }
)

# USD per million tokens (input, output), by model family. Cache reads cost 0.1x input,
# cache writes 1.25x input. Override with ``sim.pricing``.
DEFAULT_PRICING = {"opus": (5, 25), "sonnet": (3, 15), "haiku": (1, 5), "fable": (3, 15)}


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------

_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    return f"{prefix}_011{''.join(secrets.choice(_ALNUM) for _ in range(21))}"


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_dt(value: str) -> datetime:
    dt = datetime.fromisoformat(value.strip().replace(" ", "+"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt


class _Clock:
    """Strictly increasing UTC timestamps (so ``created_at[gt]`` filters are exact)."""

    def __init__(self) -> None:
        self._last: datetime | None = None

    def now(self) -> datetime:
        t = datetime.now(timezone.utc)
        if self._last is not None and t <= self._last:
            t = self._last + timedelta(microseconds=1)
        self._last = t
        return t

    def iso(self) -> str:
        return _iso(self.now())


def _text_content(text: str) -> list[dict]:
    return [{"type": "text", "text": text}]


def _content_text(content: Any) -> str:
    if not content:
        return ""
    parts = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text":
            parts.append(block.get("text", ""))
    return "\n".join(parts)


class Call(NamedTuple):
    """One request the simulator received: ``method, path, body = call``."""

    method: str
    path: str
    body: Any


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int | None = None


class ApiError(Exception):
    """Answered as ``{"type":"error","error":{...}}``; ``violation`` => recorded in sim.violations."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        violation: bool = True,
        error_code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.violation = violation
        self.error_code = error_code
        self.headers = headers or {}


def _bad(message: str, *, error_code: str | None = None, violation: bool = True) -> ApiError:
    return ApiError(400, "invalid_request_error", message, error_code=error_code, violation=violation)


def _not_found(what: str, ident: str) -> ApiError:
    # A 404 for an unknown id is legitimate client behaviour (e.g. probing after a restart).
    return ApiError(404, "not_found_error", f"{what} {ident!r} not found", violation=False)


class SimulatorBug(AssertionError):
    pass


# --------------------------------------------------------------------------------------
# validation against the SDK's own types
# --------------------------------------------------------------------------------------

_ADAPTERS: dict[Any, pydantic.TypeAdapter] = {}


def _adapter(tp: Any) -> pydantic.TypeAdapter:
    ta = _ADAPTERS.get(tp)
    if ta is None:
        ta = _ADAPTERS[tp] = pydantic.TypeAdapter(tp)
    return ta


def _drain(value: Any) -> None:
    """Exhaust pydantic's lazy ``Iterable`` validators so nested errors surface."""
    if isinstance(value, dict):
        for v in value.values():
            _drain(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _drain(v)
    elif isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return
    elif hasattr(value, "__next__"):
        for v in list(value):
            _drain(v)


_WRAPPERS = {te.Required, te.NotRequired, typing.Required, typing.NotRequired}
if hasattr(te, "ReadOnly"):
    _WRAPPERS.add(te.ReadOnly)
_NO_EXTRA = getattr(te, "NoExtraItems", None)
_HINTS: dict[Any, dict[str, Any]] = {}


def _strip(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated or origin in _WRAPPERS:
            tp = typing.get_args(tp)[0]
            continue
        return tp


def _hints(td: Any) -> dict[str, Any]:
    h = _HINTS.get(td)
    if h is None:
        h = _HINTS[td] = {k: _strip(v) for k, v in typing.get_type_hints(td, include_extras=True).items()}
    return h


def _is_union(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin is typing.Union or origin is types.UnionType


def _literal_values(tp: Any) -> tuple | None:
    tp = _strip(tp)
    if typing.get_origin(tp) is typing.Literal:
        return typing.get_args(tp)
    return None


def _shape(tp: Any) -> str:
    tp = _strip(tp)
    if te.is_typeddict(tp):
        return "object"
    if _is_union(tp):
        shapes = {_shape(a) for a in typing.get_args(tp)}
        return "union:" + ",".join(sorted(shapes))
    origin = typing.get_origin(tp)
    if origin in (dict, collections.abc.Mapping) or tp in (dict, object, typing.Any):
        return "object"
    if origin in (list, tuple, set, collections.abc.Iterable, collections.abc.Sequence):
        return "array"
    if origin is not None and len(typing.get_args(tp)) == 1:  # SequenceNotStr[str] and friends
        return "array"
    return "scalar"


def _accepts(tp: Any, value: Any) -> bool:
    tp = _strip(tp)
    if value is None:
        return True
    if te.is_typeddict(tp):
        if not isinstance(value, dict):
            return False
        lit = _literal_values(_hints(tp).get("type", type(None)))
        return lit is None or value.get("type") in lit
    if _is_union(tp):
        return any(_accepts(a, value) for a in typing.get_args(tp))
    shape = _shape(tp)
    if isinstance(value, dict):
        return shape == "object"
    if isinstance(value, list):
        return shape == "array"
    return shape == "scalar"


def _unknown_keys(tp: Any, value: Any, path: str) -> list[str]:
    tp = _strip(tp)
    if value is None or tp in (object, typing.Any):
        return []
    if te.is_typeddict(tp):
        if not isinstance(value, dict):
            return []
        hints = _hints(tp)
        extra = getattr(tp, "__extra_items__", _NO_EXTRA)
        extra_allowed = extra is not None and extra is not _NO_EXTRA
        out: list[str] = []
        for k, v in value.items():
            if k not in hints:
                if not extra_allowed:
                    out.append(f"{path}.{k}" if path else k)
                continue
            out += _unknown_keys(hints[k], v, f"{path}.{k}" if path else k)
        return out
    if _is_union(tp):
        best: list[str] | None = None
        for member in typing.get_args(tp):
            if member is type(None) or not _accepts(member, value):
                continue
            found = _unknown_keys(member, value, path)
            if best is None or len(found) < len(best):
                best = found
        return best or []
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(value, dict) and origin in (dict, collections.abc.Mapping) and len(args) == 2:
        out = []
        for k, v in value.items():
            out += _unknown_keys(args[1], v, f"{path}.{k}")
        return out
    if isinstance(value, list) and args:
        out = []
        for i, v in enumerate(value):
            out += _unknown_keys(args[0], v, f"{path}[{i}]")
        return out
    return []


def _format_pydantic(err: pydantic.ValidationError, prefix: str = "") -> str:
    parts = []
    for e in err.errors()[:6]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if not str(x).startswith("function-"))
        parts.append(f"{prefix}{loc}: {e.get('msg')}")
    more = len(err.errors()) - 6
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


def validate_params(
    param_type: Any,
    body: Any,
    *,
    not_body: Iterable[str] = ("betas", "workspace_id"),
    path_params: dict[str, str] | None = None,
) -> dict:
    """Validate a JSON request body against an SDK param TypedDict (types, required keys, unknown keys).

    ``not_body`` keys of the TypedDict travel as headers or path parameters and must not be in
    the body; ``path_params`` supplies the (required) ones for type checking."""
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object")
    not_body = tuple(not_body) + tuple(path_params or ())
    problems = [f"{k}: is not a body field (the SDK sends it as a header or path parameter)" for k in not_body if k in body]
    try:
        _drain(_adapter(param_type).validate_python({**body, **(path_params or {})}, strict=True))
    except pydantic.ValidationError as e:
        problems.append(_format_pydantic(e))
    unknown = [k for k in _unknown_keys(param_type, {k: v for k, v in body.items() if k not in not_body}, "")]
    if unknown:
        problems.append("unknown field(s): " + ", ".join(unknown))
    if problems:
        raise _bad("; ".join(problems))
    return body


def check_response(tp: Any, data: Any) -> Any:
    try:
        _drain(_adapter(tp).validate_python(data))
    except pydantic.ValidationError as e:
        raise SimulatorBug(f"simulator produced a response the SDK type {tp!r} rejects: {_format_pydantic(e)}") from e
    return data


def _check_metadata(md: Any, where: str = "metadata") -> None:
    if md is None:
        return
    if not isinstance(md, dict):
        raise _bad(f"{where}: must be an object", error_code="invalid_metadata")
    problems = []
    if len(md) > 16:
        problems.append(f"{where}: at most 16 pairs (got {len(md)})")
    for k, v in md.items():
        if not k or len(k) > 64:
            problems.append(f"{where}: key {k[:70]!r} must be 1-64 characters")
        if isinstance(v, str) and len(v) > 512:
            problems.append(f"{where}.{k}: value longer than 512 characters")
    if problems:
        raise _bad("; ".join(problems), error_code="invalid_metadata")


def _patch_metadata(stored: dict, patch: dict | None) -> dict:
    out = dict(stored)
    for k, v in (patch or {}).items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def _check_budget(budget: Any) -> None:
    if budget is None:
        return
    amount = budget.get("max_list_cost", {}).get("amount", "")
    if not AMOUNT_RE.match(amount):
        raise _bad(
            "budget.max_list_cost.amount: must be a positive integer decimal string of minor units "
            f"without leading zeros (e.g. \"500\" for $5.00), got {amount!r}"
        )


# --------------------------------------------------------------------------------------
# Scripts
# --------------------------------------------------------------------------------------

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


# ---- step builders ---------------------------------------------------------------------


def status_running() -> Step:
    """Explicit ``session.status_running`` (the runner already emits one at each turn start and
    after tool results; use this after ``status_rescheduled()``)."""

    async def step(ctx: ScriptContext) -> None:
        await ctx.set_running()

    return step


def status_rescheduled() -> Step:
    async def step(ctx: ScriptContext) -> None:
        ctx.session.set_status("rescheduling", ctx.sim.clock.now())
        await ctx.emit("session.status_rescheduled")

    return step


def pause(seconds: float) -> Step:
    async def step(ctx: ScriptContext) -> None:
        await asyncio.sleep(seconds)

    return step


def agent_message(text: str, *, thread: str | None = None) -> Step:
    async def step(ctx: ScriptContext) -> None:
        await ctx.emit("agent.message", thread=thread, content=_text_content(text))

    return step


def agent_thinking(*, thread: str | None = None) -> Step:
    async def step(ctx: ScriptContext) -> None:
        await ctx.emit("agent.thinking", thread=thread)

    return step


def model_request(
    input_tokens: int = 1200,
    output_tokens: int = 300,
    *,
    cache_read_input_tokens: int = 0,
    cache_creation_input_tokens: int = 0,
    thread: str | None = None,
    is_error: bool = False,
    cost_cents: float | str | None = None,
    usage_event: bool = False,
) -> Step:
    """``span.model_request_start`` + ``span.model_request_end`` (with ``model_usage``).

    Usage (and list cost, from ``sim.pricing`` or ``cost_cents``) accumulates on the session
    and the thread. With ``usage_event`` a ``session.usage`` snapshot follows. If the session's
    budget is reached, the turn stops with ``budget_reached``.
    """

    async def step(ctx: ScriptContext) -> None:
        start = await ctx.emit("span.model_request_start", thread=thread)
        usage = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": cache_read_input_tokens,
            "cache_creation_input_tokens": cache_creation_input_tokens,
            "speed": "standard",
        }
        tid = ctx.thread_id(thread)
        ctx.session.add_usage(usage, thread_id=tid, cost_cents=None if cost_cents is None else Decimal(str(cost_cents)))
        await ctx.emit(
            "span.model_request_end",
            thread=thread,
            model_request_start_id=start["id"],
            is_error=is_error,
            model_usage=usage,
        )
        if usage_event:
            await ctx.emit("session.usage", usage=ctx.session.usage_snapshot(), **({"budget": ctx.session.budget} if ctx.session.budget else {}))
        await ctx.check_budget()

    return step


def usage_snapshot() -> Step:
    """A ``session.usage`` event with the cumulative usage (and the budget, if any)."""

    async def step(ctx: ScriptContext) -> None:
        extra = {"budget": ctx.session.budget} if ctx.session.budget else {}
        await ctx.emit("session.usage", usage=ctx.session.usage_snapshot(), **extra)

    return step


def tool_use(
    name: str = "bash",
    input: dict | None = None,
    *,
    result: str = "",
    is_error: bool = False,
    thread: str | None = None,
    permission: str = "allow",
) -> Step:
    """A built-in tool call: ``agent.tool_use`` then ``agent.tool_result``.

    ``permission="ask"`` models ``always_ask``: the session idles with requires_action until a
    ``user.tool_confirmation`` arrives; on deny the tool result is an error with the deny message.
    """
    if name not in BUILTIN_TOOLS:
        raise ValueError(f"unknown built-in tool {name!r}")

    async def step(ctx: ScriptContext) -> None:
        inp = input if input is not None else ({"command": "ls"} if name == "bash" else {})
        evaluation = {"type": "always_ask"} if permission == "ask" else {"type": "always_allow"}
        pending_kind = "confirm" if permission == "ask" else None
        if ctx.sim.step_delay:
            await asyncio.sleep(ctx.sim.step_delay)
        ev = ctx.sim._emit(
            ctx.session,
            "agent.tool_use",
            thread_id=ctx.thread_id(thread),
            fields={"name": name, "input": inp, "evaluated_permission": permission, "evaluation": evaluation},
            pending_kind=pending_kind,
        )
        res_text, err = result, is_error
        if permission == "ask":
            (confirmation,) = await ctx.wait_for_results([ev["id"]])
            if confirmation.event.get("result") == "deny":
                res_text, err = confirmation.event.get("deny_message") or "Denied by the user.", True
        await ctx.emit("agent.tool_result", thread=thread, tool_use_id=ev["id"], content=_text_content(res_text), is_error=err)

    return step


def custom_tool_uses(calls: Sequence[tuple[str, dict] | dict], *, thread: str | None = None) -> Step:
    """Several ``agent.custom_tool_use`` events, then idle (requires_action) until all are answered."""

    async def step(ctx: ScriptContext) -> None:
        ids = []
        tid = ctx.thread_id(thread)
        for call in calls:
            name, inp = (call["name"], call["input"]) if isinstance(call, dict) else call
            ctx.sim._check_custom_tool_defined(ctx.session, name, tid)
            if ctx.sim.step_delay:
                await asyncio.sleep(ctx.sim.step_delay)
            ev = ctx.sim._emit(
                ctx.session, "agent.custom_tool_use", thread_id=tid, fields={"name": name, "input": inp}, pending_kind="custom"
            )
            ids.append(ev["id"])
        await ctx.wait_for_results(ids)

    return step


def custom_tool_use(name: str, input: dict, *, thread: str | None = None) -> Step:
    """One ``agent.custom_tool_use``; the session idles (requires_action) until the client answers."""
    return custom_tool_uses([(name, input)], thread=thread)


def if_tool_error(then: Sequence[Step], otherwise: Sequence[Step] = ()) -> Step:
    """Branch on the last custom tool result's ``is_error``."""

    async def step(ctx: ScriptContext) -> None:
        r = ctx.last_tool_result
        for st in then if (r is not None and r.is_error) else otherwise:
            await st(ctx)

    return step


def on_tool_result(fn: Callable[[ToolResult | None], Sequence[Step] | None]) -> Step:
    """Run the steps ``fn(last_tool_result)`` returns."""

    async def step(ctx: ScriptContext) -> None:
        for st in fn(ctx.last_tool_result) or ():
            await st(ctx)

    return step


def thread_created(agent_name: str, *, key: str | None = None) -> Step:
    """``session.thread_created`` + ``session.thread_status_running`` for a sub-agent.

    The thread's agent is the roster entry with that name (from the session agent's
    multiagent config) or else an inline agent. Refer to it later by ``key`` (default: the name).
    """

    async def step(ctx: ScriptContext) -> None:
        s = ctx.session
        tid = s.create_thread(agent_name, ctx.sim.clock.iso())
        s.thread_keys[key or agent_name] = tid
        await ctx.emit("session.thread_created", session_thread_id=tid, agent_name=agent_name)
        s.threads[tid]["status"] = "running"
        await ctx.emit("session.thread_status_running", thread=tid, agent_name=agent_name)

    return step


def _thread_agent_name(ctx: ScriptContext, tid: str) -> str:
    return ctx.session.thread_agent_name(tid)


def thread_running(thread: str) -> Step:
    async def step(ctx: ScriptContext) -> None:
        tid = ctx.thread_id(thread)
        ctx.session.threads[tid]["status"] = "running"
        await ctx.emit("session.thread_status_running", thread=tid, agent_name=_thread_agent_name(ctx, tid))

    return step


def thread_idle(thread: str, stop_reason: str | dict = "end_turn") -> Step:
    async def step(ctx: ScriptContext) -> None:
        tid = ctx.thread_id(thread)
        ctx.session.threads[tid]["status"] = "idle"
        sr = {"type": stop_reason} if isinstance(stop_reason, str) else stop_reason
        await ctx.emit("session.thread_status_idle", thread=tid, agent_name=_thread_agent_name(ctx, tid), stop_reason=sr)

    return step


def thread_terminated(thread: str) -> Step:
    async def step(ctx: ScriptContext) -> None:
        tid = ctx.thread_id(thread)
        ctx.session.threads[tid]["status"] = "terminated"
        await ctx.emit("session.thread_status_terminated", thread=tid, agent_name=_thread_agent_name(ctx, tid))

    return step


def thread_message(to: str, text: str) -> Step:
    """Coordinator -> sub-agent: ``agent.thread_message_sent`` (primary) + ``..._received`` (thread)."""

    async def step(ctx: ScriptContext) -> None:
        s = ctx.session
        tid = ctx.thread_id(to)
        await ctx.emit(
            "agent.thread_message_sent", to_session_thread_id=tid, to_agent_name=s.thread_agent_name(tid), content=_text_content(text)
        )
        await ctx.emit(
            "agent.thread_message_received",
            thread=tid,
            delay=False,
            from_session_thread_id=s.primary_thread_id,
            from_agent_name=s.agent["name"],
            content=_text_content(text),
        )

    return step


def thread_reply(from_: str, text: str) -> Step:
    """Sub-agent -> coordinator: ``agent.thread_message_sent`` (thread) + ``..._received`` (primary)."""

    async def step(ctx: ScriptContext) -> None:
        s = ctx.session
        tid = ctx.thread_id(from_)
        await ctx.emit(
            "agent.thread_message_sent",
            thread=tid,
            to_session_thread_id=s.primary_thread_id,
            to_agent_name=s.agent["name"],
            content=_text_content(text),
        )
        await ctx.emit(
            "agent.thread_message_received",
            delay=False,
            from_session_thread_id=tid,
            from_agent_name=s.thread_agent_name(tid),
            content=_text_content(text),
        )

    return step


_ERROR_DEFAULT_MESSAGES = {
    "repository_clone_error": "Failed to clone the repository.",
    "model_overloaded_error": "The model is overloaded.",
    "model_rate_limited_error": "The model is rate limited.",
    "model_request_failed_error": "The model request failed.",
}


def session_error(
    error_type: str = "unknown_error",
    message: str | None = None,
    *,
    retry_status: str = "retrying",
    thread: str | None = None,
    **extra: Any,
) -> Step:
    """A ``session.error``. Repository errors get ``repository_url`` (default: the first mounted
    repository); MCP errors ``mcp_server_name``; credential errors ``vault_id``/``credential_id``.
    Status is not changed: follow with ``status_rescheduled()``, ``stop_retries_exhausted()``
    or ``terminate()`` as the real server would."""

    async def step(ctx: ScriptContext) -> None:
        err: dict[str, Any] = {
            "type": error_type,
            "message": message or _ERROR_DEFAULT_MESSAGES.get(error_type, f"{error_type} occurred"),
            "retry_status": {"type": retry_status},
            **extra,
        }
        if error_type.startswith("repository_") and "repository_url" not in err:
            repos = [r["url"] for r in ctx.session.resources if r["type"] == "github_repository"]
            err["repository_url"] = repos[0] if repos else "https://github.com/example/repo"
        if error_type.startswith("mcp_"):
            err.setdefault("mcp_server_name", "mcp")
        if error_type == "credential_host_unreachable_error":
            err.setdefault("vault_id", "vlt_sim")
            err.setdefault("credential_id", "vcrd_sim")
        await ctx.emit("session.error", thread=thread, error=err)

    return step


def stop(stop_reason: str | dict, stop_details: dict | None = None) -> Step:
    """End the turn: ``session.status_idle`` with the given stop_reason."""

    async def step(ctx: ScriptContext) -> None:
        sr = {"type": stop_reason} if isinstance(stop_reason, str) else stop_reason
        await ctx.stop(sr, stop_details)

    return step


def stop_end_turn() -> Step:
    return stop("end_turn")


def stop_retries_exhausted() -> Step:
    return stop("retries_exhausted")


def stop_budget_reached() -> Step:
    return stop("budget_reached")


def stop_refusal(category: str | None = "cyber", explanation: str | None = None) -> Step:
    details: dict[str, Any] = {"type": "refusal"}
    if category is not None:
        details["category"] = category
    if explanation is not None:
        details["explanation"] = explanation
    return stop("refusal", details)


def terminate() -> Step:
    """``session.status_terminated``: the session is over (further sends are rejected)."""

    async def step(ctx: ScriptContext) -> None:
        s = ctx.session
        if ctx.sim.step_delay:
            await asyncio.sleep(ctx.sim.step_delay)
        s.set_status("terminated", ctx.sim.clock.now())
        for t in s.threads.values():
            t["status"] = "terminated"
        ctx.sim._emit(s, "session.status_terminated", thread_id=None, fields={})
        ctx.ended = True
        raise _TurnEnded()

    return step


def drop_stream(mode: str = "abort") -> Step:
    """Cut every open stream of this session right now (the script keeps going).

    ``mode="abort"`` closes the TCP connection mid-body (the SDK raises while iterating);
    ``mode="eof"`` ends the response cleanly (the SDK's iterator just stops)."""
    sentinel = _DROP_ABORT if mode == "abort" else _DROP_EOF

    async def step(ctx: ScriptContext) -> None:
        for sub in list(ctx.session.subscribers):
            sub.queue.put_nowait(sentinel)
        ctx.session.stream_drops += 1

    return step


# --------------------------------------------------------------------------------------
# session state
# --------------------------------------------------------------------------------------


class SimSession:
    def __init__(self, sim: "ManagedAgentsSimulator", record: dict, agent_snapshot: dict, script: Script) -> None:
        self.sim = sim
        self.id: str = record["id"]
        self.agent: dict = agent_snapshot
        self.environment_id: str = record["environment_id"]
        self.metadata: dict = record["metadata"]
        self.title: str | None = record.get("title")
        self.vault_ids: list[str] = record["vault_ids"]
        self.budget: dict | None = record.get("budget")
        self.resources: list[dict] = record["resources"]
        self.resource_tokens: dict[str, str | None] = {}
        self.created_at: str = record["created_at"]
        self.updated_at: str = record["created_at"]
        self.archived_at: str | None = None
        self.status = "idle"
        self.script = script
        self.turn_index = 0
        self.events: list[dict] = []
        self.thread_logs: dict[str, list[dict]] = {}
        self.threads: dict[str, dict] = {}
        self.thread_keys: dict[str, str] = {}
        self.thread_usage: dict[str, dict] = {}
        self.subscribers: list[_Subscriber] = []
        self.pending: dict[str, _Pending] = {}
        self.tool_results: list[ToolResult] = []
        self.confirmations: list[ToolResult] = []
        self.interrupts: list[dict] = []
        self.user_messages: list[dict] = []
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.runner: asyncio.Task | None = None
        self.turn_task: asyncio.Task | None = None
        self.stream_drops = 0
        self.budget_stopped = False
        self._last_requires_action: list[str] | None = None
        self._running_since: float | None = None
        self._active = 0.0
        self._created_mono = time.monotonic()
        self.usage = {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
        self._cost_dollars = Decimal(0)
        self.primary_thread_id = new_id("sthr")
        self.threads[self.primary_thread_id] = self._thread_record(
            self.primary_thread_id, _thread_agent(agent_snapshot), None, self.created_at
        )
        self.thread_logs[self.primary_thread_id] = []

    # -- threads -------------------------------------------------------------------
    def _thread_record(self, tid: str, agent: dict, parent: str | None, now: str) -> dict:
        self.thread_usage[tid] = {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0, "cost": Decimal(0)}
        return {
            "id": tid,
            "type": "session_thread",
            "session_id": self.id,
            "parent_thread_id": parent,
            "agent": agent,
            "status": "idle",
            "created_at": now,
            "updated_at": now,
            "archived_at": None,
        }

    def create_thread(self, agent_name: str, now: str) -> str:
        tid = new_id("sthr")
        agent = None
        for cand in _roster_snapshots(self.agent):
            if cand.get("name") == agent_name:
                agent = dict(cand)
                break
        if agent is None:
            agent = {
                "type": "inline",
                "name": agent_name,
                "description": None,
                "system": None,
                "model": self.agent["model"],
                "tools": [],
                "mcp_servers": [],
                "skills": [],
                "execution_identity": {"type": "service_account"},
            }
        self.threads[tid] = self._thread_record(tid, agent, self.primary_thread_id, now)
        self.thread_logs[tid] = []
        return tid

    def thread_agent_name(self, tid: str) -> str:
        agent = self.threads[tid]["agent"]
        return agent.get("name") or agent.get("type", "agent")

    # -- status / usage ------------------------------------------------------------
    def set_status(self, status: str, now: datetime) -> None:
        mono = time.monotonic()
        if self.status == "running" and status != "running" and self._running_since is not None:
            self._active += mono - self._running_since
            self._running_since = None
        if status == "running" and self._running_since is None:
            self._running_since = mono
        self.status = status
        self.updated_at = _iso(now)
        primary = self.threads[self.primary_thread_id]
        primary["status"] = status if status != "rescheduling" else "rescheduling"
        primary["updated_at"] = self.updated_at

    def active_seconds(self) -> float:
        extra = time.monotonic() - self._running_since if self._running_since is not None else 0.0
        return round(self._active + extra, 6)

    def add_usage(self, usage: dict, *, thread_id: str | None, cost_cents: Decimal | None) -> None:
        model = (self.threads[thread_id or self.primary_thread_id]["agent"].get("model") or {}).get("id", "")
        if cost_cents is None:
            inp, out = self.sim.price_for(model)
            dollars = (
                Decimal(usage["input_tokens"]) * inp
                + Decimal(usage["output_tokens"]) * out
                + Decimal(usage["cache_read_input_tokens"]) * inp * Decimal("0.1")
                + Decimal(usage["cache_creation_input_tokens"]) * inp * Decimal("1.25")
            ) / Decimal(1_000_000)
        else:
            dollars = cost_cents / 100
        for bag in (self.usage, self.thread_usage[thread_id or self.primary_thread_id]):
            for k in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
                bag[k] += usage[k]
        self._cost_dollars += dollars
        self.thread_usage[thread_id or self.primary_thread_id]["cost"] += dollars

    def cost_cents(self) -> Decimal:
        return (self._cost_dollars * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)

    def _usage_obj(self, bag: dict, cost_dollars: Decimal, active: float) -> dict:
        return {
            "input_tokens": bag["input_tokens"],
            "output_tokens": bag["output_tokens"],
            "cache_read_input_tokens": bag["cache_read_input_tokens"],
            "cache_creation": {"ephemeral_5m_input_tokens": bag["cache_creation_input_tokens"], "ephemeral_1h_input_tokens": 0},
            "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
            "list_cost": {"amount": str(int((cost_dollars * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))), "currency": "USD"},
            "active_seconds": active,
        }

    def usage_snapshot(self) -> dict:
        return self._usage_obj(self.usage, self._cost_dollars, self.active_seconds())

    # -- rendering -----------------------------------------------------------------
    def render(self) -> dict:
        return {
            "id": self.id,
            "type": "session",
            "status": self.status,
            "title": self.title,
            "metadata": dict(self.metadata),
            "environment_id": self.environment_id,
            "vault_ids": list(self.vault_ids),
            "deployment_id": None,
            "agent": self.agent,
            "resources": [_public_resource(r) for r in self.resources],
            "budget": self.budget,
            "outcome_evaluations": [],
            "stats": {"active_seconds": self.active_seconds(), "duration_seconds": round(time.monotonic() - self._created_mono, 6)},
            "usage": self.usage_snapshot(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "archived_at": self.archived_at,
        }

    def render_thread(self, tid: str) -> dict:
        t = dict(self.threads[tid])
        bag = self.thread_usage[tid]
        t["usage"] = self._usage_obj(bag, bag["cost"], 0.0)
        t["stats"] = {"active_seconds": None, "duration_seconds": None, "startup_seconds": None}
        return t

    # -- script progression --------------------------------------------------------
    def next_turn(self) -> list[Step]:
        if self.turn_index < len(self.script.turns):
            turn = self.script.turns[self.turn_index]
        else:
            turn = [model_request(400, 60), agent_message("Noted."), stop_end_turn()]
        self.turn_index += 1
        return turn

    @property
    def last_event(self) -> dict | None:
        return self.events[-1] if self.events else None

    def events_of(self, type_: str) -> list[dict]:
        return [e for e in self.events if e["type"] == type_]


def _public_resource(r: dict) -> dict:
    return {k: v for k, v in r.items() if not k.startswith("_")}


def _thread_agent(snapshot: dict) -> dict:
    """A SessionThreadAgent: the session agent snapshot without multiagent."""
    return {k: v for k, v in snapshot.items() if k != "multiagent"}


def _roster_snapshots(agent: dict) -> list[dict]:
    ma = agent.get("multiagent")
    if not ma:
        return []
    if ma["type"] == "coordinator":
        return [a for a in ma["agents"] if a.get("type") == "agent"]
    out = []
    for part in ("subagents", "workflows"):
        sec = ma.get(part) or {}
        if sec.get("type") == "enabled":
            out += sec.get("predefined_agents") or []
    return out


# --------------------------------------------------------------------------------------
# the simulator
# --------------------------------------------------------------------------------------


@dataclass
class _Fault:
    method: str
    path: str
    status: int
    times: int
    retry_after: float | None


@dataclass
class _DropRule:
    after_events: int
    times: int
    mode: str


class ManagedAgentsSimulator:
    def __init__(self, *, step_delay: float = 0.005, ping_interval: float = 0.5) -> None:
        self.step_delay = step_delay
        self.ping_interval = ping_interval
        self.clock = _Clock()
        self.pricing: dict[str, tuple[float, float]] = dict(DEFAULT_PRICING)
        self.flatten_threads = False

        self.agents: dict[str, dict] = {}  # id -> {"versions": [...], "archived_at": ...}
        self.environments: dict[str, dict] = {}
        self.sessions: dict[str, SimSession] = {}
        self.deleted_sessions: set[str] = set()

        self.calls: list[Call] = []
        self.requests: list[RequestRecord] = []
        self.violations: list[str] = []
        self.expect_violations = False
        self.interrupts: list[tuple[str, dict]] = []
        self.conflicts: list[str] = []

        self.default_script: ScriptLike | None = None
        self.scripts: dict[str, ScriptLike] = {}
        self._script_for: Callable[[dict], ScriptLike | None] | None = None
        self._script_queue: list[ScriptLike] = []

        self._faults: list[_Fault] = []
        self._drop_rules: list[_DropRule] = []
        self._tasks: set[asyncio.Task] = set()
        self._closed = False

    # -- configuration -------------------------------------------------------------
    def script_for(self, fn: Callable[[dict], ScriptLike | None]) -> Callable[[dict], ScriptLike | None]:
        """Register ``fn(create_body) -> Script | None`` to choose a script per new session (usable as a decorator)."""
        self._script_for = fn
        return fn

    def queue_script(self, *scripts: ScriptLike) -> None:
        """The next sessions created take these scripts, in order."""
        self._script_queue.extend(scripts)

    def fail_next_session_creates(self, n: int = 1, *, status: int = 529, retry_after: float | None = 0.01) -> None:
        """Answer the next ``n`` ``POST /v1/sessions`` with 529 overloaded_error or 429 rate_limit_error.

        ``retry_after`` (seconds) is sent as ``retry-after-ms`` and ``retry-after`` (rounded up);
        pass ``None`` to send no retry hint."""
        self.fail_next("POST", "/v1/sessions", n, status=status, retry_after=retry_after)

    def fail_next(self, method: str, path: str, n: int = 1, *, status: int = 529, retry_after: float | None = 0.01) -> None:
        """Generic fault: the next ``n`` requests to exactly ``method path`` fail with ``status``."""
        self._faults.append(_Fault(method.upper(), path, status, n, retry_after))

    def drop_streams_after(self, n_events: int, *, times: int = 1, mode: str = "abort") -> None:
        """The next ``times`` stream connections are cut after delivering ``n_events`` events."""
        self._drop_rules.append(_DropRule(n_events, times, mode))

    def price_for(self, model: str) -> tuple[Decimal, Decimal]:
        for family, (i, o) in self.pricing.items():
            if family in model:
                return Decimal(str(i)), Decimal(str(o))
        return Decimal(3), Decimal(15)

    # -- inspection helpers --------------------------------------------------------
    def write_calls(self, since: int = 0) -> list[Call]:
        return [c for c in self.calls[since:] if c.method not in ("GET", "HEAD", "OPTIONS")]

    def mark(self) -> int:
        """``n = sim.mark(); ...; sim.write_calls(since=n)``."""
        return len(self.calls)

    def session(self, session_id: str | None = None) -> SimSession:
        """A session by id, or the only/last created one."""
        if session_id is None:
            if not self.sessions:
                raise KeyError("no session created yet")
            return list(self.sessions.values())[-1]
        return self.sessions[session_id]

    def agent(self, agent_id: str) -> dict:
        return self._render_agent(agent_id)

    def agent_by_name(self, name: str) -> dict | None:
        for aid, a in self.agents.items():
            if a["versions"][-1]["name"] == name:
                return self._render_agent(aid)
        return None

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 3.0, interval: float = 0.002) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not reached in time")
            await asyncio.sleep(interval)

    async def wait_for_event(self, session_id: str, type_: str, *, timeout: float = 3.0, **match: Any) -> dict:
        """Wait until the session log has an event of ``type_`` whose fields match ``match``."""
        s = self.sessions[session_id]

        def find() -> dict | None:
            for e in s.events:
                if e["type"] == type_ and all(_match(e.get(k), v) for k, v in match.items()):
                    return e
            return None

        await self.wait_until(lambda: find() is not None, timeout)
        return find()  # type: ignore[return-value]

    async def wait_idle(self, session_id: str, stop_reason: str | None = None, *, timeout: float = 3.0) -> dict:
        """Wait until the session is idle (or terminated); optionally with the given stop_reason type."""
        s = self.sessions[session_id]

        def ok() -> bool:
            if s.status == "terminated":
                return stop_reason is None
            if s.status != "idle" or not s.events:
                return False
            last_idle = next((e for e in reversed(s.events) if e["type"] == "session.status_idle"), None)
            if last_idle is None:
                return False
            return stop_reason is None or last_idle["stop_reason"]["type"] == stop_reason

        await self.wait_until(ok, timeout)
        return next(e for e in reversed(s.events) if e["type"] in ("session.status_idle", "session.status_terminated"))

    def violate(self, message: str) -> None:
        self.violations.append(message)

    async def shutdown(self) -> None:
        self._closed = True
        for s in self.sessions.values():
            for sub in list(s.subscribers):
                sub.queue.put_nowait(_CLOSE)
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- app -----------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=32 * 1024 * 1024)
        r = app.router
        r.add_post("/v1/agents", self._create_agent)
        r.add_get("/v1/agents", self._list_agents)
        r.add_get("/v1/agents/{agent_id}", self._get_agent)
        r.add_post("/v1/agents/{agent_id}", self._update_agent)
        r.add_post("/v1/agents/{agent_id}/archive", self._archive_agent)
        r.add_get("/v1/agents/{agent_id}/versions", self._list_agent_versions)
        r.add_post("/v1/environments", self._create_env)
        r.add_get("/v1/environments", self._list_envs)
        r.add_get("/v1/environments/{env_id}", self._get_env)
        r.add_post("/v1/environments/{env_id}", self._update_env)
        r.add_delete("/v1/environments/{env_id}", self._delete_env)
        r.add_post("/v1/environments/{env_id}/archive", self._archive_env)
        r.add_post("/v1/sessions", self._create_session)
        r.add_get("/v1/sessions", self._list_sessions)
        r.add_get("/v1/sessions/{sid}", self._get_session)
        r.add_post("/v1/sessions/{sid}", self._update_session)
        r.add_delete("/v1/sessions/{sid}", self._delete_session)
        r.add_post("/v1/sessions/{sid}/archive", self._archive_session)
        r.add_get("/v1/sessions/{sid}/resources", self._list_resources)
        r.add_post("/v1/sessions/{sid}/resources", self._add_resource)
        r.add_get("/v1/sessions/{sid}/resources/{rid}", self._get_resource)
        r.add_post("/v1/sessions/{sid}/resources/{rid}", self._update_resource)
        r.add_delete("/v1/sessions/{sid}/resources/{rid}", self._delete_resource)
        r.add_post("/v1/sessions/{sid}/events", self._send_events)
        r.add_get("/v1/sessions/{sid}/events", self._list_events)
        r.add_get("/v1/sessions/{sid}/events/stream", self._stream_session)
        r.add_get("/v1/sessions/{sid}/threads", self._list_threads)
        r.add_get("/v1/sessions/{sid}/threads/{tid}", self._get_thread)
        r.add_post("/v1/sessions/{sid}/threads/{tid}/archive", self._archive_thread)
        r.add_get("/v1/sessions/{sid}/threads/{tid}/events", self._list_thread_events)
        r.add_get("/v1/sessions/{sid}/threads/{tid}/stream", self._stream_thread)
        app.on_shutdown.append(lambda _app: self.shutdown())
        return app

    # -- middleware ----------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        raw = await request.read() if request.body_exists else b""
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        query = {k: request.query.getall(k) for k in request.query.keys()}
        rec = RequestRecord(request.method, request.path, query, dict(request.headers), body)
        self.requests.append(rec)
        self.calls.append(Call(request.method, request.path, body))
        request[_JSON] = body
        request[_REC] = rec
        try:
            self._check_headers(request)
            if bad_json:
                raise _bad("request body is not valid JSON")
            fault = self._take_fault(request)
            if fault is not None:
                raise fault
            resp = await handler(request)
        except ApiError as e:
            if e.violation:
                self.violate(f"{request.method} {request.path}: {e.status} {e.type}: {e.message}")
            resp = self._error_response(e)
        except web.HTTPNotFound:
            self.violate(f"{request.method} {request.path}: no such route in the Managed Agents API")
            resp = self._error_response(ApiError(404, "not_found_error", f"Not found: {request.method} {request.path}"))
        except web.HTTPMethodNotAllowed:
            self.violate(f"{request.method} {request.path}: method not allowed")
            resp = self._error_response(ApiError(405, "invalid_request_error", f"Method not allowed: {request.method} {request.path}"))
        except SimulatorBug as e:
            self.violate(f"SIMULATOR BUG on {request.method} {request.path}: {e}")
            resp = self._error_response(ApiError(500, "api_error", str(e), violation=False))
        rec.status = resp.status
        return resp

    def _check_headers(self, request: web.Request) -> None:
        h = request.headers
        key = h.get("x-api-key")
        auth = h.get("authorization", "")
        if not key and not (auth.lower().startswith("bearer ") and auth[7:].strip()):
            raise ApiError(401, "authentication_error", "x-api-key header is required")
        betas = [b.strip() for b in h.get("anthropic-beta", "").split(",") if b.strip()]
        if BETA not in betas:
            raise _bad(f"this endpoint is in beta: send `anthropic-beta: {BETA}` (got {h.get('anthropic-beta')!r})")
        if not h.get("anthropic-version"):
            raise _bad("anthropic-version header is required")

    def _take_fault(self, request: web.Request) -> ApiError | None:
        for f in self._faults:
            if f.times > 0 and f.method == request.method and f.path == request.path:
                f.times -= 1
                headers = {}
                if f.retry_after is not None:
                    headers["retry-after-ms"] = str(int(round(f.retry_after * 1000)))
                    headers["retry-after"] = str(max(1, int(-(-f.retry_after // 1))))
                if f.status == 429:
                    return ApiError(429, "rate_limit_error", "Number of concurrent sessions exceeds your rate limit.", violation=False, headers=headers)
                if f.status == 529:
                    return ApiError(529, "overloaded_error", "Overloaded", violation=False, headers=headers)
                return ApiError(f.status, "api_error", "Internal server error", violation=False, headers=headers)
        return None

    def _error_response(self, e: ApiError) -> web.Response:
        err: dict[str, Any] = {"type": e.type, "message": e.message}
        if e.error_code:
            err["details"] = {"error_code": e.error_code}
        rid = new_id("req")
        return web.json_response(
            {"type": "error", "error": err, "request_id": rid},
            status=e.status,
            headers={"request-id": rid, **e.headers},
        )

    def _json(self, data: Any, tp: Any = None, status: int = 200) -> web.Response:
        if tp is not None:
            check_response(tp, data)
        return web.json_response(data, status=status, headers={"request-id": new_id("req")})

    def _page(self, items: list[dict], item_type: Any, next_page: str | None, *, prev_page: Any = ...) -> web.Response:
        for it in items:
            check_response(item_type, it)
        data: dict[str, Any] = {"data": items, "next_page": next_page}
        if prev_page is not ...:
            data["prev_page"] = prev_page
        return self._json(data)

    # -- query helpers -------------------------------------------------------------
    def _query(self, request: web.Request, allowed: Iterable[str]) -> dict[str, list[str]]:
        allowed = set(allowed) | {"beta"}
        q = request[_REC].query
        unknown = [k for k in q if k not in allowed]
        if unknown:
            raise _bad(f"unknown query parameter(s): {', '.join(unknown)}")
        return q

    @staticmethod
    def _one(q: dict[str, list[str]], key: str) -> str | None:
        v = q.get(key)
        return v[-1] if v else None

    def _limit(self, q: dict, default: int, maximum: int) -> int:
        raw = self._one(q, "limit")
        if raw is None:
            return default
        try:
            n = int(raw)
        except ValueError:
            raise _bad(f"limit: must be an integer, got {raw!r}")
        if n < 1 or n > maximum:
            raise _bad(f"limit: must be between 1 and {maximum}, got {n}")
        return n

    def _bool(self, q: dict, key: str) -> bool:
        raw = self._one(q, key)
        if raw is None:
            return False
        if raw not in ("true", "false"):
            raise _bad(f"{key}: must be true or false, got {raw!r}")
        return raw == "true"

    @staticmethod
    def _encode_cursor(pos: int) -> str:
        return "page_" + base64.urlsafe_b64encode(json.dumps({"p": pos}).encode()).decode().rstrip("=")

    def _decode_cursor(self, q: dict) -> int | None:
        raw = self._one(q, "page")
        if raw is None:
            return None
        try:
            if not raw.startswith("page_"):
                raise ValueError
            pad = "=" * (-len(raw[5:]) % 4)
            return int(json.loads(base64.urlsafe_b64decode(raw[5:] + pad))["p"])
        except Exception:
            raise _bad(f"page: invalid cursor {raw!r}")

    def _time_filters(self, q: dict, prefix: str = "created_at") -> list[Callable[[datetime], bool]]:
        out = []
        ops = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}
        for op, fn in ops.items():
            raw = self._one(q, f"{prefix}[{op}]")
            if raw is None:
                continue
            try:
                bound = _parse_dt(raw)
            except ValueError:
                raise _bad(f"{prefix}[{op}]: not an RFC 3339 timestamp: {raw!r}")
            out.append(lambda t, fn=fn, bound=bound: fn(t, bound))
        return out

    def _paginate_offset(self, q: dict, items: list[dict], item_type: Any, *, default: int, maximum: int, bidirectional: bool = False) -> web.Response:
        limit = self._limit(q, default, maximum)
        start = self._decode_cursor(q) or 0
        chunk = items[start : start + limit]
        nxt = self._encode_cursor(start + limit) if start + limit < len(items) else None
        if bidirectional:
            prev = self._encode_cursor(max(0, start - limit)) if start > 0 else None
            return self._page(chunk, item_type, nxt, prev_page=prev)
        return self._page(chunk, item_type, nxt)

    # ==============================================================================
    # agents
    # ==============================================================================
    def _get_agent_rec(self, agent_id: str) -> dict:
        a = self.agents.get(agent_id)
        if a is None:
            raise _not_found("agent", agent_id)
        return a

    def _render_agent(self, agent_id: str, version: int | None = None) -> dict:
        a = self._get_agent_rec(agent_id)
        if version is None:
            snap = a["versions"][-1]
        else:
            if version < 1 or version > len(a["versions"]):
                raise _not_found(f"agent {agent_id} version", str(version))
            snap = a["versions"][version - 1]
        out = dict(snap)
        out["archived_at"] = a["archived_at"]
        return out

    def _normalize_model(self, model: Any, prev: dict | None) -> dict:
        if isinstance(model, str):
            cfg: dict[str, Any] = {"id": model}
        else:
            cfg = {"id": model["id"]}
            if model.get("speed") is not None:
                cfg["speed"] = model["speed"]
            if model.get("inference_geo") is not None:
                cfg["inference_geo"] = model["inference_geo"]
            if model.get("effort") is not None:
                eff = model["effort"]
                cfg["effort"] = {"type": eff} if isinstance(eff, str) else {"type": eff["type"]}
        if "effort" not in cfg:
            cfg["effort"] = (prev or {}).get("effort") or {"type": "high"}
        if not cfg["id"]:
            raise _bad("model: id must not be empty")
        return cfg

    @staticmethod
    def _policy(p: Any, default: dict) -> dict:
        return {"type": p["type"]} if p else dict(default)

    def _normalize_tools(self, tools: list[dict] | None, mcp_servers: list[dict]) -> list[dict]:
        tools = tools or []
        if len(tools) > 256:
            raise _bad("tools: at most 256 tools")
        out = []
        custom_names: set[str] = set()
        server_names = {s["name"] for s in mcp_servers}
        referenced: set[str] = set()
        toolsets = 0
        for i, t in enumerate(tools):
            kind = t["type"]
            if kind == "agent_toolset_20260401":
                toolsets += 1
                dc = t.get("default_config") or {}
                d_enabled = dc.get("enabled") if dc.get("enabled") is not None else True
                d_policy = self._policy(dc.get("permission_policy"), {"type": "always_allow"})
                given: dict[str, dict] = {}
                for c in t.get("configs") or []:
                    if c["name"] in given:
                        raise _bad(f"tools[{i}].configs: {c['name']!r} appears twice")
                    if c.get("type") is not None and c["type"] != c["name"]:
                        raise _bad(f"tools[{i}].configs: type {c['type']!r} does not match name {c['name']!r}")
                    if c.get("allowed_domains") and c.get("blocked_domains"):
                        raise _bad(f"tools[{i}].configs.{c['name']}: allowed_domains and blocked_domains are exclusive")
                    for k in ("allowed_domains", "blocked_domains"):
                        if c.get(k) is not None and len(c[k]) > 64:
                            raise _bad(f"tools[{i}].configs.{c['name']}.{k}: at most 64 domains")
                    given[c["name"]] = c
                configs = []
                for name in BUILTIN_TOOLS:
                    c = given.get(name, {})
                    cfg: dict[str, Any] = {
                        "name": name,
                        "type": name,
                        "enabled": c.get("enabled") if c.get("enabled") is not None else d_enabled,
                        "permission_policy": self._policy(c.get("permission_policy"), d_policy),
                    }
                    for k in ("allowed_domains", "blocked_domains", "max_content_tokens", "url_sources", "user_location"):
                        if c.get(k) is not None:
                            cfg[k] = c[k]
                    configs.append(cfg)
                out.append({"type": kind, "default_config": {"enabled": d_enabled, "permission_policy": d_policy}, "configs": configs})
            elif kind == "mcp_toolset":
                name = t["mcp_server_name"]
                if name not in server_names:
                    raise _bad(f"tools[{i}]: mcp_toolset references unknown MCP server {name!r}")
                referenced.add(name)
                dc = t.get("default_config") or {}
                d_enabled = dc.get("enabled") if dc.get("enabled") is not None else True
                d_policy = self._policy(dc.get("permission_policy"), {"type": "always_ask"})
                configs = [
                    {
                        "name": c["name"],
                        "enabled": c.get("enabled") if c.get("enabled") is not None else d_enabled,
                        "permission_policy": self._policy(c.get("permission_policy"), d_policy),
                    }
                    for c in t.get("configs") or []
                ]
                out.append({"type": kind, "mcp_server_name": name, "default_config": {"enabled": d_enabled, "permission_policy": d_policy}, "configs": configs})
            else:  # custom
                name = t["name"]
                if not CUSTOM_TOOL_NAME.match(name):
                    raise _bad(f"tools[{i}].name: {name!r} must be 1-128 characters of [A-Za-z0-9_-]")
                if name in custom_names:
                    raise _bad(f"tools[{i}].name: duplicate custom tool name {name!r}")
                if name in BUILTIN_TOOLS:
                    raise _bad(f"tools[{i}].name: {name!r} clashes with a built-in tool")
                custom_names.add(name)
                schema = dict(t["input_schema"])
                out.append({"type": "custom", "name": name, "description": t["description"], "input_schema": schema})
        if toolsets > 1:
            raise _bad("tools: agent_toolset_20260401 may appear at most once")
        unreferenced = server_names - referenced
        if unreferenced:
            raise _bad(f"mcp_servers: {sorted(unreferenced)} not referenced by any mcp_toolset in tools")
        return out

    def _normalize_mcp(self, servers: list[dict] | None) -> list[dict]:
        servers = servers or []
        if len(servers) > 20:
            raise _bad("mcp_servers: at most 20")
        names = [s["name"] for s in servers]
        if len(set(names)) != len(names):
            raise _bad("mcp_servers: names must be unique")
        return [{"type": "url", "name": s["name"], "url": s["url"]} for s in servers]

    def _resolve_roster_entry(self, entry: Any, *, self_id: str | None, self_version: int, where: str) -> dict:
        if isinstance(entry, str):
            entry = {"type": "agent", "id": entry}
        kind = entry.get("type")
        if kind == "self":
            return {"type": "agent", "id": self_id or "__self__", "version": self_version}
        if kind == "advisor":
            return {"type": "advisor", "model": entry["model"]}
        aid = entry["id"]
        a = self.agents.get(aid)
        if a is None:
            raise _bad(f"{where}: agent {aid!r} does not exist")
        if a["archived_at"]:
            raise _bad(f"{where}: agent {aid!r} is archived")
        version = entry.get("version") or len(a["versions"])
        if version < 1 or version > len(a["versions"]):
            raise _bad(f"{where}: agent {aid!r} has no version {version}")
        if a["versions"][version - 1].get("multiagent"):
            raise _bad(f"{where}: agent {aid!r} has multiagent set itself (depth limit 1)")
        return {"type": "agent", "id": aid, "version": version}

    def _normalize_multiagent(self, ma: Any, *, self_id: str | None, self_version: int, prev: dict | None) -> dict | None:
        if ma is None:
            return None
        if ma["type"] == "coordinator":
            entries = list(ma["agents"])
            if not 1 <= len(entries) <= 20:
                raise _bad("multiagent.agents: 1 to 20 entries")
            if sum(1 for e in entries if isinstance(e, dict) and e.get("type") == "self") > 1:
                raise _bad("multiagent.agents: {type: self} at most once")
            if sum(1 for e in entries if isinstance(e, dict) and e.get("type") == "advisor") > 1:
                raise _bad("multiagent.agents: at most one advisor")
            resolved = [self._resolve_roster_entry(e, self_id=self_id, self_version=self_version, where="multiagent.agents") for e in entries]
            ids = [r["id"] for r in resolved if r["type"] == "agent"]
            if len(set(ids)) != len(ids):
                raise _bad("multiagent.agents: each agent may appear only once")
            return {"type": "coordinator", "agents": resolved}
        # multiagent_20261001
        base = prev if prev and prev.get("type") == "multiagent_20261001" else None
        out: dict[str, Any] = {"type": "multiagent_20261001"}
        for part in ("subagents", "workflows"):
            sec = ma.get(part)
            stored = (base or {}).get(part)
            if sec is None:
                out[part] = stored or {"type": "enabled", "inline_agents": {"type": "enabled"}, "predefined_agents": []}
                continue
            if sec["type"] == "disabled":
                out[part] = {"type": "disabled"}
                continue
            inline = sec.get("inline_agents") or ((stored or {}).get("inline_agents") if stored and stored.get("type") == "enabled" else None) or {"type": "enabled"}
            if sec.get("predefined_agents") is not None:
                pre = list(sec["predefined_agents"])
                if len(pre) > 20:
                    raise _bad(f"multiagent.{part}.predefined_agents: at most 20")
                refs = [self._resolve_roster_entry(e, self_id=self_id, self_version=self_version, where=f"multiagent.{part}.predefined_agents") for e in pre]
            else:
                refs = list((stored or {}).get("predefined_agents") or []) if stored and stored.get("type") == "enabled" else []
            if inline["type"] == "disabled" and not refs:
                raise _bad(f"multiagent.{part}: inline_agents disabled needs at least one predefined agent")
            out[part] = {"type": "enabled", "inline_agents": {"type": inline["type"]}, "predefined_agents": refs}
        adv = ma.get("advisor")
        if adv is None:
            out["advisor"] = (base or {}).get("advisor") or {"type": "disabled"}
        else:
            out["advisor"] = {"type": "enabled", "model": adv["model"]} if adv["type"] == "enabled" else {"type": "disabled"}
        return out

    def _fix_self_refs(self, ma: dict | None, agent_id: str) -> dict | None:
        if not ma:
            return ma
        def fix(ref: dict) -> dict:
            if ref.get("id") == "__self__":
                return {**ref, "id": agent_id}
            return ref
        ma = json.loads(json.dumps(ma))
        if ma["type"] == "coordinator":
            ma["agents"] = [fix(r) for r in ma["agents"]]
        else:
            for part in ("subagents", "workflows"):
                if ma[part]["type"] == "enabled":
                    ma[part]["predefined_agents"] = [fix(r) for r in ma[part]["predefined_agents"]]
        return ma

    def _normalize_skills(self, skills: list[dict] | None) -> list[dict]:
        return [{"type": s["type"], "skill_id": s["skill_id"], "version": s.get("version") or "latest"} for s in skills or []]

    async def _create_agent(self, request: web.Request) -> web.Response:
        self._query(request, ())
        body = validate_params(agent_create_params.AgentCreateParams, request[_JSON])
        if not body["name"]:
            raise _bad("name: must not be empty")
        _check_metadata(body.get("metadata"))
        mcp = self._normalize_mcp(body.get("mcp_servers"))
        tools = self._normalize_tools(body.get("tools"), mcp)
        agent_id = new_id("agent")
        ma = self._fix_self_refs(self._normalize_multiagent(body.get("multiagent"), self_id=None, self_version=1, prev=None), agent_id)
        now = self.clock.iso()
        snap = {
            "id": agent_id,
            "type": "agent",
            "version": 1,
            "name": body["name"],
            "description": body.get("description"),
            "system": body.get("system"),
            "model": self._normalize_model(body["model"], None),
            "tools": tools,
            "mcp_servers": mcp,
            "skills": self._normalize_skills(body.get("skills")),
            "multiagent": ma,
            "metadata": dict(body.get("metadata") or {}),
            "execution_identity": body.get("execution_identity") or {"type": "service_account"},
            "created_at": now,
            "updated_at": now,
            "archived_at": None,
        }
        self.agents[agent_id] = {"versions": [snap], "archived_at": None}
        return self._json(self._render_agent(agent_id), BetaManagedAgentsAgent)

    async def _get_agent(self, request: web.Request) -> web.Response:
        q = self._query(request, ("version",))
        raw = self._one(q, "version")
        version = None
        if raw is not None:
            try:
                version = int(raw)
            except ValueError:
                raise _bad(f"version: must be an integer, got {raw!r}")
            if version < 1:
                raise _bad("version: must be at least 1")
        return self._json(self._render_agent(request.match_info["agent_id"], version), BetaManagedAgentsAgent)

    async def _update_agent(self, request: web.Request) -> web.Response:
        self._query(request, ())
        agent_id = request.match_info["agent_id"]
        a = self._get_agent_rec(agent_id)
        body = validate_params(agent_update_params.AgentUpdateParams, request[_JSON])
        if a["archived_at"]:
            raise _bad(f"agent {agent_id} is archived and cannot be updated")
        cur = a["versions"][-1]
        if "version" in body and body["version"] != cur["version"]:
            self.conflicts.append(f"agent {agent_id}: update for version {body['version']} but current is {cur['version']}")
            raise ApiError(409, "invalid_request_error", f"version mismatch: current version is {cur['version']}, got {body['version']}", violation=False)
        new = dict(cur)
        if "name" in body:
            if not body["name"]:
                raise _bad("name: cannot be cleared")
            new["name"] = body["name"]
        for k in ("description", "system"):
            if k in body:
                new[k] = body[k]
        if "model" in body:
            if body["model"] is None:
                raise _bad("model: cannot be cleared")
            new["model"] = self._normalize_model(body["model"], cur["model"])
        if "metadata" in body:
            md = _patch_metadata(cur["metadata"], body["metadata"])
            _check_metadata(body["metadata"])
            _check_metadata(md)
            new["metadata"] = md
        if "execution_identity" in body:
            new["execution_identity"] = body["execution_identity"] or {"type": "service_account"}
        mcp = self._normalize_mcp(body["mcp_servers"]) if "mcp_servers" in body else cur["mcp_servers"]
        new["mcp_servers"] = mcp
        if "tools" in body:
            new["tools"] = self._normalize_tools(body["tools"], mcp)
        elif "mcp_servers" in body:
            # re-check references against the stored tools
            self._normalize_tools(_denormalize_tools(cur["tools"]), mcp)
        if "skills" in body:
            new["skills"] = self._normalize_skills(body["skills"])
        next_version = cur["version"] + 1
        if "multiagent" in body:
            new["multiagent"] = self._fix_self_refs(
                self._normalize_multiagent(body["multiagent"], self_id=agent_id, self_version=next_version, prev=cur.get("multiagent")), agent_id
            )
        comparable = lambda d: {k: v for k, v in d.items() if k not in ("version", "updated_at", "created_at", "archived_at")}
        if comparable(new) == comparable(cur):
            return self._json(self._render_agent(agent_id), BetaManagedAgentsAgent)
        new["version"] = next_version
        new["updated_at"] = self.clock.iso()
        a["versions"].append(new)
        return self._json(self._render_agent(agent_id), BetaManagedAgentsAgent)

    async def _list_agents(self, request: web.Request) -> web.Response:
        q = self._query(request, ("created_at[gte]", "created_at[lte]", "include_archived", "limit", "page"))
        include_archived = self._bool(q, "include_archived")
        filters = self._time_filters(q)
        items = []
        for aid, a in self.agents.items():
            if a["archived_at"] and not include_archived:
                continue
            created = _parse_dt(a["versions"][0]["created_at"])
            if all(f(created) for f in filters):
                items.append(self._render_agent(aid))
        items.reverse()  # newest first
        return self._paginate_offset(q, items, BetaManagedAgentsAgent, default=20, maximum=100)

    async def _archive_agent(self, request: web.Request) -> web.Response:
        self._query(request, ())
        agent_id = request.match_info["agent_id"]
        a = self._get_agent_rec(agent_id)
        if not a["archived_at"]:
            a["archived_at"] = self.clock.iso()
        return self._json(self._render_agent(agent_id), BetaManagedAgentsAgent)

    async def _list_agent_versions(self, request: web.Request) -> web.Response:
        q = self._query(request, ("limit", "page"))
        agent_id = request.match_info["agent_id"]
        a = self._get_agent_rec(agent_id)
        items = [self._render_agent(agent_id, v) for v in range(len(a["versions"]), 0, -1)]
        return self._paginate_offset(q, items, BetaManagedAgentsAgent, default=20, maximum=100)

    # ==============================================================================
    # environments
    # ==============================================================================
    def _get_env_rec(self, env_id: str) -> dict:
        e = self.environments.get(env_id)
        if e is None:
            raise _not_found("environment", env_id)
        return e

    def _normalize_env_config(self, cfg: Any, prev: dict | None) -> dict:
        if cfg is None:
            if prev is not None:
                return prev
            cfg = {"type": "cloud"}
        if prev is not None and cfg["type"] != prev["type"]:
            raise _bad(f"config.type cannot change from {prev['type']!r} to {cfg['type']!r}", error_code="invalid_config_type_change")
        if cfg["type"] == "self_hosted":
            return {"type": "self_hosted"}
        if cfg.get("networking") is not None:
            n = cfg["networking"]
            if n["type"] == "limited":
                networking = {
                    "type": "limited",
                    "allowed_hosts": list(n.get("allowed_hosts") or []),
                    "allow_package_managers": bool(n.get("allow_package_managers") or False),
                    "allow_mcp_servers": bool(n.get("allow_mcp_servers") or False),
                }
            else:
                networking = {"type": "unrestricted"}
        else:
            networking = (prev or {}).get("networking") or {"type": "unrestricted"}
        if cfg.get("packages") is not None:
            p = cfg["packages"]
            packages = {"type": "packages", **{k: list(p.get(k) or []) for k in ("apt", "cargo", "gem", "go", "npm", "pip")}}
        else:
            packages = (prev or {}).get("packages") or {"type": "packages", "apt": [], "cargo": [], "gem": [], "go": [], "npm": [], "pip": []}
        has_packages = any(packages[k] for k in ("apt", "cargo", "gem", "go", "npm", "pip"))
        if networking["type"] == "limited" and has_packages and not networking["allow_package_managers"]:
            raise _bad("config: packages under limited networking require networking.allow_package_managers: true")
        return {"type": "cloud", "networking": networking, "packages": packages}

    @staticmethod
    def _check_scope(scope: Any) -> str:
        if scope == "account":
            raise _bad("scope: API organizations accept only 'organization'")
        return scope or "organization"

    async def _create_env(self, request: web.Request) -> web.Response:
        self._query(request, ())
        body = validate_params(environment_create_params.EnvironmentCreateParams, request[_JSON])
        if not body["name"]:
            raise _bad("name: must not be empty")
        _check_metadata(body.get("metadata"))
        now = self.clock.iso()
        env = {
            "id": new_id("env"),
            "type": "environment",
            "name": body["name"],
            "description": body.get("description"),
            "config": self._normalize_env_config(body.get("config"), None),
            "metadata": dict(body.get("metadata") or {}),
            "scope": self._check_scope(body.get("scope")),
            "created_at": now,
            "updated_at": now,
            "archived_at": None,
        }
        self.environments[env["id"]] = env
        return self._json(env, BetaEnvironment)

    async def _get_env(self, request: web.Request) -> web.Response:
        self._query(request, ())
        return self._json(self._get_env_rec(request.match_info["env_id"]), BetaEnvironment)

    async def _update_env(self, request: web.Request) -> web.Response:
        self._query(request, ())
        env = self._get_env_rec(request.match_info["env_id"])
        body = validate_params(environment_update_params.EnvironmentUpdateParams, request[_JSON])
        if env["archived_at"]:
            raise _bad("environment is archived", error_code="environment_archived")
        new = dict(env)
        if "name" in body:
            if not body["name"]:
                raise _bad("name: cannot be cleared")
            new["name"] = body["name"]
        if "description" in body:
            new["description"] = body["description"]
        if "config" in body and body["config"] is not None:
            new["config"] = self._normalize_env_config(body["config"], env["config"])
        if "metadata" in body:
            _check_metadata(body["metadata"])
            new["metadata"] = _patch_metadata(env["metadata"], body["metadata"])
            _check_metadata(new["metadata"])
        if "scope" in body:
            new["scope"] = self._check_scope(body["scope"])
        if new != env:
            new["updated_at"] = self.clock.iso()
        self.environments[env["id"]] = new
        return self._json(new, BetaEnvironment)

    async def _list_envs(self, request: web.Request) -> web.Response:
        q = self._query(request, ("include_archived", "limit", "page"))
        include_archived = self._bool(q, "include_archived")
        items = [e for e in self.environments.values() if include_archived or not e["archived_at"]]
        items.reverse()
        return self._paginate_offset(q, items, BetaEnvironment, default=20, maximum=100)

    async def _delete_env(self, request: web.Request) -> web.Response:
        self._query(request, ())
        env = self._get_env_rec(request.match_info["env_id"])
        del self.environments[env["id"]]
        return self._json({"id": env["id"], "type": "environment_deleted"}, BetaEnvironmentDeleteResponse)

    async def _archive_env(self, request: web.Request) -> web.Response:
        self._query(request, ())
        env = self._get_env_rec(request.match_info["env_id"])
        if not env["archived_at"]:
            env["archived_at"] = self.clock.iso()
        return self._json(env, BetaEnvironment)

    # ==============================================================================
    # sessions
    # ==============================================================================
    def _session_agent_snapshot(self, spec: Any) -> dict:
        if isinstance(spec, str):
            spec = {"type": "agent", "id": spec}
        aid = spec["id"]
        a = self.agents.get(aid)
        if a is None:
            raise ApiError(404, "not_found_error", f"agent {aid!r} not found")
        if a["archived_at"]:
            raise _bad(f"agent {aid} is archived")
        version = spec.get("version")
        if version is not None and not 1 <= version <= len(a["versions"]):
            raise _bad(f"agent {aid} has no version {version}")
        base = a["versions"][(version or len(a["versions"])) - 1]
        snap = {k: base[k] for k in ("id", "type", "version", "name", "description", "system", "model", "tools", "mcp_servers", "skills", "execution_identity")}
        snap["multiagent"] = self._session_multiagent(base.get("multiagent"), base)
        if spec.get("type") == "agent_with_overrides":
            mcp = self._normalize_mcp(spec["mcp_servers"]) if "mcp_servers" in spec else snap["mcp_servers"]
            snap["mcp_servers"] = mcp
            if "model" in spec:
                snap["model"] = self._normalize_model(spec["model"], None)
            if "system" in spec:
                if spec["system"] is not None and len(spec["system"]) > 100_000:
                    raise _bad("agent.system: at most 100,000 characters")
                snap["system"] = spec["system"]
            if "tools" in spec:
                snap["tools"] = self._normalize_tools(spec["tools"], mcp)
            elif "mcp_servers" in spec:
                self._normalize_tools(_denormalize_tools(snap["tools"]), mcp)
            if "skills" in spec:
                snap["skills"] = self._normalize_skills(spec["skills"])
        return snap

    def _thread_agent_snapshot(self, ref: dict, owner: dict) -> dict:
        if ref["type"] == "advisor":
            return {"type": "advisor", "model": ref["model"]}
        if ref["id"] == owner["id"]:
            v = owner
        else:
            v = self.agents[ref["id"]]["versions"][ref["version"] - 1]
        return {k: v[k] for k in ("id", "type", "version", "name", "description", "system", "model", "tools", "mcp_servers", "skills", "execution_identity")}

    def _session_multiagent(self, ma: dict | None, owner: dict) -> dict | None:
        if not ma:
            return None
        if ma["type"] == "coordinator":
            return {"type": "coordinator", "agents": [self._thread_agent_snapshot(r, owner) for r in ma["agents"]]}
        out: dict[str, Any] = {"type": ma["type"], "advisor": ma["advisor"]}
        for part in ("subagents", "workflows"):
            sec = ma[part]
            if sec["type"] == "enabled":
                out[part] = {"type": "enabled", "inline_agents": sec["inline_agents"], "predefined_agents": [self._thread_agent_snapshot(r, owner) for r in sec["predefined_agents"]]}
            else:
                out[part] = sec
        return out

    def _build_resource(self, r: dict, now: str, i: int) -> dict:
        kind = r["type"]
        if kind == "github_repository":
            if not GITHUB_URL_RE.match(r["url"]):
                raise _bad(f"resources[{i}].url: not a GitHub repository URL: {r['url']!r}")
            mount = r.get("mount_path") or "/workspace/" + r["url"].rstrip("/").split("/")[-1].removesuffix(".git")
            out = {"id": new_id("sres"), "type": kind, "url": r["url"], "mount_path": mount, "checkout": r.get("checkout"), "created_at": now, "updated_at": now}
            out["_token"] = r.get("authorization_token")
        elif kind == "file":
            if not r["file_id"].startswith("file_"):
                raise _bad(f"resources[{i}].file_id: not a file id: {r['file_id']!r}")
            mount = r.get("mount_path") or f"/mnt/session/uploads/{r['file_id']}"
            out = {"id": new_id("sres"), "type": kind, "file_id": r["file_id"], "mount_path": mount, "created_at": now, "updated_at": now}
        else:
            if r.get("instructions") is not None and len(r["instructions"]) > 4096:
                raise _bad(f"resources[{i}].instructions: at most 4096 characters")
            name = r["memory_store_id"]
            out = {"type": kind, "memory_store_id": r["memory_store_id"], "access": r.get("access") or "read_write", "instructions": r.get("instructions"), "name": name, "mount_path": f"/mnt/memory/{name}"}
        if not out.get("mount_path", "/").startswith("/"):
            raise _bad(f"resources[{i}].mount_path: must be absolute")
        return out

    def _choose_script(self, body: dict) -> Script:
        chosen: ScriptLike | None = None
        name = (body.get("metadata") or {}).get("script")
        if name is not None and name in self.scripts:
            chosen = self.scripts[name]
        if chosen is None and self._script_for is not None:
            chosen = self._script_for(body)
        if chosen is None and self._script_queue:
            chosen = self._script_queue.pop(0)
        if chosen is None:
            chosen = self.default_script
        if chosen is None:
            chosen = end_turn_only()
        if not isinstance(chosen, Script):
            chosen = chosen()
        return chosen

    async def _create_session(self, request: web.Request) -> web.Response:
        self._query(request, ())
        body = validate_params(session_create_params.SessionCreateParams, request[_JSON])
        agent = self._session_agent_snapshot(body["agent"])
        env = self.environments.get(body["environment_id"])
        if env is None:
            raise ApiError(404, "not_found_error", f"environment {body['environment_id']!r} not found", violation=True)
        if env["archived_at"]:
            raise _bad("environment is archived", error_code="environment_archived")
        _check_metadata(body.get("metadata"))
        _check_budget(body.get("budget"))
        initial = list(body.get("initial_events") or [])
        if len(initial) > 50:
            raise _bad("initial_events: at most 50")
        for i, ev in enumerate(initial):
            if ev["type"] not in ("user.message", "user.define_outcome"):
                raise _bad(f"initial_events[{i}]: type {ev['type']!r} not allowed")
            if ev["type"] == "user.message" and not ev.get("content"):
                raise _bad(f"initial_events[{i}].content: must not be empty")
        now = self.clock.iso()
        resources = [self._build_resource(r, now, i) for i, r in enumerate(body.get("resources") or [])]
        mounts = [r["mount_path"] for r in resources]
        if len(set(mounts)) != len(mounts):
            raise _bad("resources: mount paths must be unique")
        record = {
            "id": new_id("sesn"),
            "environment_id": env["id"],
            "metadata": dict(body.get("metadata") or {}),
            "title": body.get("title"),
            "vault_ids": list(body.get("vault_ids") or []),
            "budget": body.get("budget"),
            "resources": resources,
            "created_at": now,
        }
        s = SimSession(self, record, agent, self._choose_script(body))
        self.sessions[s.id] = s
        for ev in initial:
            self._apply_user_event(s, ev)
        return self._json(s.render(), BetaManagedAgentsSession)

    async def _get_session(self, request: web.Request) -> web.Response:
        self._query(request, ())
        return self._json(self._session(request).render(), BetaManagedAgentsSession)

    def _session(self, request: web.Request) -> SimSession:
        sid = request.match_info["sid"]
        s = self.sessions.get(sid)
        if s is None:
            raise _not_found("session", sid)
        return s

    async def _update_session(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        body = validate_params(session_update_params.SessionUpdateParams, request[_JSON])
        if "vault_ids" in body:
            raise _bad("vault_ids: cannot be set on update (reserved)")
        changed: dict[str, Any] = {}
        if "metadata" in body:
            _check_metadata(body["metadata"])
            md = _patch_metadata(s.metadata, body["metadata"])
            _check_metadata(md)
            if md != s.metadata:
                s.metadata = md
                changed["metadata"] = dict(md)
        if "title" in body and body["title"] != s.title:
            s.title = body["title"]
            changed["title"] = s.title
        if "budget" in body:
            nb = body["budget"]
            if s.budget is None and getattr(s, "_budget_removed", False) and nb is not None:
                raise _bad("budget: a removed budget cannot be re-added", error_code="budget_create_only")
            if s.budget is None and nb is not None:
                raise _bad("budget: a budget can only be set at session create", error_code="budget_create_only")
            if nb is not None:
                _check_budget(nb)
                if Decimal(nb["max_list_cost"]["amount"]) <= s.cost_cents():
                    raise _bad("budget: must be above the cost already spent", error_code="budget_not_raised")
            else:
                s._budget_removed = True  # type: ignore[attr-defined]
            s.budget = nb
            changed["budget"] = nb
        if "agent" in body:
            if s.status == "running":
                raise _bad("agent: the session must not be running to update its agent")
            upd = body["agent"]
            mcp = self._normalize_mcp(upd["mcp_servers"]) if "mcp_servers" in upd else s.agent["mcp_servers"]
            tools = self._normalize_tools(upd["tools"], mcp) if "tools" in upd else self._normalize_tools(_denormalize_tools(s.agent["tools"]), mcp)
            s.agent = {**s.agent, "mcp_servers": mcp, "tools": tools}
            changed["agent"] = s.agent
        if changed:
            s.updated_at = self.clock.iso()
            self._emit(s, "session.updated", thread_id=None, fields=changed)
        return self._json(s.render(), BetaManagedAgentsSession)

    async def _list_sessions(self, request: web.Request) -> web.Response:
        q = self._query(
            request,
            ("agent_id", "agent_version", "created_at[gt]", "created_at[gte]", "created_at[lt]", "created_at[lte]", "deployment_id",
             "include_archived", "limit", "memory_store_id", "order", "page", "statuses[]"),
        )
        include_archived = self._bool(q, "include_archived")
        order = self._one(q, "order") or "desc"
        if order not in ("asc", "desc"):
            raise _bad(f"order: must be asc or desc, got {order!r}")
        statuses = q.get("statuses[]") or []
        bad = [x for x in statuses if x not in ("idle", "running", "rescheduling", "terminated")]
        if bad:
            raise _bad(f"statuses: unknown status(es) {bad}")
        agent_id = self._one(q, "agent_id")
        agent_version = self._one(q, "agent_version")
        filters = self._time_filters(q)
        items = []
        for s in self.sessions.values():
            if s.archived_at and not include_archived:
                continue
            if statuses and s.status not in statuses:
                continue
            if agent_id and s.agent["id"] != agent_id:
                continue
            if agent_version and str(s.agent["version"]) != agent_version:
                continue
            if self._one(q, "deployment_id"):
                continue
            if self._one(q, "memory_store_id") and not any(r.get("memory_store_id") == self._one(q, "memory_store_id") for r in s.resources):
                continue
            if all(f(_parse_dt(s.created_at)) for f in filters):
                items.append(s.render())
        if order == "desc":
            items.reverse()
        return self._paginate_offset(q, items, BetaManagedAgentsSession, default=20, maximum=1000, bidirectional=True)

    async def _delete_session(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        if s.status == "running":
            raise _bad("cannot delete a running session; interrupt it first")
        self._stop_session_tasks(s)
        for sub in list(s.subscribers):
            sub.queue.put_nowait(_CLOSE)
        del self.sessions[s.id]
        self.deleted_sessions.add(s.id)
        return self._json({"id": s.id, "type": "session_deleted"}, BetaManagedAgentsDeletedSession)

    async def _archive_session(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        if s.status == "running":
            raise _bad("cannot archive a running session; interrupt it first")
        if not s.archived_at:
            s.archived_at = self.clock.iso()
        return self._json(s.render(), BetaManagedAgentsSession)

    # -- resources -------------------------------------------------------------------
    def _resource(self, s: SimSession, rid: str) -> dict:
        for r in s.resources:
            if r.get("id") == rid:
                return r
        raise _not_found("session resource", rid)

    async def _list_resources(self, request: web.Request) -> web.Response:
        q = self._query(request, ("limit", "page"))
        s = self._session(request)
        items = [_public_resource(r) for r in s.resources]
        return self._paginate_offset(q, items, BetaManagedAgentsSessionResource, default=1000, maximum=1000)

    async def _add_resource(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        body = validate_params(resource_add_params.ResourceAddParams, request[_JSON])
        r = self._build_resource(body, self.clock.iso(), len(s.resources))
        if any(x.get("mount_path") == r["mount_path"] for x in s.resources):
            raise _bad("mount_path already in use")
        s.resources.append(r)
        return self._json(_public_resource(r), BetaManagedAgentsFileResource)

    async def _get_resource(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        return self._json(_public_resource(self._resource(s, request.match_info["rid"])), ResourceRetrieveResponse)

    async def _update_resource(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        r = self._resource(s, request.match_info["rid"])
        body = validate_params(resource_update_params.ResourceUpdateParams, request[_JSON], path_params={"session_id": s.id})
        if r["type"] != "github_repository":
            raise _bad("only github_repository resources can be updated")
        if not body["authorization_token"]:
            raise _bad("authorization_token: must not be empty")
        r["_token"] = body["authorization_token"]
        r["_token_updates"] = r.get("_token_updates", 0) + 1
        r["updated_at"] = self.clock.iso()
        return self._json(_public_resource(r), ResourceUpdateResponse)

    async def _delete_resource(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        r = self._resource(s, request.match_info["rid"])
        s.resources.remove(r)
        return self._json({"id": r["id"], "type": "session_resource_deleted"}, BetaManagedAgentsDeleteSessionResource)

    # -- threads ---------------------------------------------------------------------
    def _thread(self, s: SimSession, request: web.Request) -> str:
        tid = request.match_info["tid"]
        if tid not in s.threads:
            raise _not_found("thread", tid)
        return tid

    async def _list_threads(self, request: web.Request) -> web.Response:
        q = self._query(request, ("limit", "page", "statuses[]"))
        s = self._session(request)
        statuses = q.get("statuses[]") or []
        items = [s.render_thread(t) for t in s.threads if not statuses or s.threads[t]["status"] in statuses]
        return self._paginate_offset(q, items, BetaManagedAgentsSessionThread, default=1000, maximum=1000)

    async def _get_thread(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        return self._json(s.render_thread(self._thread(s, request)), BetaManagedAgentsSessionThread)

    async def _archive_thread(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        tid = self._thread(s, request)
        if tid == s.primary_thread_id:
            raise _bad("the primary thread cannot be archived")
        if not s.threads[tid]["archived_at"]:
            s.threads[tid]["archived_at"] = self.clock.iso()
        return self._json(s.render_thread(tid), BetaManagedAgentsSessionThread)

    async def _list_thread_events(self, request: web.Request) -> web.Response:
        q = self._query(request, ("limit", "page"))
        s = self._session(request)
        tid = self._thread(s, request)
        return self._paginate_log(q, s.thread_logs[tid], order="asc", types=[], filters=[], default=100, maximum=1000)

    async def _stream_thread(self, request: web.Request) -> web.StreamResponse:
        self._query(request, ("event_deltas[]",))
        s = self._session(request)
        tid = self._thread(s, request)
        return await self._stream(request, s, thread_id=tid)

    # ==============================================================================
    # events
    # ==============================================================================
    def _emit(self, s: SimSession, type_: str, *, thread_id: str | None, fields: dict, pending_kind: str | None = None) -> dict:
        ev: dict[str, Any] = {"id": new_id("sevt"), "type": type_}
        ev.update(fields)
        primary = thread_id is None or thread_id == s.primary_thread_id
        if not primary:
            ev.setdefault("session_thread_id", thread_id)
        ev["processed_at"] = self.clock.iso()
        try:
            check_response(BetaManagedAgentsSessionEvent, ev)
        except SimulatorBug as e:
            self.violate(f"SIMULATOR BUG: {e}")
            raise
        if pending_kind is not None:
            s.pending[ev["id"]] = _Pending(pending_kind, ev, asyncio.get_running_loop().create_future(), None if primary else thread_id)
        if type_ == "session.status_idle":
            sr = ev["stop_reason"]
            s._last_requires_action = list(sr.get("event_ids", [])) if sr["type"] == "requires_action" else None
        if primary:
            self._append(s, ev, to_session=True, thread=s.primary_thread_id)
        else:
            self._append(s, ev, to_session=self.flatten_threads or type_ in CROSSPOSTED_TYPES, thread=thread_id)
        return ev

    def _append(self, s: SimSession, ev: dict, *, to_session: bool, thread: str | None) -> None:
        if to_session:
            s.events.append(ev)
        if thread is not None:
            s.thread_logs[thread].append(ev)
        for sub in list(s.subscribers):
            if (sub.thread_id is None and to_session) or (sub.thread_id is not None and sub.thread_id == thread):
                if ev["type"] == "agent.message" and "agent.message" in sub.deltas:
                    sub.queue.put_nowait({"type": "event_start", "event": {"type": "agent.message", "id": ev["id"]}})
                    for i, block in enumerate(ev["content"]):
                        text = block.get("text", "")
                        for chunk in _chunks(text, 24):
                            sub.queue.put_nowait({"type": "event_delta", "event_id": ev["id"], "delta": {"type": "content_delta", "index": i, "content": {"type": "text", "text": chunk}}})
                elif ev["type"] == "agent.thinking" and "agent.thinking" in sub.deltas:
                    sub.queue.put_nowait({"type": "event_start", "event": {"type": "agent.thinking", "id": ev["id"]}})
                sub.queue.put_nowait(ev)

    def _check_custom_tool_defined(self, s: SimSession, name: str, thread_id: str | None) -> None:
        agent = s.agent if thread_id is None else s.threads[thread_id]["agent"]
        if agent.get("type") == "inline":
            return
        names = {t["name"] for t in agent.get("tools", []) if t["type"] == "custom"}
        if name not in names:
            self.violate(
                f"session {s.id}: the script calls custom tool {name!r}, but the agent "
                f"{agent.get('name')!r} does not define it (custom tools: {sorted(names)})"
            )

    def _apply_user_event(self, s: SimSession, ev: dict) -> dict:
        """Log a user event and act on it. ``ev`` is already validated."""
        echo = {"id": new_id("sevt"), **ev, "processed_at": self.clock.iso()}
        t = ev["type"]
        if t == "user.define_outcome":
            echo["outcome_id"] = new_id("outc")
        check_response(BetaManagedAgentsSessionEvent, echo)
        self._append(s, echo, to_session=True, thread=s.primary_thread_id)
        if t == "user.message":
            s.user_messages.append(echo)
            s.inbox.put_nowait(echo)
            self._ensure_runner(s)
        elif t == "user.interrupt":
            s.interrupts.append(echo)
            self.interrupts.append((s.id, echo))
            if s.turn_task is not None and not s.turn_task.done():
                s.turn_task.cancel()
        elif t == "user.custom_tool_result":
            p = s.pending[ev["custom_tool_use_id"]]
            r = ToolResult(ev["custom_tool_use_id"], p.event["name"], p.event["input"], list(ev.get("content") or []), bool(ev.get("is_error")), echo, p.thread_id)
            s.tool_results.append(r)
            p.future.set_result(r)
        elif t == "user.tool_confirmation":
            p = s.pending[ev["tool_use_id"]]
            r = ToolResult(ev["tool_use_id"], p.event["name"], p.event["input"], [], ev["result"] == "deny", echo, p.thread_id)
            s.confirmations.append(r)
            p.future.set_result(r)
        return echo

    def _validate_user_event(self, s: SimSession, ev: dict, i: int, seen: set[str]) -> None:
        t = ev["type"]
        where = f"events[{i}]"
        if t == "user.message" and not ev.get("content"):
            raise _bad(f"{where}.content: must not be empty")
        if t == "user.custom_tool_result":
            eid = ev["custom_tool_use_id"]
            p = s.pending.get(eid)
            if eid in seen or p is None or p.kind != "custom" or p.future.done():
                answered = any(r.custom_tool_use_id == eid for r in s.tool_results)
                why = "was already answered" if answered or eid in seen else "is not a pending agent.custom_tool_use of this session"
                raise _bad(f"{where}.custom_tool_use_id: {eid!r} {why}")
            seen.add(eid)
        if t == "user.tool_confirmation":
            eid = ev["tool_use_id"]
            p = s.pending.get(eid)
            if eid in seen or p is None or p.kind != "confirm" or p.future.done():
                raise _bad(f"{where}.tool_use_id: {eid!r} is not a tool use awaiting confirmation")
            if ev.get("deny_message") is not None and ev["result"] != "deny":
                raise _bad(f"{where}.deny_message: only allowed with result 'deny'")
            seen.add(eid)
        if t == "user.tool_result":
            env = self.environments.get(s.environment_id)
            if env is None or env["config"]["type"] != "self_hosted":
                raise _bad(f"{where}: user.tool_result is only for self-hosted environments")
        if t == "user.interrupt" and ev.get("session_thread_id") is not None and ev["session_thread_id"] not in s.threads:
            raise _bad(f"{where}.session_thread_id: unknown thread {ev['session_thread_id']!r}")

    async def _send_events(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        body = validate_params(event_send_params.EventSendParams, request[_JSON])
        events = list(body["events"])
        if not events:
            raise _bad("events: must not be empty")
        if s.archived_at:
            raise _bad("session is archived")
        if s.status == "terminated":
            raise _bad("session is terminated")
        seen: set[str] = set()
        for i, ev in enumerate(events):
            self._validate_user_event(s, ev, i, seen)
        echoes = [self._apply_user_event(s, ev) for ev in events]
        return self._json({"data": echoes}, BetaManagedAgentsSendSessionEvents)

    def _paginate_log(self, q: dict, log: list[dict], *, order: str, types: list[str], filters: list, default: int, maximum: int) -> web.Response:
        limit = self._limit(q, default, maximum)
        cursor = self._decode_cursor(q)

        def ok(e: dict) -> bool:
            return (not types or e["type"] in types) and all(f(_parse_dt(e["processed_at"])) for f in filters)

        out = []
        if order == "asc":
            i = cursor or 0
            while i < len(log) and len(out) < limit:
                if ok(log[i]):
                    out.append(log[i])
                i += 1
            more = any(ok(e) for e in log[i:])
        else:
            i = len(log) - 1 if cursor is None else cursor
            while i >= 0 and len(out) < limit:
                if ok(log[i]):
                    out.append(log[i])
                i -= 1
            more = any(ok(e) for e in log[: i + 1])
        return self._page(out, BetaManagedAgentsSessionEvent, self._encode_cursor(i) if more else None)

    async def _list_events(self, request: web.Request) -> web.Response:
        q = self._query(request, ("created_at[gt]", "created_at[gte]", "created_at[lt]", "created_at[lte]", "limit", "order", "page", "types[]"))
        s = self._session(request)
        order = self._one(q, "order") or "asc"
        if order not in ("asc", "desc"):
            raise _bad(f"order: must be asc or desc, got {order!r}")
        return self._paginate_log(q, s.events, order=order, types=q.get("types[]") or [], filters=self._time_filters(q), default=100, maximum=1000)

    async def _stream_session(self, request: web.Request) -> web.StreamResponse:
        self._query(request, ("event_deltas[]",))
        s = self._session(request)
        return await self._stream(request, s, thread_id=None)

    async def _stream(self, request: web.Request, s: SimSession, *, thread_id: str | None) -> web.StreamResponse:
        deltas = set(request[_REC].query.get("event_deltas[]") or [])
        bad = deltas - {"agent.message", "agent.thinking"}
        if bad:
            raise _bad(f"event_deltas: unknown type(s) {sorted(bad)}")
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "request-id": new_id("req")})
        await resp.prepare(request)
        sub = _Subscriber(asyncio.Queue(), thread_id, deltas)
        s.subscribers.append(sub)
        rule: _DropRule | None = next((r for r in self._drop_rules if r.times > 0), None)
        if rule is not None:
            rule.times -= 1
        try:
            await resp.write(b'event: ping\ndata: {"type": "ping"}\n\n')
            while True:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), self.ping_interval)
                except asyncio.TimeoutError:
                    await resp.write(b'event: ping\ndata: {"type": "ping"}\n\n')
                    continue
                if item is _DROP_ABORT:
                    return self._abort(request, resp)
                if item is _DROP_EOF or item is _CLOSE:
                    await resp.write_eof()
                    return resp
                check_response(BetaManagedAgentsStreamSessionEvents, item)
                await resp.write(f"event: {item['type']}\ndata: {json.dumps(item)}\n\n".encode())
                if item["type"] not in ("event_start", "event_delta"):
                    sub.delivered += 1
                if rule is not None and sub.delivered >= rule.after_events:
                    s.stream_drops += 1
                    if rule.mode == "abort":
                        return self._abort(request, resp)
                    await resp.write_eof()
                    return resp
        except (ConnectionResetError, ConnectionError):
            return resp
        finally:
            if sub in s.subscribers:
                s.subscribers.remove(sub)

    @staticmethod
    def _abort(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            transport.abort()
        return resp

    # -- the script runner -------------------------------------------------------------
    def _ensure_runner(self, s: SimSession) -> None:
        if s.runner is None or s.runner.done():
            s.runner = asyncio.get_running_loop().create_task(self._run(s), name=f"sim-session-{s.id}")
            self._tasks.add(s.runner)
            s.runner.add_done_callback(self._tasks.discard)

    def _stop_session_tasks(self, s: SimSession) -> None:
        for t in (s.turn_task, s.runner):
            if t is not None and not t.done():
                t.cancel()

    async def _run(self, s: SimSession) -> None:
        while s.status != "terminated":
            msg = await s.inbox.get()
            if s.status == "terminated":
                return
            turn = s.next_turn()
            s.turn_task = asyncio.get_running_loop().create_task(self._play_turn(s, turn, msg))
            self._tasks.add(s.turn_task)
            s.turn_task.add_done_callback(self._tasks.discard)
            await asyncio.wait({s.turn_task})
            if s.turn_task.cancelled():
                if self._closed:
                    return
                # interrupted: drop pending tool uses, idle with end_turn
                for p in s.pending.values():
                    if not p.future.done():
                        p.future.cancel()
                s.pending.clear()
                s.set_status("idle", self.clock.now())
                self._emit(s, "session.status_idle", thread_id=None, fields={"stop_reason": {"type": "end_turn"}})
            elif s.turn_task.exception() is not None:
                exc = s.turn_task.exception()
                self.violate(f"SIMULATOR/SCRIPT ERROR in session {s.id}: {exc!r}")
                s.set_status("idle", self.clock.now())
                return

    async def _play_turn(self, s: SimSession, turn: list[Step], msg: dict) -> None:
        ctx = ScriptContext(self, s, msg)
        try:
            await ctx.set_running()
            for step in turn:
                await step(ctx)
            await ctx.stop({"type": "end_turn"})
        except _TurnEnded:
            pass


def _chunks(text: str, n: int) -> list[str]:
    return [text[i : i + n] for i in range(0, len(text), n)] or [""]


def _denormalize_tools(tools: list[dict]) -> list[dict]:
    """Stored tools back to param shape (only used to re-check MCP references)."""
    out = []
    for t in tools:
        if t["type"] == "mcp_toolset":
            out.append({"type": "mcp_toolset", "mcp_server_name": t["mcp_server_name"]})
        elif t["type"] == "custom":
            out.append({"type": "custom", "name": t["name"], "description": t["description"], "input_schema": t["input_schema"]})
        else:
            out.append({"type": t["type"], "default_config": t["default_config"], "configs": [{k: v for k, v in c.items()} for c in t["configs"]]})
    return out


def _match(actual: Any, expected: Any) -> bool:
    if callable(expected):
        return bool(expected(actual))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return all(_match(actual.get(k), v) for k, v in expected.items())
    return actual == expected


# ======================================================================================
# ready-made scripts
# ======================================================================================

DEFAULT_REVIEW_CALLS: list[tuple[str, dict]] = [
    ("report_progress", {"message": "Reviewing the diff with the reviewer and the tester.", "done": [], "todo": ["review", "tests"]}),
    (
        "publish_review",
        {
            "summary": "Two small issues; otherwise this looks good.",
            "event": "COMMENT",
            "comments": [
                {"path": "src/app.py", "line": 3, "side": "RIGHT", "severity": "minor", "body": "This name shadows a builtin."}
            ],
        },
    ),
]


def _calls(custom_calls: Sequence[tuple[str, dict] | dict] | None) -> list[tuple[str, dict]]:
    out = []
    for c in DEFAULT_REVIEW_CALLS if custom_calls is None else custom_calls:
        out.append((c["name"], c["input"]) if isinstance(c, dict) else (c[0], c[1]))
    return out


def normal_review_run(
    custom_calls: Sequence[tuple[str, dict] | dict] | None = None,
    *,
    reviewer_findings: str = "Found 1 minor issue in src/app.py line 3.",
    tester_report: str = "All 12 tests pass.",
    final_text: str = "Review published.",
) -> Script:
    """A coordinator run with reviewer and tester sub-agent threads, then the custom tool
    calls in order (each one waits for its result), usage and end_turn."""
    steps: list[Step] = [
        agent_thinking(),
        model_request(2400, 350),
        agent_message("I'll ask the reviewer and the tester to look at this pull request."),
        thread_created("reviewer"),
        thread_created("tester"),
        thread_message("reviewer", "Review the diff for bugs and risky changes."),
        thread_message("tester", "Run the test suite and report failures."),
        model_request(1800, 420, thread="reviewer"),
        tool_use("bash", {"command": "git diff --stat HEAD~1"}, result=" 2 files changed, 10 insertions(+)", thread="reviewer"),
        agent_message(reviewer_findings, thread="reviewer"),
        thread_reply("reviewer", reviewer_findings),
        thread_idle("reviewer"),
        model_request(1500, 260, thread="tester"),
        tool_use("bash", {"command": "python -m pytest -q"}, result="12 passed in 0.42s", thread="tester"),
        thread_reply("tester", tester_report),
        thread_idle("tester"),
        model_request(3000, 500, cache_read_input_tokens=1000),
    ]
    for name, inp in _calls(custom_calls):
        steps.append(custom_tool_use(name, inp))
    steps += [model_request(800, 120), usage_snapshot(), agent_message(final_text), stop_end_turn()]
    return Script(*steps, name="normal_review_run")


def bad_tool_input_then_fix(
    name: str = "publish_review",
    bad_input: dict | None = None,
    good_input: dict | None = None,
    *,
    final_text: str = "Review published after fixing the call.",
) -> Script:
    """Calls ``name`` with bad input; if the client answers ``is_error: true`` the agent
    corrects itself and calls again with ``good_input``."""
    bad = bad_input if bad_input is not None else {"summary": "", "event": "APPROVE_MAYBE", "comments": [{"path": "nope.py", "line": 0}]}
    good = good_input if good_input is not None else {"summary": "Looks good.", "event": "COMMENT", "comments": []}
    return Script(
        model_request(2000, 300),
        custom_tool_use(name, bad),
        if_tool_error(
            then=[agent_thinking(), model_request(600, 150), agent_message("The call was rejected; correcting the input."), custom_tool_use(name, good)],
        ),
        agent_message(final_text),
        stop_end_turn(),
        name="bad_tool_input_then_fix",
    )


def dropped_stream(
    custom_calls: Sequence[tuple[str, dict] | dict] | None = None,
    *,
    mode: str = "abort",
    final_text: str = "Done after the stream drop.",
) -> Script:
    """Emits a few events, cuts every open stream, then carries on (tool calls included), so
    the client has to reconnect and back-fill from events.list."""
    calls = _calls(custom_calls if custom_calls is not None else [("report_progress", {"message": "Still working."})])
    steps: list[Step] = [
        model_request(1000, 200),
        agent_message("Starting work."),
        tool_use("bash", {"command": "ls"}, result="README.md\nsrc\n"),
        drop_stream(mode),
        agent_message("Continuing while nobody listens."),
        model_request(900, 150),
    ]
    steps += [custom_tool_use(n, i) for n, i in calls]
    steps += [agent_message(final_text), stop_end_turn()]
    return Script(*steps, name="dropped_stream")


def repository_clone_error(repository_url: str | None = None, *, final_text: str = "The repository could not be cloned; I continued without it.") -> Script:
    """``session.error`` repository_clone_error (retrying, with repository_url); the session keeps running without the repo."""
    extra = {"repository_url": repository_url} if repository_url else {}
    return Script(
        session_error("repository_clone_error", "Failed to clone repository: authentication failed", retry_status="retrying", **extra),
        model_request(800, 120),
        agent_message(final_text),
        stop_end_turn(),
        name="repository_clone_error",
    )


def budget_reached(input_tokens: int = 400_000, output_tokens: int = 60_000) -> Script:
    """Expensive model requests, a usage snapshot, then idle with ``budget_reached``
    (reached earlier if the session has a lower budget)."""
    return Script(
        model_request(input_tokens, output_tokens, usage_event=True),
        model_request(input_tokens, output_tokens, usage_event=True),
        stop_budget_reached(),
        name="budget_reached",
    )


def refusal(category: str | None = "cyber", explanation: str | None = "The request was declined.") -> Script:
    return Script(model_request(900, 40), stop_refusal(category, explanation), name="refusal")


def retries_exhausted(error_type: str = "model_overloaded_error") -> Script:
    """Retrying error, rescheduled, then exhausted: idle with ``retries_exhausted``."""
    return Script(
        session_error(error_type, retry_status="retrying"),
        status_rescheduled(),
        status_running(),
        session_error(error_type, retry_status="exhausted"),
        stop_retries_exhausted(),
        name="retries_exhausted",
    )


def terminated(error_type: str = "unknown_error") -> Script:
    """A terminal ``session.error`` then ``session.status_terminated``."""
    return Script(model_request(300, 20), session_error(error_type, retry_status="terminal"), terminate(), name="terminated")


def end_turn_only(text: str = "Nothing to change here.") -> Script:
    return Script(model_request(1000, 80), agent_message(text), stop_end_turn(), name="end_turn_only")
