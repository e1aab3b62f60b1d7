"""Keeps a running session's repository token fresh (docs/architecture.md, "Sessions").

Every `interval` seconds the token provider is asked again and, if it hands out a different
token, the session's repository resource is updated. With `GitHubApp`'s cache (a token is
re-minted when it has < 10 minutes left) a period under 10 minutes keeps the container's token
valid for any session length.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from app.logs import redact
from app.sessions.api import repository_resource_id

log = logging.getLogger("prmedic.sessions")


class TokenRotation:
    """The rotation task of one session; `count` is the number of updates the session got."""

    def __init__(self, client: Any, session_id: str, token_provider: Callable[[], Awaitable[str]], *,
                 last_token: str | None, resource_id: str | None, interval: float, request_timeout: float) -> None:
        self.client = client
        self.sid = session_id
        self.token_provider = token_provider
        self.last_token = last_token
        self.resource_id = resource_id
        self.interval = max(interval, 0.01)
        self.request_timeout = request_timeout
        self.count = 0
        self.update: asyncio.Future[None] | None = None  # an update under way
        self.task: asyncio.Task[None] | None = None

    def start(self, *, immediately: bool) -> None:
        self.task = asyncio.create_task(self._rotate(immediately=immediately), name=f"rotate-{self.sid}")

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def stop(self) -> None:
        """Stop rotating the token before the outcome is recorded: no update lands after it, and
        one already under way is waited for, so `count` counts every update the session got."""
        if self.task is None:
            return
        self.task.cancel()
        await asyncio.wait([self.task])
        update = self.update
        if update is not None:
            await asyncio.wait([update])
            if not update.cancelled() and update.exception() is not None:
                log.warning("session %s: token refresh failed: %s", self.sid, redact(str(update.exception())))

    async def _rotate(self, *, immediately: bool) -> None:
        if not immediately:
            await asyncio.sleep(self.interval)
        while True:
            try:
                token = await self.token_provider()
                if token != self.last_token:
                    # Shielded: stopping the rotation lets an update already sent land and be counted.
                    self.update = update = asyncio.ensure_future(self._update(token))
                    try:
                        await asyncio.shield(update)
                    finally:
                        if update.done():
                            self.update = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - try again at the next tick
                log.warning("session %s: token refresh failed: %s", self.sid, redact(str(exc)))
            await asyncio.sleep(self.interval)

    async def _update(self, token: str) -> None:
        if self.resource_id is None:
            session = await self.client.beta.sessions.retrieve(self.sid, timeout=self.request_timeout)
            self.resource_id = repository_resource_id(session)
        if self.resource_id is not None:
            await self.client.beta.sessions.resources.update(
                self.resource_id, session_id=self.sid, authorization_token=token, timeout=self.request_timeout)
            self.last_token = token
            self.count += 1
            log.info("session %s: repository token refreshed", self.sid)
