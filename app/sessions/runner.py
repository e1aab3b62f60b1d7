"""Runs one Managed Agents session per job (DESIGN §3.4) and watches many of them in one process.

The life of a session, as `SessionRuntime.run` drives it:

1. **Attach or create.** If the store has an open session for the job (a worker died and the job
   was leased again), the runner attaches to it. Otherwise it creates one: the agent pinned to
   a version, the repository mounted at the head commit with a read-only token for that one
   repository, a budget, metadata and a title. 429/529/5xx on create are retried with backoff;
   when the retries run out the job fails with a *transient* error (the worker retries it
   later). The session id is recorded in the store before anything is sent to it.
2. **Stream.** The event stream is opened *before* the history is read (`events.list`, asc,
   from the last `processed_at` seen), so nothing emitted in between is lost; events are
   de-duplicated by id (a bounded window per session). A dropped stream (transport error,
   5xx, or a clean EOF before the end) is reopened with backoff 0.5 s doubling to 10 s.
3. **Act on state, not on single events.** After each batch (the back-fill, then every live
   event) the runner looks at the session's state: the task is sent if the log has no
   `user.message` yet; the ids of the latest `requires_action` that have no
   `user.custom_tool_result` in the log are answered. Each custom tool call is claimed in the
   store before its handler runs and its result stored before it is sent, so a call runs at
   most once even across a restart: a stored result is re-sent, never re-executed, and a call
   whose process died mid-handler is answered with an error telling the agent to check before
   repeating it (its effect is unknown).
4. **End.** `end_turn` → done; `budget_reached` → done, flagged; `retries_exhausted` and a
   terminal error → transient failure (the retry makes a new session); `refusal` → permanent
   failure with the category and explanation; a `repository_*` error → the session is
   interrupted (it would work without the code) and the job fails with a clear message. Usage
   and list cost are taken from `session.usage` events and the final `sessions.retrieve`, and
   stored with the session.
5. **Stop.** Cancelling the pipeline task (supersede, `/stop`) sends `user.interrupt`
   (shielded, best effort) if the job was cancelled or superseded in the store; a worker that is
   merely shutting down leaves the session running for the next worker to resume (a tool handler
   under way finishes and stores its result first). A custom tool call of a job that is no longer
   running is refused, never run. A session that runs past `max_duration_seconds` is interrupted
   and the job fails.

The repository token is refreshed while the session runs: every `token_refresh_seconds` the
token provider is asked again and, if it hands out a different token, the session resource is
updated. With `GitHubApp`'s cache (a token is re-minted when it has < 10 minutes left) a
refresh period under 10 minutes keeps the container's token valid for any session length.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2

from app.errors import PermanentError, TransientError, describe
from app.logs import redact
from app.store import Job, JobState, Store, ToolCallRecord
from app.tools.registry import ToolContext, ToolRegistry

log = logging.getLogger("prmedic.sessions")

TokenProvider = Callable[[], Awaitable[str]]
EventHook = Callable[[str, Any], None]

_RETRYABLE_4XX = frozenset({408, 409, 429})
_AMBIGUOUS_CREATE_STATUS = frozenset({500, 502, 504})


# ----------------------------------------------------------------------------------------------
# configuration, inputs and outputs
# ----------------------------------------------------------------------------------------------


@dataclass
class SessionSettings:
    max_sessions: int = 500
    max_duration_seconds: float = 3600.0
    # How often the repository token is re-read; the session resource is updated when it changed.
    token_refresh_seconds: float = 300.0
    github_web_url: str = "https://github.com"
    create_attempts: int = 6
    create_backoff_seconds: float = 1.0
    create_backoff_cap: float = 30.0
    reconnect_initial_seconds: float = 0.5
    reconnect_max_seconds: float = 10.0
    # Give up (transiently: the job is retried and resumes) after this many reconnects in a row
    # that delivered no new event.
    max_reconnects_without_progress: int = 40
    stream_read_timeout: float = 120.0
    request_timeout: float = 60.0
    interrupt_timeout: float = 10.0
    dedup_window: int = 256
    request_keepalive: int = 16

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> "SessionSettings":
        values: dict[str, Any] = {}
        for name, attr in (("max_sessions", "max_sessions"),
                           ("max_duration_seconds", "session_max_duration_seconds"),
                           ("token_refresh_seconds", "session_token_refresh_seconds"),
                           ("github_web_url", "github_web_url")):
            if getattr(settings, attr, None) is not None:
                values[name] = getattr(settings, attr)
        values.update(overrides)
        return cls(**values)


@dataclass
class SessionSpec:
    """What one session is for: the job, the agent to run and the task to give it."""

    job_id: int
    repo: str  # owner/name
    head_sha: str
    task: str
    agent_id: str
    environment_id: str
    agent_version: int | None = None
    budget_cents: int | None = None
    installation_id: int | None = None
    pr_number: int | None = None
    kind: str = "review"
    job_attempt: int = 1
    title: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # The coordinator's system prompt with the repository's own instructions appended
    # (`render_system_prompt`); None keeps the synced prompt.
    system_override: str | None = None

    @classmethod
    def for_job(cls, job: Job, *, task: str, agent_id: str, environment_id: str,
                agent_version: int | None = None, budget_cents: int | None = None, **kw: Any) -> "SessionSpec":
        if not job.head_sha:
            raise PermanentError(f"job {job.id} has no head commit to check out")
        return cls(job_id=job.id, repo=job.repo, head_sha=job.head_sha, task=task, agent_id=agent_id,
                   environment_id=environment_id, agent_version=agent_version, budget_cents=budget_cents,
                   installation_id=job.installation_id, pr_number=job.pr_number, kind=job.kind.value,
                   job_attempt=job.attempts or 1, **kw)


@dataclass
class SessionOutcome:
    session_id: str
    stop_reason: str  # end_turn | budget_reached | terminated
    budget_reached: bool = False
    usage: dict[str, Any] | None = None
    list_cost_cents: int | None = None
    tool_calls: int = 0
    resumed: bool = False
    final_message: str | None = None
    duration_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    token_rotations: int = 0

    def as_result(self) -> dict[str, Any]:
        """For the job's result (JSON)."""
        return {
            "session_id": self.session_id, "stop_reason": self.stop_reason, "budget_reached": self.budget_reached,
            "usage": self.usage, "list_cost_cents": self.list_cost_cents,
            "list_cost_usd": None if self.list_cost_cents is None else round(self.list_cost_cents / 100, 2),
            "tool_calls": self.tool_calls, "resumed": self.resumed, "duration_seconds": round(self.duration_seconds, 1),
            "session_errors": self.errors,
        }


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


