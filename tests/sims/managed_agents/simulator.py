""":class:`ManagedAgentsSimulator`: configuration, inspection and the aiohttp app.

The route handlers live in mixins under ``routes/`` (one per area of the API); this class holds
the state they share.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

from .common import Call, DEFAULT_PRICING, RequestRecord, _Clock, _DropRule, _Fault
from .routes.agents import AgentRoutes
from .routes.environments import EnvironmentRoutes
from .routes.events import EventRoutes
from .routes.sessions import SessionRoutes
from .routes.transport import TransportMixin
from .ready import router_answer, verifier_run
from .script import ScriptLike, _CLOSE

if TYPE_CHECKING:
    from .session import SimSession


class ManagedAgentsSimulator(TransportMixin, AgentRoutes, EnvironmentRoutes, SessionRoutes, EventRoutes):
    """The simulated Managed Agents API (see the package's docstring for its public surface)."""

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
        # Sessions of the agent named `router` with no resources (prmedic's router) play this first.
        self.router_script: ScriptLike | None = router_answer()
        # Sessions of the agent named `verifier` (a fix's independent verification) play this first.
        self.verifier_script: ScriptLike | None = verifier_run()
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

    def mcp_reachable(self, s: SimSession) -> bool:
        """Whether the session's container may reach its agent's MCP servers: unrestricted
        networking, or limited networking with ``allow_mcp_servers``."""
        env = self.environments.get(s.environment_id)
        net = ((env or {}).get("config") or {}).get("networking") or {}
        return net.get("type") == "unrestricted" or bool(net.get("allow_mcp_servers"))

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


def _match(actual: Any, expected: Any) -> bool:
    if callable(expected):
        return bool(expected(actual))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return all(_match(actual.get(k), v) for k, v in expected.items())
    return actual == expected
