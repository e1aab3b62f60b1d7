"""Runs one Managed Agents session per job and watches many of them in one process: the I/O half
of a session (docs/architecture.md, "Sessions"); what the events mean and what to do about them
is `app/sessions/state.py`, which does no I/O.

The life of a session, as `SessionRun.run` drives it (`SessionRuntime.run`, in
`app/sessions/runtime.py`, makes one per job):

1. **Attach or create.** If the store has an open session for the job (a worker died and the job
   was leased again), the runner attaches to it. Otherwise it creates one: the agent pinned to
   a version, the repository mounted at the head commit with a read-only token for that one
   repository (none, and no token, for a spec that mounts nothing: the router's), a budget,
   metadata and a title. 429/529/5xx on create are retried with backoff;
   when the retries run out the job fails with a *transient* error (the worker retries it
   later). The session id is recorded in the store before anything is sent to it.
2. **Stream.** The event stream is opened *before* the history is read (`events.list`, asc,
   from the last `processed_at` seen), so nothing emitted in between is lost; events are
   de-duplicated by id (a bounded window per session). A dropped stream (transport error,
   5xx, or a clean EOF before the end) is reopened with backoff 0.5 s doubling to 10 s.
3. **Act on state, not on single events.** After each batch (the back-fill, then every live
   event) the runner asks the state for the next action (send the task, answer the pending
   custom tool calls and tool confirmations, finish, fail). A confirmation is allowed or denied by
   the operator's tool policy (`app/agents/tool_policy.py`), logged with the job, and counted in
   the outcome. Each custom tool call is claimed in the
   store before its handler runs and its result stored before it is sent, so a call runs at
   most once even across a restart: a stored result is re-sent, never re-executed, and a call
   whose process died mid-handler is answered with an error telling the agent to check before
   repeating it (its effect is unknown).
4. **End.** See `app/sessions/state.py` for which stop reasons and errors end a session how. Usage
   and list cost are taken from `session.usage` events and the final `sessions.retrieve`, and
   stored with the session.
5. **Stop.** Cancelling the pipeline task (supersede, `/stop`) sends `user.interrupt`
   (shielded, best effort) if the job was cancelled or superseded in the store; a worker that is
   merely shutting down leaves the session running for the next worker to resume (a tool handler
   under way finishes and stores its result first). A custom tool call of a job that is no longer
   running is refused, never run. A session that runs past `max_duration_seconds` is interrupted
   and the job fails.

The repository token is refreshed while the session runs (`app/sessions/rotation.py`); the
rotation stops before the outcome is recorded, so the outcome counts every update.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anthropic
import httpx2

from app.agents.tool_policy import decide
from app.errors import describe
from app.logs import redact
from app.sessions.api import (AMBIGUOUS_CREATE_STATUS, RETRYABLE_4XX, api_message, create_params, duration_text,
                              repository_resource_id, retry_after, status_text)
from app.sessions.errors import SessionFailed, SessionRetryable
from app.sessions.rotation import TokenRotation
from app.sessions.state import Answer, Confirm, Fail, Finish, SendTask, SessionState, ToolUse, Wait
from app.sessions.types import SessionOutcome, SessionSpec
from app.store import JobState, SessionRecord, ToolCallRecord
from app.tools.registry import ToolContext, ToolRegistry

if TYPE_CHECKING:
    from app.sessions.runtime import SessionRuntime

log = logging.getLogger("prmedic.sessions")

TokenProvider = Callable[[], Awaitable[str]]


class _Finished(Exception):
    def __init__(self, outcome: SessionOutcome) -> None:
        self.outcome = outcome


class SessionRun:
    """One session, from attach-or-create to its end; `SessionRuntime.run` makes one per job."""

    def __init__(self, runtime: SessionRuntime, spec: SessionSpec, ctx: ToolContext, tools: ToolRegistry,
                 token_provider: TokenProvider) -> None:
        self.rt = runtime
        self.cfg = runtime.settings
        self.spec = spec
        self.ctx = ctx
        self.tools = tools
        self.token_provider = token_provider
        self.state = SessionState(repo=spec.repo, head_sha=spec.head_sha, dedup_window=self.cfg.dedup_window)
        self.resource_id: str | None = None
        self.last_token: str | None = None
        self.started = time.monotonic()
        self.resumed = False
        self.tool_calls = 0
        self.threads_usage: list[tuple[str, dict[str, Any] | None]] | None = None
        self.rotation: TokenRotation | None = None
        self.job_stopped: JobState | None = None  # set when a tool call found the job no longer running

    @property
    def sid(self) -> str:
        return self.state.session_id

    @sid.setter
    def sid(self, session_id: str) -> None:
        self.state.session_id = session_id

    # -- top level -----------------------------------------------------------------------------
    async def run(self) -> SessionOutcome:
        record = await self._resumable()
        if record is not None and await self._attach(record.session_id):
            self.resumed = True
            created_at = record.created_at
        else:
            await self._create()
            created_at = time.time()
        self.ctx.session_id = self.sid
        limit = self.spec.max_duration_seconds or self.cfg.max_duration_seconds
        remaining = created_at + limit - time.time()
        self.rotation = rotation = TokenRotation(
            self.rt.client, self.sid, self.token_provider, last_token=self.last_token, resource_id=self.resource_id,
            interval=self.cfg.token_refresh_seconds, request_timeout=self.cfg.request_timeout)
        if self.spec.mount_repository:
            rotation.start(immediately=self.resumed)
        try:
            try:
                async with asyncio.timeout(max(remaining, 0.0)) as deadline:
                    await self._drive()
            except TimeoutError:
                if not deadline.expired():
                    raise
                await self._interrupt("maximum duration reached")
                setting = "" if self.spec.max_duration_seconds else " (setting PRMEDIC_SESSION_MAX_DURATION_SECONDS)"
                raise await self._close_with(SessionFailed(
                    f"the agent session ran longer than the maximum of {duration_text(limit)} and was stopped{setting}",
                    reason="max_duration", session_id=self.sid)) from None
        except _Finished as done:
            outcome = done.outcome
            await rotation.stop()
            outcome.token_rotations = rotation.count
            await self._final_usage()
            state = self.state
            outcome.usage, outcome.list_cost_cents = state.usage, state.list_cost_cents
            outcome.threads_usage = self.threads_usage
            await self.rt.store.close_session(self.sid, stop_reason=outcome.stop_reason, usage=state.usage,
                                              list_cost_cents=state.list_cost_cents,
                                              budget_reached=outcome.budget_reached)
            log.info("session %s for job %d ended: %s (cost %s cents, %d tool calls)", self.sid, self.spec.job_id,
                     outcome.stop_reason, state.list_cost_cents, self.tool_calls)
            return outcome
        except (SessionFailed, SessionRetryable) as exc:
            if exc.usage is None:
                exc.usage, exc.list_cost_cents = self.state.usage, self.state.list_cost_cents
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

    async def _resumable(self) -> SessionRecord | None:
        """The job's open session of this agent, to resume (a worker died while it ran). An open session
        of another agent that an earlier attempt left (a router's, a fix's verifier's) is interrupted and
        closed: it must not be resumed as this one. An `inner` session never resumes: its job's open
        session is the one that started it."""
        if self.spec.inner:
            return None
        keep: SessionRecord | None = None
        records = sorted(await self.rt.store.list_sessions(self.spec.job_id), key=lambda r: r.created_at, reverse=True)
        for record in records:
            if record.state != "open":
                continue
            if keep is None and record.agent_id in (None, self.spec.agent_id):
                keep = record
                continue
            try:
                await self.rt.send_client.beta.sessions.events.send(
                    record.session_id, events=[{"type": "user.interrupt"}], timeout=self.cfg.interrupt_timeout)
            except anthropic.AnthropicError as exc:
                log.info("job %d: could not interrupt session %s: %s", self.spec.job_id, record.session_id,
                         status_text(exc))
            await self.rt.store.close_session(record.session_id, stop_reason="abandoned",
                                              error="left open by an earlier attempt of the job")
        return keep

    async def _close_with(self, exc: SessionFailed | SessionRetryable) -> SessionFailed | SessionRetryable:
        """Close the session record (the retry of a job with a closed session makes a new one)."""
        usage, cost = self.state.usage, self.state.list_cost_cents
        exc.usage, exc.list_cost_cents = usage, cost
        await self.rt.store.close_session(self.sid, stop_reason=exc.reason, error=str(exc), usage=usage,
                                          list_cost_cents=cost)
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
        self.resource_id = repository_resource_id(session)
        log.info("job %d: resuming session %s (status %s)", self.spec.job_id, self.sid, session.status)
        return True

    async def _create(self) -> None:
        token = await self.token_provider() if self.spec.mount_repository else ""
        self.last_token = token
        params = create_params(self.spec, token, github_web_url=self.cfg.github_web_url)
        session = await self._find_orphan() if self.spec.job_attempt > 1 else None
        attempt = 0
        while session is None:
            attempt += 1
            try:
                session = await self.rt.create_client.beta.sessions.create(**params)
            except (anthropic.RateLimitError, anthropic.InternalServerError, anthropic.APIConnectionError) as exc:
                status = getattr(exc, "status_code", None)
                if status is None or status in AMBIGUOUS_CREATE_STATUS:
                    # The request may have created a session before it failed: look before retrying.
                    session = await self._find_orphan()
                    if session is not None:
                        break
                if attempt >= self.cfg.create_attempts:
                    raise SessionRetryable(
                        f"the Managed Agents API did not accept the session after {attempt} attempts "
                        f"(last: {status_text(exc)}); the job will be retried later", reason="create_failed") from exc
                delay = retry_after(exc) or min(self.cfg.create_backoff_seconds * 2 ** (attempt - 1),
                                                 self.cfg.create_backoff_cap) * random.uniform(0.75, 1.0)
                log.warning("job %d: creating the session failed (%s); attempt %d/%d in %.1fs", self.spec.job_id,
                            status_text(exc), attempt + 1, self.cfg.create_attempts, delay)
                await asyncio.sleep(delay)
            except anthropic.APIStatusError as exc:
                raise SessionFailed(f"the Managed Agents API refused to create the session: "
                                    f"{redact(api_message(exc))}", reason="create_refused") from exc
        self.sid = session.id
        self.resource_id = repository_resource_id(session)
        await self.rt.store.record_session(self.spec.job_id, self.sid, agent_id=self.spec.agent_id,
                                           agent_version=self.spec.agent_version)
        log.info("job %d: created session %s", self.spec.job_id, self.sid)

    async def _find_orphan(self) -> Any:
        """A live session this job created earlier that the store does not know (crash after create)."""
        try:
            page = await self.rt.client.beta.sessions.list(agent_id=self.spec.agent_id, order="desc", limit=50,
                                                           timeout=self.cfg.request_timeout)
        except anthropic.APIError as exc:
            log.warning("job %d: cannot look for an earlier session: %s", self.spec.job_id, status_text(exc))
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
            before = self.state.events
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
                        and exc.status_code not in RETRYABLE_4XX:
                    if exc.status_code == 404:
                        raise await self._close_with(SessionFailed(
                            f"the agent session {self.sid} no longer exists", reason="session_gone",
                            session_id=self.sid)) from exc
                    raise SessionFailed(f"the Managed Agents API refused to stream session {self.sid}: "
                                        f"{redact(api_message(exc))}", reason="stream_refused",
                                        session_id=self.sid) from exc
                reason = status_text(exc)
            fruitless = 0 if self.state.events > before else fruitless + 1
            if fruitless > self.cfg.max_reconnects_without_progress:
                raise SessionRetryable(f"lost contact with agent session {self.sid} ({reason}); the job will be "
                                       "retried and resume it", reason="unreachable", session_id=self.sid)
            if self.state.events > before:
                backoff = self.cfg.reconnect_initial_seconds
            log.info("session %s: stream dropped (%s); reconnecting in %.1fs", self.sid, reason, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.cfg.reconnect_max_seconds)

    async def _backfill(self) -> None:
        kwargs: dict[str, Any] = {"order": "asc", "limit": 1000, "timeout": self.cfg.request_timeout}
        if self.state.watermark is not None:
            kwargs["created_at_gte"] = self.state.watermark
        async for event in self.rt.client.beta.sessions.events.list(self.sid, **kwargs):
            self._ingest(event)


    def _ingest(self, ev: Any) -> bool:
        """Fold one event into the state (the event hook sees it first); False for a duplicate or
        a preview."""
        if not self.state.accept(ev):
            return False
        if self.rt.on_event is not None:
            self.rt.on_event(self.sid, ev)
        self.state.fold(ev)
        t = ev.type
        if t == "session.error":
            err = ev.error
            retry = getattr(getattr(err, "retry_status", None), "type", None)
            extra = getattr(err, "repository_url", None) or getattr(err, "mcp_server_name", None) or ""
            log.warning("session %s: %s (%s%s): %s", self.sid, err.type, retry, f", {extra}" if extra else "",
                        redact(err.message or ""))
        elif t.startswith("session.thread_"):
            log.debug("session %s: %s %s", self.sid, t, getattr(ev, "agent_name", ""))
        return True

    # -- state → actions -----------------------------------------------------------------------
    async def _act(self) -> None:
        tried: set[str] = set()
        while True:
            action = self.state.next_action()
            if isinstance(action, Wait):
                return
            if isinstance(action, SendTask):
                await self._send_task()
                return
            if isinstance(action, (Confirm, Answer)):
                if action.event_id in tried:  # it was not marked answered: never loop on it
                    return
                tried.add(action.event_id)
                await self._answer(action)
            elif isinstance(action, Finish):
                raise _Finished(self._outcome(action.stop_reason, budget_reached=action.budget_reached))
            elif isinstance(action, Fail):
                if action.interrupt:
                    self.state.mark_interrupted()
                    await self._interrupt(action.error.reason)
                raise await self._close_with(action.error)

    def _outcome(self, stop_reason: str, *, budget_reached: bool = False) -> SessionOutcome:
        state = self.state
        return SessionOutcome(
            session_id=self.sid, stop_reason=stop_reason, budget_reached=budget_reached, usage=state.usage,
            list_cost_cents=state.list_cost_cents, tool_calls=self.tool_calls, resumed=self.resumed,
            final_message=state.final_message, duration_seconds=time.monotonic() - self.started,
            errors=list(state.errors), token_rotations=self.rotation.count if self.rotation is not None else 0,
            confirmations=dict(state.confirmed))

    async def _send_task(self) -> None:
        event = {"type": "user.message", "content": [{"type": "text", "text": self.spec.task}]}
        await self.rt.send_client.beta.sessions.events.send(self.sid, events=[event])
        self.state.mark_task_sent()

    async def _answer(self, action: Answer | Confirm) -> None:
        event_id = action.event_id
        if isinstance(action, Confirm):
            await self._confirm(action)
            return
        use = action.use or await self._find_tool_use(event_id)
        if use is None:
            log.error("session %s: requires_action for unknown event %s; leaving it", self.sid, event_id)
            self.state.skip(event_id)
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

    async def _confirm(self, action: Confirm) -> None:
        """Allow or deny a tool waiting for a confirmation, by the operator's tool policy."""
        decision = decide(action.tool, self.cfg.tool_policy)
        label = action.tool.label if action.tool is not None else "unknown"
        log.log(logging.INFO if decision.allow else logging.WARNING,
                "job %d: tool confirmation for %s %s: %s", self.spec.job_id, label,
                "allowed" if decision.allow else "denied", decision.reason,
                extra={"job": self.spec.job_id, "session_id": self.sid, "tool_use_id": action.event_id, "tool": label,
                       "decision": "allow" if decision.allow else "deny"})
        event: dict[str, Any] = {"type": "user.tool_confirmation", "tool_use_id": action.event_id,
                                 "result": "allow" if decision.allow else "deny"}
        if not decision.allow:
            event["deny_message"] = decision.reason
        await self._send(action.event_id, event)
        self.state.mark_confirmed(action.event_id)

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
            log.warning("session %s: answer to %s refused: %s", self.sid, event_id, redact(api_message(exc)))
        self.state.mark_answered(event_id)


    async def _find_tool_use(self, event_id: str) -> ToolUse | None:
        async for ev in self.rt.client.beta.sessions.events.list(self.sid, types=["agent.custom_tool_use"],
                                                                 limit=1000):
            if ev.id == event_id:
                return ToolUse(ev.name, ev.input)
        return None

    # -- side tasks ----------------------------------------------------------------------------
    async def _interrupt(self, why: str) -> None:
        try:
            await self.rt.send_client.beta.sessions.events.send(
                self.sid, events=[{"type": "user.interrupt"}], timeout=self.cfg.interrupt_timeout)
            log.info("session %s interrupted: %s", self.sid, why)
        except Exception as exc:  # noqa: BLE001 - best effort
            log.warning("session %s: interrupt failed (%s): %s", self.sid, why, redact(str(exc)))

    async def _final_usage(self) -> None:
        try:
            session = await self.rt.client.beta.sessions.retrieve(self.sid, timeout=self.cfg.request_timeout)
        except anthropic.APIError as exc:
            log.warning("session %s: cannot read the final usage: %s", self.sid, status_text(exc))
            return
        self.state.set_usage(getattr(session, "usage", None))
        self.threads_usage = await self._threads_usage()

    async def _threads_usage(self) -> list[tuple[str, dict[str, Any] | None]] | None:
        """Each thread's agent model and usage, for the job's cost by model; None if unreadable."""
        found: list[tuple[str, dict[str, Any] | None]] = []
        try:
            async for thread in self.rt.client.beta.sessions.threads.list(self.sid, timeout=self.cfg.request_timeout):
                model = getattr(getattr(thread, "agent", None), "model", None)
                model_id = model if isinstance(model, str) else getattr(model, "id", None)
                usage = getattr(thread, "usage", None)
                found.append((model_id or "unknown",
                              usage.model_dump(mode="json", exclude_none=True) if hasattr(usage, "model_dump") else usage))
        except anthropic.APIError as exc:
            log.warning("session %s: cannot read its threads' usage: %s", self.sid, status_text(exc))
            return None
        return found or None
