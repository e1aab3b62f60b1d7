"""Events: emitting, the client's events, listing, streaming, and the script runner."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from anthropic.types.beta.sessions import (
    BetaManagedAgentsSendSessionEvents, BetaManagedAgentsSessionEvent, BetaManagedAgentsStreamSessionEvents,
    event_send_params,
)

from ..common import CROSSPOSTED_TYPES, SimulatorBug, _DropRule, _JSON, _REC, _bad, _parse_dt, new_id
from ..script import (
    ScriptContext, Step, ToolResult, _CLOSE, _DROP_ABORT, _DROP_EOF, _Pending, _Subscriber, _TurnEnded,
)
from ..validation import check_response, validate_params

if TYPE_CHECKING:
    from ..session import SimSession


class EventRoutes:
    """``/v1/sessions/{sid}/events`` (send, list, stream) and the task that plays a session's script."""

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
            # A sub-agent's tool use waiting for a confirmation is cross-posted to surface the request.
            crossposted = type_ in CROSSPOSTED_TYPES or pending_kind == "confirm"
            self._append(s, ev, to_session=self.flatten_threads or crossposted, thread=thread_id)
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
