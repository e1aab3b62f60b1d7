"""The PostgreSQL backend's pool, its schema upgrade at `open()`, the listener, and group commit of deliveries.

Statements run on an asyncpg pool. Deliveries recorded while a commit waits for a connection join
its transaction (group commit, the SQL of a batch in `intake`): under load many deliveries share one
commit, each one committed before `record_delivery` returns (so before the server answers 202). A
delivery id is the primary key of `deliveries`, so copies arriving at two replicas at once record one:
the second insert waits for the first to commit, then does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg

from app.store.base import SchemaTooNew, Store, StoreUnavailable
from app.store.models import (
    Delivery,
    InstallationChange,
    JobState,
    NewJob,
    RecordResult,
)
from app.store.postgres.intake import PendingDelivery, write_batch
from app.store.postgres.notify import Listener, notify, parse, payloads
from app.store.postgres.schema import migrate

T = TypeVar("T")
log = logging.getLogger("prmedic.store")

# What reaching or writing the database can raise; all of it becomes StoreUnavailable.
DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# Two transactions that lock the same jobs in a different order: PostgreSQL aborts one; it is run again.
RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
TX_ATTEMPTS = 4


def safe_url(dsn: str) -> str:
    """The database URL without its password (for messages and /healthz)."""
    parts = urlsplit(dsn)
    host = parts.hostname or "localhost"
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for `name`."""
    return int.from_bytes(hashlib.blake2b(f"prmedic:{name}".encode(), digest_size=8).digest(), "big", signed=True)


