"""The SQLite backend's connection, its checkpointer thread, and group commit of deliveries.

Statements run on one connection, on the event loop itself: in WAL mode with
`synchronous=NORMAL` a commit is an append to the log, durable across a crash of the
process, and takes microseconds, far less than handing each one to a thread. Deliveries that
arrive in the same turn of the event loop are committed together in one transaction (group
commit). The slow part, checkpointing the log into the database (with fsync), runs in a
background thread on its own connection, so it never stalls the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from app.store.base import Store, StoreUnavailable
from app.store.models import Delivery, InstallationChange, JobState, NewJob, RecordResult
from app.store.sqlite.schema import migrate
from app.store.sqlite.supersede import supersede_older

T = TypeVar("T")
log = logging.getLogger("prmedic.store")


@dataclass(slots=True)
class PendingDelivery:
    delivery: Delivery
    jobs: Sequence[NewJob]
    installations: Sequence[InstallationChange]
    max_attempts: int
    future: asyncio.Future[RecordResult]


class SQLiteBase(Store):
    """Plumbing shared by the table groups that make up `SQLiteStore`: the connection and the
    group-commit writer of `record_delivery`."""

    def __init__(self, path: str, *, checkpoint_seconds: float = 1.0) -> None:
        super().__init__()
        self.path = path
        self.checkpoint_seconds = checkpoint_seconds
        self._db: sqlite3.Connection | None = None
        self._pending: list[PendingDelivery] = []
        self._flush_scheduled = False
        self._checkpointer: threading.Thread | None = None
        self._closing = threading.Event()
        self._locks: dict[str, asyncio.Lock] = {}
        self.schema_version: int | None = None

    # -- plumbing -----------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite error: {exc}") from exc

    def _connect(self) -> None:
        if self.path not in ("", ":memory:"):
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.row_factory = sqlite3.Row
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal" and self.path not in ("", ":memory:"):
            raise StoreUnavailable(f"could not put {self.path} in WAL mode (got {mode})")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=10000")
        try:
            self.schema_version = migrate(db)
        except BaseException:
            db.close()
            raise
        if self.path not in ("", ":memory:"):
            db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="sqlite-checkpoint", daemon=True)
            self._checkpointer.start()
        self._db = db

    def _checkpoint_loop(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        try:
            while not self._closing.wait(self.checkpoint_seconds):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    log.warning("WAL checkpoint failed: %s", exc)
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            db.close()

    async def open(self) -> None:
        await self._run(self._connect)

    async def close(self) -> None:
        if self._pending:
            self._flush()
        if self._db is not None:
            self._db.close()
            self._db = None
        self._closing.set()
        if self._checkpointer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._checkpointer.join)
            self._checkpointer = None

    async def ping(self) -> None:
        await self._run(lambda: self._conn.execute("SELECT 1").fetchone())

    def describe(self) -> dict[str, Any]:
        return {"backend": "sqlite", "path": self.path, "schema_version": self.schema_version}

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        # A database file lives on one host, where one-time work (syncing the agents) runs in the server's
        # process: a lock of this store object is enough (another process on the file does not share it).
        async with self._locks.setdefault(name, asyncio.Lock()):
            yield

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreUnavailable("the store is not open")
        return self._db

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._conn
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    # -- intake (group commit) ----------------------------------------------
    async def record_delivery(
        self,
        delivery: Delivery,
        jobs: Sequence[NewJob] = (),
        installations: Sequence[InstallationChange] = (),
        *,
        max_attempts: int = 3,
    ) -> RecordResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RecordResult] = loop.create_future()
        self._pending.append(PendingDelivery(delivery, jobs, installations, max_attempts, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        """Commit every delivery queued during this turn of the loop in one transaction."""
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        stopped: dict[int, JobState] = {}
        try:
            results = self._transaction(lambda db: [_write(db, p, stopped) for p in batch])
        except Exception as exc:  # noqa: BLE001 - every waiter must hear about it
            error = StoreUnavailable(f"SQLite error: {exc}")
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        for pending, result in zip(batch, results):
            if not pending.future.done():
                pending.future.set_result(result)
        if any(result.job_ids for result in results):
            self.jobs_recorded.set()
        self.announce_stopped(stopped)


def _write(db: sqlite3.Connection, pending: PendingDelivery, stopped: dict[int, JobState]) -> RecordResult:
    d = pending.delivery
    cursor = db.execute(
        "INSERT OR IGNORE INTO deliveries (delivery_id, event, action, received_at) VALUES (?, ?, ?, ?)",
        (d.delivery_id, d.event, d.action, d.received_at),
    )
    if cursor.rowcount == 0:
        return RecordResult(duplicate=True)
    job_ids = []
    for job in pending.jobs:
        cursor = db.execute(
            "INSERT INTO jobs (kind, repo, installation_id, pr_number, head_sha, supersede_key, payload,"
            " state, max_attempts, delivery_id, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
            (
                job.kind.value, job.repo, job.installation_id, job.pr_number, job.head_sha,
                job.supersede_key, orjson.dumps(job.payload), pending.max_attempts, d.delivery_id,
                d.received_at, d.received_at,
            ),
        )
        job_ids.append(cursor.lastrowid)
        if job.supersede_key:
            supersede_older(db, job.supersede_key, cursor.lastrowid, job.kind.value, job.head_sha,
                            time.time(), stopped)
    for change in pending.installations:
        _apply_installation(db, change, d.received_at)
    return RecordResult(duplicate=False, job_ids=job_ids)


def _apply_installation(db: sqlite3.Connection, change: InstallationChange, now: float) -> None:
    row = db.execute(
        "SELECT repositories FROM installations WHERE installation_id = ?", (change.installation_id,)
    ).fetchone()
    repos = set(orjson.loads(row["repositories"])) if row else set()
    repos |= set(change.repositories_added)
    repos -= set(change.repositories_removed)
    db.execute(
        "INSERT INTO installations (installation_id, account, account_type, active, suspended,"
        " repository_selection, repositories, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (installation_id) DO UPDATE SET"
        " account = coalesce(excluded.account, account),"
        " account_type = coalesce(excluded.account_type, account_type),"
        " active = excluded.active, suspended = excluded.suspended,"
        " repository_selection = coalesce(excluded.repository_selection, repository_selection),"
        " repositories = excluded.repositories, updated_at = excluded.updated_at",
        (
            change.installation_id, change.account, change.account_type, int(change.active),
            int(change.suspended), change.repository_selection, orjson.dumps(sorted(repos)).decode(), now,
        ),
    )