class _Finished(Exception):
    def __init__(self, outcome: SessionOutcome) -> None:
        self.outcome = outcome


# ----------------------------------------------------------------------------------------------
# the runtime: one per process
# ----------------------------------------------------------------------------------------------


class SessionRuntime:
    """Runs sessions for jobs; one per worker process (holds the client and the concurrency cap)."""

    def __init__(
        self,
        client: anthropic.AsyncAnthropic,
        store: Store,
        *,
        settings: SessionSettings | None = None,
        tools: ToolRegistry | None = None,
        github_app: Any = None,
        on_event: EventHook | None = None,
    ) -> None:
        self.settings = settings or SessionSettings()
        # Two connection pools of our own: httpcore scans every connection of a pool on each
        # request (O(pool size) CPU per request), so the long-lived streams get one pool and the
        # short requests (send, list, retrieve) a small one with few idle connections.
        self._stream_http = anthropic.DefaultAsyncHttpxClient(
            limits=httpx2.Limits(max_connections=max(self.settings.max_sessions * 2, 100),
                                 max_keepalive_connections=0))
        self._request_http = anthropic.DefaultAsyncHttpxClient(
            limits=httpx2.Limits(max_connections=256, max_keepalive_connections=self.settings.request_keepalive))
        self.stream_client = client.with_options(http_client=self._stream_http)
        self.client = client.with_options(http_client=self._request_http)
        # Sends are not idempotent (no idempotency key): never let the SDK retry them; a failed
        # send is reconciled against the event log after reconnecting instead.
        self.send_client = self.client.with_options(max_retries=0, timeout=self.settings.request_timeout)
        self.create_client = self.client.with_options(max_retries=0, timeout=self.settings.request_timeout)
        self.store = store
        self.tools = tools or ToolRegistry()
        self.github_app = github_app
        self.on_event = on_event
        self.semaphore = asyncio.Semaphore(self.settings.max_sessions)
        self.active = 0

    async def aclose(self) -> None:
        """Close the streams' connection pool (the shared client is the caller's to close)."""
        await self._stream_http.aclose()
        await self._request_http.aclose()

    def token_provider(self, spec: SessionSpec) -> TokenProvider:
        if self.github_app is None or spec.installation_id is None:
            raise PermanentError(f"job {spec.job_id}: no GitHub installation to mint a repository token with")
        app, installation_id, repo = self.github_app, spec.installation_id, spec.repo

        async def provide() -> str:
            return await app.repository_read_token(installation_id, repo)

        return provide

    async def run(self, spec: SessionSpec, ctx: ToolContext, *, tools: ToolRegistry | None = None,
                  token_provider: TokenProvider | None = None) -> SessionOutcome:
        """Run (or resume) the job's session to its end.

        Raises `SessionFailed` (permanent) or `SessionRetryable` (transient); on cancellation the
        session is interrupted if the job was cancelled or superseded.
        """
        async with self.semaphore:
            self.active += 1
            try:
                run = _SessionRun(self, spec, ctx, tools or self.tools, token_provider or self.token_provider(spec))
                return await run.run()
            finally:
                self.active -= 1
                if ctx.progress is not None:
                    await ctx.progress.aclose()