async def _reset(conn: asyncpg.Connection) -> None:
    """What a connection needs before going back to the pool: a rollback if a transaction was left open.
    (asyncpg's default also drops listeners, advisory locks and session settings, none of which the pool's
    connections keep, at the cost of a round trip on every release.)"""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class PostgresBase(Store):
    """Plumbing shared by the table groups that make up `PostgresStore`."""

    def __init__(self, dsn: str, *, pool_size: int = 10, acquire_timeout: float = 10.0) -> None:
        super().__init__()
        self.dsn = dsn
        self.pool_size = pool_size
        self.acquire_timeout = acquire_timeout
        self.schema_version: int | None = None
        # Identifies this store's own notifications, which it has acted on already.
        self.instance = uuid.uuid4().hex
        self._recorded = payloads(self.instance, recorded=True)[0]
        self._pool: asyncpg.Pool | None = None
        self._listener: Listener | None = None
        self._pending: list[PendingDelivery] = []
        # One group commit in flight per store: deliveries that arrive while it commits wait and go
        # together in the next one. Many small concurrent batches were slower: they queue on the
        # supersede rows' locks and on NOTIFY's commit lock, and each costs its own round trips.
        self._flusher: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    # -- open, close, ping ----------------------------------------------------
    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.pool_size,
                                                   timeout=self.acquire_timeout, reset=_reset)
        except DB_ERRORS as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL at {safe_url(self.dsn)}: {exc}") from exc
        try:
            async with self._connection() as conn:
                self.schema_version = await migrate(conn)
        except (SchemaTooNew, StoreUnavailable):
            await self._pool.close()
            self._pool = None
            raise
        self._listener = Listener(self.dsn, self._heard, self.jobs_recorded.set)
        await self._listener.start()

    async def close(self) -> None:
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def ping(self) -> None:
        await self._fetchval("SELECT 1")

    def describe(self) -> dict[str, Any]:
        pool = self._pool
        return {
            "backend": "postgresql", "url": safe_url(self.dsn), "schema_version": self.schema_version,
            "pool_size": self.pool_size,
            "pool_in_use": pool.get_size() - pool.get_idle_size() if pool is not None else 0,
            "listening": self._listener is not None and self._listener.conn is not None
            and not self._listener.conn.is_closed(),
        }

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        # A session-level advisory lock on one pooled connection; if that connection dies, the server
        # releases the lock with it. The body's own errors pass through untouched.
        if self._pool is None:
            raise StoreUnavailable("the store is not open")
        key = lock_key(name)
        conn: asyncpg.Connection | None = None
        try:
            conn = await self._pool.acquire(timeout=self.acquire_timeout)
            await conn.execute("SELECT pg_advisory_lock($1)", key)
        except BaseException as exc:
            if conn is not None:
                await self._pool.release(conn)
            if isinstance(exc, DB_ERRORS):
                raise StoreUnavailable(f"PostgreSQL error: {exc}") from exc
            raise
        try:
            yield
        finally:
            try:
                await conn.execute("SELECT pg_advisory_unlock($1)", key)
            except (*DB_ERRORS, asyncio.CancelledError) as exc:
                log.warning("could not release the lock %r; closing its connection, which does: %r", name, exc)
                conn.terminate()
                if isinstance(exc, asyncio.CancelledError):
                    raise
            finally:
                await self._pool.release(conn)

    # -- plumbing -----------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise StoreUnavailable("the store is not open")
        try:
            async with self._pool.acquire(timeout=self.acquire_timeout) as conn:
                yield conn
        except DB_ERRORS as exc:
            raise StoreUnavailable(f"PostgreSQL error: {exc}") from exc

    async def _tx(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `fn` in one transaction, again if PostgreSQL aborted it for a deadlock."""
        async with self._connection() as conn:
            for attempt in range(TX_ATTEMPTS):
                try:
                    async with conn.transaction():
                        return await fn(conn)
                except RETRYABLE:
                    if attempt == TX_ATTEMPTS - 1:
                        raise
        raise AssertionError("unreachable")

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self._connection() as conn:
            return await conn.fetch(sql, *args)

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        async with self._connection() as conn:
            return await conn.fetchrow(sql, *args)

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        async with self._connection() as conn:
            return await conn.fetchval(sql, *args)

    async def _notify(self, conn: asyncpg.Connection, *, recorded: bool = False,
                      stopped: dict[int, JobState] | None = None) -> None:
        await notify(conn, self.instance, recorded=recorded, stopped=stopped)

    def _heard(self, payload: str) -> None:
        sender, recorded, stopped = parse(payload)
        if sender == self.instance:
            return
        if recorded:
            self.jobs_recorded.set()
        self.announce_stopped(stopped)

    # -- intake (group commit) ----------------------------------------------
    async def record_delivery(
        self,
        delivery: Delivery,
        jobs: Sequence[NewJob] = (),
        installations: Sequence[InstallationChange] = (),
        *,
        max_attempts: int = 3,
    ) -> RecordResult:
        future: asyncio.Future[RecordResult] = asyncio.get_running_loop().create_future()
        self._pending.append(PendingDelivery(delivery, jobs, installations, max_attempts, future))
        if self._flusher is None:
            self._flusher = task = asyncio.create_task(self._flush_all())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        return await future

    async def _flush_all(self) -> None:
        try:
            while self._pending:
                await self._flush()
        finally:
            self._flusher = None

    def _take_batch(self) -> list[PendingDelivery]:
        batch, self._pending = self._pending, []
        return batch

    async def _flush(self) -> None:
        """Commit, in one transaction, every delivery recorded until a connection was free."""
        batch: list[PendingDelivery] = []
        stopped: dict[int, JobState] = {}
        try:
            async with self._connection() as conn:
                batch = self._take_batch()
                results = await self._commit(conn, batch, stopped)
        except BaseException as exc:
            batch = batch or self._take_batch()
            error = exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(f"PostgreSQL error: {exc}")
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        for pending, result in zip(batch, results):
            if not pending.future.done():
                pending.future.set_result(result)
        if any(result.job_ids for result in results):
            self.jobs_recorded.set()
        self.announce_stopped(stopped)

    async def _commit(self, conn: asyncpg.Connection, batch: list[PendingDelivery],
                      stopped: dict[int, JobState]) -> list[RecordResult]:
        for attempt in range(TX_ATTEMPTS):
            stopped.clear()
            try:
                async with conn.transaction():
                    results = await write_batch(conn, batch, stopped, self._recorded)
                    await self._notify(conn, stopped=stopped)
                return results
            except RETRYABLE:
                if attempt == TX_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")
