"""The agent runtime of one process: the Managed Agents client and its connection pools, the cap
on concurrent sessions, and `run`, which drives one job's session to its end
(`app/sessions/runner.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2

from app.errors import PermanentError
from app.sessions.runner import SessionRun, TokenProvider
from app.sessions.types import SessionOutcome, SessionSettings, SessionSpec
from app.store import Store
from app.tools.registry import ToolContext, ToolRegistry

EventHook = Callable[[str, Any], None]


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
        if not spec.mount_repository:
            return _no_token
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
        session is interrupted if the job was cancelled or superseded. An `inner` session (a fix's
        verifier, started by a tool of the job's session) runs within its caller's slot of the cap.
        """
        if spec.inner:
            return await self._run(spec, ctx, tools, token_provider)
        async with self.semaphore:
            return await self._run(spec, ctx, tools, token_provider)

    async def _run(self, spec: SessionSpec, ctx: ToolContext, tools: ToolRegistry | None,
                   token_provider: TokenProvider | None) -> SessionOutcome:
        self.active += 1
        try:
            run = SessionRun(self, spec, ctx, tools or self.tools, token_provider or self.token_provider(spec))
            return await run.run()
        finally:
            self.active -= 1
            if ctx.progress is not None:
                await ctx.progress.aclose()


async def _no_token() -> str:
    """A session without a repository needs no token: none is minted."""
    return ""
