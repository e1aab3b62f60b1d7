"""Step builders: each returns an async step a :class:`~.script.Script` plays in order."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any, Callable, Sequence

from .common import BUILTIN_TOOLS, _text_content
from .script import ScriptContext, Step, ToolResult, _DROP_ABORT, _DROP_EOF, _TurnEnded


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


def _mcp_permission(ctx: ScriptContext, server: str, name: str, thread: str | None) -> tuple[str, str]:
    """The evaluated permission and policy type of MCP tool ``name`` of ``server`` under the agent's
    ``mcp_toolset`` (a tool with no toolset, or disabled, is refused: ``deny``)."""
    tid = ctx.thread_id(thread)
    agent = ctx.session.agent if tid is None else ctx.session.threads[tid]["agent"]
    if server not in {s["name"] for s in agent.get("mcp_servers") or []}:
        ctx.sim.violate(f"session {ctx.session.id}: the script calls MCP server {server!r}, which the agent "
                        f"{agent.get('name')!r} does not have")
        return "deny", ""
    toolset = next((t for t in agent.get("tools") or [] if t["type"] == "mcp_toolset" and t["mcp_server_name"] == server), None)
    if toolset is None:
        return "deny", ""
    config = next((c for c in toolset["configs"] if c["name"] == name), toolset["default_config"])
    if not config.get("enabled", True):
        return "deny", ""
    policy = config["permission_policy"]["type"]
    return {"always_allow": "allow", "always_ask": "ask"}.get(policy, "ask"), policy


def mcp_tool_use(
    server: str,
    name: str,
    input: dict | None = None,
    *,
    result: str = "",
    is_error: bool = False,
    thread: str | None = None,
    permission: str | None = None,
) -> Step:
    """An MCP tool call: ``agent.mcp_tool_use`` then ``agent.mcp_tool_result``.

    The permission is the agent's ``mcp_toolset`` policy for the tool (``always_allow`` → allow,
    ``always_ask`` → ask; ``permission`` forces one). With ``ask`` the session idles with
    requires_action until a ``user.tool_confirmation``; a denial makes the result an error carrying
    the deny message. Under limited networking without ``allow_mcp_servers`` the server cannot be
    reached: a ``session.error`` (``mcp_connection_failed_error``) and an error result."""

    async def step(ctx: ScriptContext) -> None:
        evaluated, policy = _mcp_permission(ctx, server, name, thread)
        evaluated = permission or evaluated
        fields: dict[str, Any] = {"name": name, "input": input or {}, "mcp_server_name": server,
                                  "evaluated_permission": evaluated}
        if policy in ("always_allow", "always_ask") and permission is None:
            fields["evaluation"] = {"type": policy}
        if ctx.sim.step_delay:
            await asyncio.sleep(ctx.sim.step_delay)
        ev = ctx.sim._emit(ctx.session, "agent.mcp_tool_use", thread_id=ctx.thread_id(thread), fields=fields,
                           pending_kind="confirm" if evaluated == "ask" else None)
        res_text, err = result, is_error
        if evaluated == "deny":
            res_text, err = f"The tool {name!r} of MCP server {server!r} is not enabled for this agent.", True
        elif evaluated == "ask":
            (confirmation,) = await ctx.wait_for_results([ev["id"]])
            if confirmation.event.get("result") == "deny":
                res_text, err = confirmation.event.get("deny_message") or "Denied by the user.", True
        if not err and not ctx.sim.mcp_reachable(ctx.session):
            await ctx.emit("session.error", thread=thread, error={
                "type": "mcp_connection_failed_error", "message": f"Could not connect to MCP server {server!r}.",
                "retry_status": {"type": "terminal"}, "mcp_server_name": server})
            res_text, err = f"Could not connect to MCP server {server!r}.", True
        await ctx.emit("agent.mcp_tool_result", thread=thread, mcp_tool_use_id=ev["id"], content=_text_content(res_text),
                       is_error=err)

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