# ----------------------------------------------------------------------------------------------
# one session
# ----------------------------------------------------------------------------------------------


class _Window:
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


class _SessionRun:
    def __init__(self, runtime: SessionRuntime, spec: SessionSpec, ctx: ToolContext, tools: ToolRegistry,
                 token_provider: TokenProvider) -> None:
        self.rt = runtime
        self.cfg = runtime.settings
        self.spec = spec
        self.ctx = ctx
        self.tools = tools
        self.token_provider = token_provider
        self.sid: str = ""
        self.resource_id: str | None = None
        self.last_token: str | None = None
        self.started = time.monotonic()
        self.resumed = False
        # event state
        self.seen = _Window(self.cfg.dedup_window)
        self.watermark: Any = None  # the latest processed_at seen
        self.status: str | None = None  # running | idle | rescheduling | terminated
        self.stop_reason: Any = None
        self.stop_details: Any = None
        self.task_seen = False
        self.task_sent = False
        self.tool_uses: dict[str, tuple[str, Any]] = {}  # unanswered custom tool uses
        self.confirmations: set[str] = set()  # built-in tool uses waiting for a confirmation
        self.answered: set[str] = set()
        self.pending: list[str] = []
        self.failure: SessionFailed | SessionRetryable | None = None
        self.interrupt_needed = False
        self.terminal_error: str | None = None
        self.errors: list[str] = []
        self.usage: dict[str, Any] | None = None
        self.list_cost_cents: int | None = None
        self.final_message: str | None = None
        self.tool_calls = 0
        self.rotations = 0
        self.token_update: asyncio.Future[None] | None = None  # a token update under way
        self.events = 0
        self.job_stopped: JobState | None = None  # set when a tool call found the job no longer running

    # -- top level -----------------------------------------------------------------------------
    async def run(self) -> SessionOutcome:
        record = await self.rt.store.get_open_session(self.spec.job_id)
        if record is not None and await self._attach(record.session_id):
            self.resumed = True
            created_at = record.created_at
        else:
            await self._create()
            created_at = time.time()
        self.ctx.session_id = self.sid
        remaining = created_at + self.cfg.max_duration_seconds - time.time()
        rotation = asyncio.create_task(self._rotate_tokens(immediately=self.resumed), name=f"rotate-{self.sid}")
        try:
            try:
                async with asyncio.timeout(max(remaining, 0.0)) as deadline:
                    await self._drive()
            except TimeoutError:
                if not deadline.expired():
                    raise
                await self._interrupt("maximum duration reached")
                raise await self._close_with(SessionFailed(
                    f"the agent session ran longer than the maximum of {_duration(self.cfg.max_duration_seconds)} "
                    "and was stopped (setting PRMEDIC_SESSION_MAX_DURATION_SECONDS)",
                    reason="max_duration", session_id=self.sid)) from None
        except _Finished as done:
            outcome = done.outcome
            await self._stop_rotation(rotation)
            outcome.token_rotations = self.rotations
            await self._final_usage()
            outcome.usage, outcome.list_cost_cents = self.usage, self.list_cost_cents
            await self.rt.store.close_session(self.sid, stop_reason=outcome.stop_reason, usage=self.usage,
                                              list_cost_cents=self.list_cost_cents,
                                              budget_reached=outcome.budget_reached)
            log.info("session %s for job %d ended: %s (cost %s cents, %d tool calls)", self.sid, self.spec.job_id,
                     outcome.stop_reason, self.list_cost_cents, self.tool_calls)
            return outcome
        except (SessionFailed, SessionRetryable) as exc:
            if exc.usage is None:
                exc.usage, exc.list_cost_cents = self.usage, self.list_cost_cents
            raise
        except asyncio.CancelledError:
            stop = asyncio.ensure_future(self._on_cancel())
            try:
                await asyncio.shield(stop)
            except asyncio.CancelledError:
                pass
            raise
        finally:
            rotation.cancel()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _close_with(self, exc: SessionFailed | SessionRetryable) -> SessionFailed | SessionRetryable:
        """Close the session record (the retry of a job with a closed session makes a new one)."""
        exc.usage, exc.list_cost_cents = self.usage, self.list_cost_cents
        await self.rt.store.close_session(self.sid, stop_reason=exc.reason, error=str(exc), usage=self.usage,
                                          list_cost_cents=self.list_cost_cents)
        return exc

    async def _on_cancel(self) -> None:
        try:
            job = await self.rt.store.get_job(self.spec.job_id)
        except Exception:  # noqa: BLE001 - in doubt, stop spending
            job = None
        # Still running: the worker itself is stopping; leave the session for the next worker.
        interrupt = job is None or job.state is not JobState.running
        if interrupt and self.sid:
            await self._interrupt("the job was cancelled or superseded")
            try:
                await self.rt.store.close_session(self.sid, stop_reason="interrupted", error="job cancelled")
            except Exception as exc:  # noqa: BLE001
                log.warning("session %s: cannot close the record: %s", self.sid, exc)

    # -- create / attach -----------------------------------------------------------------------
    async def _attach(self, session_id: str) -> bool:
        try:
            session = await self.rt.client.beta.sessions.retrieve(session_id, timeout=self.cfg.request_timeout)
        except anthropic.NotFoundError:
            log.warning("session %s of job %d is gone; creating a new one", session_id, self.spec.job_id)
            await self.rt.store.close_session(session_id, stop_reason="gone", error="session not found")
            return False
        except (anthropic.APIConnectionError, anthropic.InternalServerError, anthropic.RateLimitError) as exc:
            raise SessionRetryable(f"cannot reach the Managed Agents API to resume session {session_id}: "
                                   f"{describe(exc)}", reason="unreachable", session_id=session_id) from exc
        self.sid = session.id
        self.resource_id = _repository_resource_id(session)
        log.info("job %d: resuming session %s (status %s)", self.spec.job_id, self.sid, session.status)
        return True

    def _create_params(self, token: str) -> dict[str, Any]:
        spec = self.spec
        agent: dict[str, Any] = {"type": "agent", "id": spec.agent_id}
        if spec.system_override is not None:
            agent = {"type": "agent_with_overrides", "id": spec.agent_id, "system": spec.system_override}
        if spec.agent_version is not None:
            agent["version"] = spec.agent_version
        metadata = {"prmedic_job": str(spec.job_id), "repository": spec.repo, "kind": spec.kind}
        if spec.pr_number is not None:
            metadata["pr"] = str(spec.pr_number)
        for key, value in spec.metadata.items():
            if len(metadata) >= 16:
                break
            metadata[str(key)[:64]] = str(value)[:512]
        params: dict[str, Any] = {
            "agent": agent,
            "environment_id": spec.environment_id,
            "resources": [{
                "type": "github_repository",
                "url": f"{self.cfg.github_web_url.rstrip('/')}/{spec.repo}",
                "checkout": {"type": "commit", "sha": spec.head_sha},
                "authorization_token": token,
            }],
            "metadata": metadata,
            "title": spec.title or f"prmedic {spec.kind} {spec.repo}"
                                   + (f"#{spec.pr_number}" if spec.pr_number is not None else "")
                                   + f" @ {spec.head_sha[:7]}",
        }
        if spec.budget_cents:
            params["budget"] = {"type": "limit",
                                "max_list_cost": {"amount": str(int(spec.budget_cents)), "currency": "USD"}}
        return params

    async def _create(self) -> None:
        token = await self.token_provider()
        self.last_token = token
        params = self._create_params(token)
        session = await self._find_orphan() if self.spec.job_attempt > 1 else None
        attempt = 0
        while session is None:
            attempt += 1
            try:
                session = await self.rt.create_client.beta.sessions.create(**params)
            except (anthropic.RateLimitError, anthropic.InternalServerError, anthropic.APIConnectionError) as exc:
                status = getattr(exc, "status_code", None)
                if status is None or status in _AMBIGUOUS_CREATE_STATUS:
                    # The request may have created a session before it failed: look before retrying.
                    session = await self._find_orphan()
                    if session is not None:
                        break
                if attempt >= self.cfg.create_attempts:
                    raise SessionRetryable(
                        f"the Managed Agents API did not accept the session after {attempt} attempts "
                        f"(last: {_status_text(exc)}); the job will be retried later", reason="create_failed") from exc
                delay = _retry_after(exc) or min(self.cfg.create_backoff_seconds * 2 ** (attempt - 1),
                                                  self.cfg.create_backoff_cap) * random.uniform(0.75, 1.0)
                log.warning("job %d: creating the session failed (%s); attempt %d/%d in %.1fs", self.spec.job_id,
                            _status_text(exc), attempt + 1, self.cfg.create_attempts, delay)
                await asyncio.sleep(delay)
            except anthropic.APIStatusError as exc:
                raise SessionFailed(f"the Managed Agents API refused to create the session: "
                                    f"{redact(_api_message(exc))}", reason="create_refused") from exc
        self.sid = session.id
        self.resource_id = _repository_resource_id(session)
        await self.rt.store.record_session(self.spec.job_id, self.sid, agent_id=self.spec.agent_id,
                                           agent_version=self.spec.agent_version)
        log.info("job %d: created session %s", self.spec.job_id, self.sid)

    async def _find_orphan(self) -> Any:
        """A live session this job created earlier that the store does not know (crash after create)."""
        try:
            page = await self.rt.client.beta.sessions.list(agent_id=self.spec.agent_id, order="desc", limit=50,
                                                           timeout=self.cfg.request_timeout)
        except anthropic.APIError as exc:
            log.warning("job %d: cannot look for an earlier session: %s", self.spec.job_id, _status_text(exc))
            return None
        known = {s.session_id for s in await self.rt.store.list_sessions(self.spec.job_id)}
        for session in page.data:
            if (session.metadata or {}).get("prmedic_job") == str(self.spec.job_id) and session.id not in known \
                    and session.status != "terminated":
                log.info("job %d: adopting session %s created by an earlier attempt", self.spec.job_id, session.id)
                return session
        return None

    # -- the stream loop -----------------------------------------------------------------------
    async def _drive(self) -> None:
        backoff = self.cfg.reconnect_initial_seconds
        fruitless = 0
        timeout = httpx2.Timeout(self.cfg.request_timeout, read=self.cfg.stream_read_timeout)
        while True:
            before = self.events
            reason = "the stream ended"
            try:
                async with await self.rt.stream_client.beta.sessions.events.stream(self.sid, timeout=timeout) as stream:
                    await self._backfill()
                    await self._act()
                    async for event in stream:
                        if self._ingest(event):
                            await self._act()
            except (httpx2.HTTPError, anthropic.APIError) as exc:
                if isinstance(exc, anthropic.APIStatusError) and 400 <= exc.status_code < 500 \
                        and exc.status_code not in _RETRYABLE_4XX:
                    if exc.status_code == 404:
                        raise await self._close_with(SessionFailed(
                            f"the agent session {self.sid} no longer exists", reason="session_gone",
                            session_id=self.sid)) from exc
                    raise SessionFailed(f"the Managed Agents API refused to stream session {self.sid}: "
                                        f"{redact(_api_message(exc))}", reason="stream_refused",
                                        session_id=self.sid) from exc
                reason = _status_text(exc)
            fruitless = 0 if self.events > before else fruitless + 1
            if fruitless > self.cfg.max_reconnects_without_progress:
                raise SessionRetryable(f"lost contact with agent session {self.sid} ({reason}); the job will be "
                                       "retried and resume it", reason="unreachable", session_id=self.sid)
            if self.events > before:
                backoff = self.cfg.reconnect_initial_seconds
            log.info("session %s: stream dropped (%s); reconnecting in %.1fs", self.sid, reason, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.cfg.reconnect_max_seconds)

    async def _backfill(self) -> None:
        kwargs: dict[str, Any] = {"order": "asc", "limit": 1000, "timeout": self.cfg.request_timeout}
        if self.watermark is not None:
            kwargs["created_at_gte"] = self.watermark
        async for event in self.rt.client.beta.sessions.events.list(self.sid, **kwargs):
            self._ingest(event)

    # -- events → state ------------------------------------------------------------------------
    def _ingest(self, ev: Any) -> bool:
        """Fold one event into the state; False for a duplicate or a preview."""
        event_id = getattr(ev, "id", None)
        if event_id is None or not self.seen.add(event_id):
            return False
        self.events += 1
        processed = getattr(ev, "processed_at", None)
        if processed is not None and (self.watermark is None or processed > self.watermark):
            self.watermark = processed
        if self.rt.on_event is not None:
            self.rt.on_event(self.sid, ev)
        t = ev.type
        if t == "agent.custom_tool_use":
            if event_id not in self.answered:
                self.tool_uses[event_id] = (ev.name, ev.input)
        elif t == "user.custom_tool_result":
            self._mark_answered(ev.custom_tool_use_id)
        elif t in ("agent.tool_use", "agent.mcp_tool_use"):
            if getattr(ev, "evaluated_permission", None) == "ask":
                self.confirmations.add(event_id)
        elif t == "user.tool_confirmation":
            self.confirmations.discard(ev.tool_use_id)
            self.answered.add(ev.tool_use_id)
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
            self._on_error(ev)
        elif t == "session.usage":
            self._set_usage(ev.usage)
        elif t == "agent.message" and getattr(ev, "session_thread_id", None) is None:
            text = "".join(getattr(b, "text", "") or "" for b in ev.content)
            self.final_message = text[:4000]
        elif t.startswith("session.thread_"):
            log.debug("session %s: %s %s", self.sid, t, getattr(ev, "agent_name", ""))
        return True

    def _mark_answered(self, event_id: str) -> None:
        self.answered.add(event_id)
        self.tool_uses.pop(event_id, None)
        if event_id in self.pending:
            self.pending.remove(event_id)

    def _on_error(self, ev: Any) -> None:
        err = ev.error
        kind = err.type
        retry = getattr(getattr(err, "retry_status", None), "type", None)
        self.errors.append(kind)
        if len(self.errors) > 50:
            del self.errors[:-50]
        extra = getattr(err, "repository_url", None) or getattr(err, "mcp_server_name", None) or ""
        log.warning("session %s: %s (%s%s): %s", self.sid, kind, retry, f", {extra}" if extra else "",
                    redact(err.message or ""))
        if kind.startswith("repository_") and self.failure is None:
            what = {
                "repository_authentication_error": "the repository token was not accepted",
                "repository_forbidden_error": "access to the repository was refused",
                "repository_not_found_error": "the repository was not found",
                "repository_checkout_error": f"commit {self.spec.head_sha[:12]} could not be checked out",
                "repository_clone_error": "the repository could not be cloned",
            }.get(kind, kind)
            self.failure = SessionFailed(
                f"the agent session could not mount {self.spec.repo}: {what} ({redact(err.message or kind)}); "
                "it was stopped rather than let it work without the code", reason=kind, session_id=self.sid)
            self.interrupt_needed = True
        elif retry == "terminal":
            self.terminal_error = f"{kind}: {redact(err.message or '')}"

    def _set_usage(self, usage: Any) -> None:
        if usage is None:
            return
        self.usage = usage.model_dump(mode="json", exclude_none=True) if hasattr(usage, "model_dump") else dict(usage)
        cost = getattr(usage, "list_cost", None)
        if cost is not None and getattr(cost, "amount", None) is not None:
            try:
                self.list_cost_cents = int(cost.amount)
            except ValueError:
                pass

    # -- state → actions -----------------------------------------------------------------------
    async def _act(self) -> None:
        if self.failure is not None:
            if self.interrupt_needed and self.status != "terminated":
                self.interrupt_needed = False
                await self._interrupt(self.failure.reason)
            raise await self._close_with(self.failure)
        if self.status == "terminated":
            if self.terminal_error is None and self.stop_reason is not None and self.stop_reason.type == "end_turn":
                raise _Finished(self._outcome("end_turn"))
            raise await self._close_with(SessionRetryable(
                f"the agent session ended early ({self.terminal_error or 'terminated'}); the job will be retried "
                "with a new session", reason="terminated", session_id=self.sid))
        if not self.task_seen and not self.task_sent:
            await self._send_task()
            return
        if self.status != "idle" or self.stop_reason is None:
            return
        reason = self.stop_reason.type
        if reason == "requires_action":
            for event_id in list(self.pending):
                if event_id not in self.answered:
                    await self._answer(event_id)
        elif reason == "end_turn" and self.task_seen:
            raise _Finished(self._outcome("end_turn"))
        elif reason == "budget_reached":
            raise _Finished(self._outcome("budget_reached", budget_reached=True))
        elif reason == "retries_exhausted":
            last = self.errors[-1] if self.errors else "repeated errors"
            raise await self._close_with(SessionRetryable(
                f"the agent session gave up after the platform's retries were exhausted ({last}); the job will be "
                "retried with a new session", reason="retries_exhausted", session_id=self.sid))
        elif reason == "refusal":
            details = self.stop_details
            category = getattr(details, "category", None) or "unspecified"
            explanation = getattr(details, "explanation", None)
            raise await self._close_with(SessionFailed(
                f"the model declined the task (refusal, category {category})"
                + (f": {explanation}" if explanation else ""), reason="refusal", session_id=self.sid))

    def _outcome(self, stop_reason: str, *, budget_reached: bool = False) -> SessionOutcome:
        return SessionOutcome(
            session_id=self.sid, stop_reason=stop_reason, budget_reached=budget_reached, usage=self.usage,
            list_cost_cents=self.list_cost_cents, tool_calls=self.tool_calls, resumed=self.resumed,
            final_message=self.final_message, duration_seconds=time.monotonic() - self.started,
            errors=list(self.errors), token_rotations=self.rotations)

    async def _send_task(self) -> None:
        event = {"type": "user.message", "content": [{"type": "text", "text": self.spec.task}]}
        await self.rt.send_client.beta.sessions.events.send(self.sid, events=[event])
        self.task_sent = True

    async def _answer(self, event_id: str) -> None:
        if event_id in self.confirmations:
            await self._send(event_id, {"type": "user.tool_confirmation", "tool_use_id": event_id, "result": "deny",
                                        "deny_message": "prmedic does not approve tool calls interactively."})
            self.confirmations.discard(event_id)
            return
        use = self.tool_uses.get(event_id) or await self._find_tool_use(event_id)
        if use is None:
            log.error("session %s: requires_action for unknown event %s; leaving it", self.sid, event_id)
            self.answered.add(event_id)
            return
        name, raw = use
        record, fresh = await self.rt.store.claim_tool_call(self.sid, event_id, name)
        if fresh:
            self.tool_calls += 1
            record = await self._run_handler(event_id, name, raw)
        elif record.state != "answered":
            # A process died while this handler ran: its effect is unknown, so it is not run again.
            record = await self.rt.store.answer_tool_call(
                event_id, f"The app restarted while {name} was running, so whether it took effect is unknown. Check "
                "(for example on the pull request) before calling it again.", True)
        else:
            log.info("session %s: re-sending the stored result of %s (%s)", self.sid, name, event_id)
        text = record.result or "OK"
        await self._send(event_id, {"type": "user.custom_tool_result", "custom_tool_use_id": event_id,
                                    "content": [{"type": "text", "text": text}], "is_error": record.is_error})
        if self.job_stopped is not None:
            # The job was stopped by another process: stop now rather than at the worker's next poll.
            self.rt.store.announce_stopped({self.spec.job_id: self.job_stopped})

    async def _run_handler(self, event_id: str, name: str, raw: Any) -> ToolCallRecord:
        """Run a claimed tool call and store its result, unless the job is no longer running
        (superseded by a push, cancelled): then the call is refused, so a stopped session never
        publishes. A handler under way when the task is cancelled (a worker shutting down)
        finishes and stores its result first: the next worker must not find its effect unknown."""
        job = await self.rt.store.get_job(self.spec.job_id)
        if job is None or job.state is not JobState.running:
            why = f"was {job.state.value}" if job is not None else "no longer exists"
            log.info("session %s: %s refused: job %d %s", self.sid, name, self.spec.job_id, why)
            self.job_stopped = job.state if job is not None else JobState.cancelled
            return await self.rt.store.answer_tool_call(
                event_id, f"Refused: this job {why} (a newer push or a stop request replaced it), so {name} was "
                "not run and nothing was written. Stop now.", True)

        async def run() -> ToolCallRecord:
            answer = await self.tools.call(self.ctx, name, raw)
            return await self.rt.store.answer_tool_call(event_id, answer.text, answer.is_error)

        call = asyncio.ensure_future(run())
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            await asyncio.wait([call])
            raise

    async def _send(self, event_id: str, event: dict[str, Any]) -> None:
        try:
            await self.rt.send_client.beta.sessions.events.send(self.sid, events=[event])
        except anthropic.BadRequestError as exc:
            # The session no longer waits for it (answered already, or dropped by an interrupt).
            log.warning("session %s: answer to %s refused: %s", self.sid, event_id, redact(_api_message(exc)))
        self._mark_answered(event_id)

    async def _find_tool_use(self, event_id: str) -> tuple[str, Any] | None:
        async for ev in self.rt.client.beta.sessions.events.list(self.sid, types=["agent.custom_tool_use"],
                                                                 limit=1000):
            if ev.id == event_id:
                return ev.name, ev.input
        return None

    # -- side tasks ----------------------------------------------------------------------------
    async def _interrupt(self, why: str) -> None:
        try:
            await self.rt.send_client.beta.sessions.events.send(
                self.sid, events=[{"type": "user.interrupt"}], timeout=self.cfg.interrupt_timeout)
            log.info("session %s interrupted: %s", self.sid, why)
        except Exception as exc:  # noqa: BLE001 - best effort
            log.warning("session %s: interrupt failed (%s): %s", self.sid, why, redact(str(exc)))

    async def _rotate_tokens(self, *, immediately: bool) -> None:
        interval = max(self.cfg.token_refresh_seconds, 0.01)
        if not immediately:
            await asyncio.sleep(interval)
        while True:
            try:
                token = await self.token_provider()
                if token != self.last_token:
                    # Shielded: stopping the rotation lets an update already sent land and be counted.
                    self.token_update = update = asyncio.ensure_future(self._update_token(token))
                    try:
                        await asyncio.shield(update)
                    finally:
                        if update.done():
                            self.token_update = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - try again at the next tick
                log.warning("session %s: token refresh failed: %s", self.sid, redact(str(exc)))
            await asyncio.sleep(interval)

    async def _update_token(self, token: str) -> None:
        if self.resource_id is None:
            session = await self.rt.client.beta.sessions.retrieve(self.sid, timeout=self.cfg.request_timeout)
            self.resource_id = _repository_resource_id(session)
        if self.resource_id is not None:
            await self.rt.client.beta.sessions.resources.update(
                self.resource_id, session_id=self.sid, authorization_token=token, timeout=self.cfg.request_timeout)
            self.last_token = token
            self.rotations += 1
            log.info("session %s: repository token refreshed", self.sid)

    async def _stop_rotation(self, rotation: asyncio.Task[None]) -> None:
        """Stop rotating the token before the outcome is recorded: no update lands after it, and
        one already under way is waited for, so `rotations` counts every update the session got."""
        rotation.cancel()
        await asyncio.wait([rotation])
        update = self.token_update
        if update is not None:
            await asyncio.wait([update])
            if not update.cancelled() and update.exception() is not None:
                log.warning("session %s: token refresh failed: %s", self.sid, redact(str(update.exception())))

    async def _final_usage(self) -> None:
        try:
            session = await self.rt.client.beta.sessions.retrieve(self.sid, timeout=self.cfg.request_timeout)
        except anthropic.APIError as exc:
            log.warning("session %s: cannot read the final usage: %s", self.sid, _status_text(exc))
            return
        self._set_usage(getattr(session, "usage", None))


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} seconds"
    return f"{seconds / 60:g} minutes"


def _repository_resource_id(session: Any) -> str | None:
    for resource in getattr(session, "resources", None) or ():
        if getattr(resource, "type", None) == "github_repository":
            return resource.id
    return None


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    try:
        if "retry-after-ms" in headers:
            return min(float(headers["retry-after-ms"]) / 1000, 60.0)
        if "retry-after" in headers:
            return min(float(headers["retry-after"]), 60.0)
    except ValueError:
        return None
    return None


def _api_message(exc: anthropic.APIStatusError) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return f"{exc.status_code} {err['message']}"
    return f"{exc.status_code} {exc.message}"


def _status_text(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    name = exc.__class__.__name__
    return f"{name} {status}" if status else f"{name}: {redact(str(exc))[:200]}"
