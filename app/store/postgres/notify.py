"""Wake-ups across replicas: `LISTEN/NOTIFY` on one channel.

A store that records jobs, or stops running ones (supersede, cancel), sends a notification inside the
same transaction, so PostgreSQL delivers it only once the change is committed. Every store listens on
one dedicated connection (`Listener`), reconnected when it drops; the worker's poll stays the fallback
for anything missed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

import asyncpg
import orjson

from app.store.models import JobState

log = logging.getLogger("prmedic.store")

CHANNEL = "prmedic_jobs"
# PostgreSQL refuses payloads of 8000 bytes or more: stopped jobs are sent in chunks well below that.
_STOPPED_PER_MESSAGE = 200


def payloads(sender: str, *, recorded: bool = False, stopped: Mapping[int, JobState] | None = None) -> list[str]:
    """The notifications that tell other stores about one commit (none when nothing happened)."""
    items = [(str(job_id), state.value) for job_id, state in (stopped or {}).items()]
    chunks = [dict(items[i:i + _STOPPED_PER_MESSAGE]) for i in range(0, len(items), _STOPPED_PER_MESSAGE)]
    messages = [{"from": sender, "stopped": chunk} for chunk in chunks]
    if recorded:
        if messages:
            messages[0]["recorded"] = True
        else:
            messages.append({"from": sender, "recorded": True})
    return [orjson.dumps(m).decode() for m in messages]


async def notify(conn: asyncpg.Connection, sender: str, *, recorded: bool = False,
                 stopped: Mapping[int, JobState] | None = None) -> None:
    for payload in payloads(sender, recorded=recorded, stopped=stopped):
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)


def parse(payload: str) -> tuple[str, bool, dict[int, JobState]]:
    """(sender, jobs recorded?, stopped jobs) of one notification."""
    data = orjson.loads(payload)
    stopped = {int(job_id): JobState(state) for job_id, state in (data.get("stopped") or {}).items()}
    return str(data.get("from", "")), bool(data.get("recorded")), stopped


class Listener:
    """One connection that LISTENs on `CHANNEL` and hands each payload to `on_message`; when the
    connection drops (or stops answering the keepalive) it is replaced, and `on_reconnect` is called,
    since notifications sent meanwhile are lost."""

    def __init__(self, dsn: str, on_message: Callable[[str], None], on_reconnect: Callable[[], None], *,
                 keepalive_seconds: float = 30.0, connect_timeout: float = 10.0) -> None:
        self.dsn = dsn
        self.on_message = on_message
        self.on_reconnect = on_reconnect
        self.keepalive_seconds = keepalive_seconds
        self.connect_timeout = connect_timeout
        self.conn: asyncpg.Connection | None = None
        self.reconnects = 0
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect (so that a store is listening once `open()` returns), then supervise in the background."""
        try:
            await self._connect()
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("cannot LISTEN on PostgreSQL (%s); other replicas' jobs are found by polling until it can", exc)
        self._task = asyncio.create_task(self._supervise(), name="postgres-listener")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.conn.close(), 5)
            self.conn = None

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout)
        self._lost = lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, self._heard)
        self.conn = conn

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            self.on_message(payload)
        except Exception:
            log.exception("could not handle a PostgreSQL notification: %r", payload[:200])

    async def _alive(self) -> bool:
        """Wait up to one keepalive period; False when the connection dropped or does not answer."""
        if self.conn is None or self.conn.is_closed():
            return False
        try:
            await asyncio.wait_for(self._lost.wait(), self.keepalive_seconds)
            return False
        except TimeoutError:
            pass
        try:
            await asyncio.wait_for(self.conn.execute("SELECT 1"), self.connect_timeout)
            return True
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False

    async def _supervise(self) -> None:
        delay = 0.2
        while True:
            if await self._alive():
                continue
            if self.conn is not None:
                log.warning("the PostgreSQL listener connection dropped; reconnecting")
                self.conn.terminate()
                self.conn = None
            try:
                await self._connect()
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("cannot LISTEN on PostgreSQL: %s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            delay = 0.2
            self.reconnects += 1
            self.on_reconnect()
