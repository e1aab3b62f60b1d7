"""The embedded SQLite backend (WAL) with group commit for webhook intake.

Statements run on one connection, on the event loop itself: in WAL mode with
`synchronous=NORMAL` a commit is an append to the log, durable across a crash of the
process (the anchor's definition of "committed"), and takes microseconds, far less than
handing each one to a thread. Deliveries that arrive in the same turn of the event loop
are committed together in one transaction (group commit). The slow part, checkpointing
the log into the database (with fsync), runs in a background thread on its own
connection, so it never stalls the loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from app.store.base import Store, StoreUnavailable
from app.store.models import (
    Delivery,
    FixProposal,
    Installation,
    InstallationChange,
    Job,
    JobKind,
    JobState,
    NewJob,
    PullReviewState,
    RecordResult,
    SessionRecord,
    ToolCallRecord,
)

T = TypeVar("T")
log = logging.getLogger("prmedic.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    action      TEXT,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT NOT NULL,
    repo             TEXT NOT NULL,
    installation_id  INTEGER,
    pr_number        INTEGER,
    head_sha         TEXT,
    supersede_key    TEXT,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    last_error       TEXT,
    lease_owner      TEXT,
    lease_expires_at REAL,
    run_after        REAL NOT NULL DEFAULT 0,
    delivery_id      TEXT,
    result           TEXT,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL
);
CREATE INDEX IF NOT EXISTS jobs_runnable ON jobs (state, run_after);
CREATE INDEX IF NOT EXISTS jobs_supersede ON jobs (supersede_key, state);
CREATE TABLE IF NOT EXISTS installations (
    installation_id      INTEGER PRIMARY KEY,
    account              TEXT,
    account_type         TEXT,
    active               INTEGER NOT NULL,
    suspended            INTEGER NOT NULL,
    repository_selection TEXT,
    repositories         TEXT NOT NULL,
    updated_at           REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS agent_sessions (
    session_id      TEXT PRIMARY KEY,
    job_id          INTEGER NOT NULL,
    agent_id        TEXT,
    agent_version   INTEGER,
    state           TEXT NOT NULL DEFAULT 'open',
    stop_reason     TEXT,
    error           TEXT,
    usage           TEXT,
    list_cost_cents INTEGER,
    budget_reached  INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_sessions_job ON agent_sessions (job_id, state);
CREATE TABLE IF NOT EXISTS tool_calls (
    event_id    TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL,
    result      TEXT,
    is_error    INTEGER NOT NULL DEFAULT 0,
    started_at  REAL NOT NULL,
    answered_at REAL
);
CREATE INDEX IF NOT EXISTS tool_calls_session ON tool_calls (session_id);
CREATE TABLE IF NOT EXISTS pull_reviews (
    repo       TEXT NOT NULL,
    pr_number  INTEGER NOT NULL,
    state      TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (repo, pr_number)
);
CREATE TABLE IF NOT EXISTS fix_attempts (
    repo       TEXT NOT NULL,
    pr_number  INTEGER NOT NULL,
    root_sha   TEXT NOT NULL,
    job_id     INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (repo, pr_number, root_sha, job_id)
);
CREATE TABLE IF NOT EXISTS fix_proposals (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    repo        TEXT NOT NULL,
    pr_number   INTEGER NOT NULL,
    root_sha    TEXT NOT NULL,
    base_sha    TEXT NOT NULL,
    fix_sha     TEXT,
    branch      TEXT,
    delivery    TEXT NOT NULL,
    url         TEXT,
    job_id      INTEGER,
    outcome     TEXT NOT NULL,
    created_at  REAL NOT NULL,
    resolved_at REAL
);
CREATE INDEX IF NOT EXISTS fix_proposals_sha ON fix_proposals (repo, fix_sha);
CREATE INDEX IF NOT EXISTS fix_proposals_branch ON fix_proposals (repo, branch);
"""

JOB_COLUMNS = (
    "id, kind, repo, installation_id, pr_number, head_sha, supersede_key, payload, state, attempts,"
    " max_attempts, last_error, lease_owner, lease_expires_at, run_after, delivery_id, result,"
    " created_at, updated_at, started_at, finished_at"
)
UNFINISHED = ("queued", "running")


@dataclass(slots=True)
class _PendingDelivery:
    delivery: Delivery
    jobs: Sequence[NewJob]
    installations: Sequence[InstallationChange]
    max_attempts: int
    future: asyncio.Future[RecordResult]


def _session_from_row(row: sqlite3.Row) -> SessionRecord:
    data = dict(row)
    data["usage"] = orjson.loads(data["usage"]) if data["usage"] else None
    data["budget_reached"] = bool(data["budget_reached"])
    return SessionRecord.model_validate(data)


def _tool_call_from_row(row: sqlite3.Row) -> ToolCallRecord:
    data = dict(row)
    data["is_error"] = bool(data["is_error"])
    return ToolCallRecord.model_validate(data)


def _job_from_row(row: sqlite3.Row) -> Job:
    data = dict(row)
    data["payload"] = orjson.loads(data["payload"])
    data["result"] = orjson.loads(data["result"]) if data["result"] else None
    return Job.model_validate(data)


def _supersede_older(db: sqlite3.Connection, key: str, job_id: int, kind: str, head_sha: str | None,
                     now: float, stopped: dict[int, JobState]) -> None:
    """Supersede the unfinished jobs older than `job_id` that it replaces; running ones go into `stopped`."""
    same_head_waits = " AND (state = 'queued' OR head_sha IS NOT ?)" if JobKind(kind).one_per_head else ""
    params = (key, job_id, head_sha) if same_head_waits else (key, job_id)
    rows = db.execute(
        "SELECT id, state FROM jobs WHERE supersede_key = ? AND id < ? AND state IN ('queued', 'running')"
        + same_head_waits, params).fetchall()
    for row in rows:
        db.execute("UPDATE jobs SET state = 'superseded', finished_at = ?, updated_at = ? WHERE id = ?",
                   (now, now, row["id"]))
        if row["state"] == "running":
            stopped[row["id"]] = JobState.superseded


def _superseded_by_newer(db: sqlite3.Connection, row: sqlite3.Row) -> bool:
    same_head_waits = row["state"] == "running" and JobKind(row["kind"]).one_per_head
    return db.execute(
        "SELECT 1 FROM jobs WHERE supersede_key = ? AND id > ? AND state IN ('queued', 'running')"
        + (" AND head_sha IS NOT ?" if same_head_waits else ""),
        (row["supersede_key"], row["id"], row["head_sha"]) if same_head_waits else (row["supersede_key"], row["id"]),
    ).fetchone() is not None


def _waits_for_older(db: sqlite3.Connection, row: sqlite3.Row) -> bool:
    """A `one_per_head` job waits while an older job on the same head runs."""
    return JobKind(row["kind"]).one_per_head and db.execute(
        "SELECT 1 FROM jobs WHERE supersede_key = ? AND id < ? AND head_sha IS ? AND state = 'running'",
        (row["supersede_key"], row["id"], row["head_sha"]),
    ).fetchone() is not None


class SQLiteStore(Store):
    def __init__(self, path: str, *, checkpoint_seconds: float = 1.0) -> None:
        super().__init__()
        self.path = path
        self.checkpoint_seconds = checkpoint_seconds
        self._db: sqlite3.Connection | None = None
        self._pending: list[_PendingDelivery] = []
        self._flush_scheduled = False
        self._checkpointer: threading.Thread | None = None
        self._closing = threading.Event()

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
        db.executescript(SCHEMA)
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
        self._pending.append(_PendingDelivery(delivery, jobs, installations, max_attempts, future))
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
            results = self._transaction(lambda db: [self._write(db, p, stopped) for p in batch])
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

    @staticmethod
    def _write(db: sqlite3.Connection, pending: _PendingDelivery, stopped: dict[int, JobState]) -> RecordResult:
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
                _supersede_older(db, job.supersede_key, cursor.lastrowid, job.kind.value, job.head_sha,
                                 time.time(), stopped)
        for change in pending.installations:
            SQLiteStore._apply_installation(db, change, d.received_at)
        return RecordResult(duplicate=False, job_ids=job_ids)

    @staticmethod
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

    # -- worker -------------------------------------------------------------
    async def claim_jobs(self, owner: str, limit: int, lease_seconds: float) -> list[Job]:
        stopped: dict[int, JobState] = {}
        jobs = await self._run(self._transaction, lambda db: self._claim(db, owner, limit, lease_seconds, stopped))
        self.announce_stopped(stopped)
        return jobs

    @staticmethod
    def _claim(db: sqlite3.Connection, owner: str, limit: int, lease_seconds: float,
               stopped: dict[int, JobState]) -> list[Job]:
        now = time.time()
        rows = db.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs"
            " WHERE (state = 'queued' AND run_after <= ?) OR (state = 'running' AND lease_expires_at < ?)"
            " ORDER BY id LIMIT ?",
            (now, now, max(limit * 4, 16)),
        ).fetchall()
        claimed: list[int] = []
        for row in rows:
            if len(claimed) >= limit:
                break
            key = row["supersede_key"]
            if key and _superseded_by_newer(db, row):
                db.execute(
                    "UPDATE jobs SET state = 'superseded', finished_at = ?, updated_at = ? WHERE id = ?",
                    (now, now, row["id"]),
                )
                if row["state"] == "running":
                    stopped[row["id"]] = JobState.superseded
                continue
            if key and row["state"] == "queued" and _waits_for_older(db, row):
                continue
            if row["state"] == "running" and row["attempts"] >= row["max_attempts"]:
                db.execute(
                    "UPDATE jobs SET state = 'failed', finished_at = ?, updated_at = ?, lease_owner = NULL,"
                    " last_error = ? WHERE id = ?",
                    (now, now, f"the worker holding this job stopped responding {row['attempts']} times "
                     f"(last lease owner {row['lease_owner']})", row["id"]),
                )
                continue
            db.execute(
                "UPDATE jobs SET state = 'running', lease_owner = ?, lease_expires_at = ?, attempts = attempts + 1,"
                " started_at = coalesce(started_at, ?), updated_at = ? WHERE id = ?",
                (owner, now + lease_seconds, now, now, row["id"]),
            )
            if key:
                _supersede_older(db, key, row["id"], row["kind"], row["head_sha"], now, stopped)
            claimed.append(row["id"])
        if not claimed:
            return []
        marks = ",".join("?" * len(claimed))
        return [
            _job_from_row(r)
            for r in db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id IN ({marks}) ORDER BY id", claimed)
        ]

    async def renew_lease(self, job_id: int, owner: str, lease_seconds: float) -> JobState | None:
        def renew(db: sqlite3.Connection) -> JobState | None:
            row = db.execute("SELECT state, lease_owner FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["lease_owner"] != owner:
                return None
            if row["state"] == "running":
                now = time.time()
                db.execute(
                    "UPDATE jobs SET lease_expires_at = ?, updated_at = ? WHERE id = ?",
                    (now + lease_seconds, now, job_id),
                )
            return JobState(row["state"])

        return await self._run(self._transaction, renew)

    async def finish_job(
        self,
        job_id: int,
        owner: str,
        state: JobState,
        *,
        error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> bool:
        def finish(db: sqlite3.Connection) -> bool:
            now = time.time()
            cursor = db.execute(
                "UPDATE jobs SET state = ?, last_error = coalesce(?, last_error), result = ?, finished_at = ?,"
                " updated_at = ?, lease_expires_at = NULL WHERE id = ? AND lease_owner = ? AND state = 'running'",
                (state.value, error, orjson.dumps(result) if result is not None else None, now, now, job_id, owner),
            )
            return cursor.rowcount == 1

        return await self._run(self._transaction, finish)

    async def retry_job(self, job_id: int, owner: str, error: str, run_after: float) -> bool:
        def retry(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE jobs SET state = 'queued', last_error = ?, run_after = ?, lease_owner = NULL,"
                " lease_expires_at = NULL, updated_at = ? WHERE id = ? AND lease_owner = ? AND state = 'running'",
                (error, run_after, time.time(), job_id, owner),
            )
            return cursor.rowcount == 1

        return await self._run(self._transaction, retry)

    async def release_job(self, job_id: int, owner: str) -> bool:
        def release(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE jobs SET lease_expires_at = 0, attempts = max(attempts - 1, 0), updated_at = ?"
                " WHERE id = ? AND lease_owner = ? AND state = 'running'",
                (time.time(), job_id, owner),
            )
            return cursor.rowcount == 1

        return await self._run(self._transaction, release)

    async def held_states(self, job_ids: Sequence[int], owner: str) -> dict[int, JobState | None]:
        def select() -> dict[int, JobState | None]:
            marks = ",".join("?" * len(job_ids))
            rows = self._conn.execute(f"SELECT id, state, lease_owner FROM jobs WHERE id IN ({marks})",
                                      tuple(job_ids)).fetchall()
            found = {r["id"]: JobState(r["state"]) if r["lease_owner"] == owner else None for r in rows}
            return {job_id: found.get(job_id) for job_id in job_ids}

        return await self._run(select) if job_ids else {}

    async def expire_lease(self, job_id: int, owner: str) -> bool:
        def expire(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE jobs SET lease_expires_at = 0, updated_at = ? WHERE id = ? AND lease_owner = ? AND state = 'running'",
                (time.time(), job_id, owner),
            )
            return cursor.rowcount == 1

        return await self._run(self._transaction, expire)

    async def request_cancel(self, job_id: int, state: JobState = JobState.cancelled) -> bool:
        def cancel(db: sqlite3.Connection) -> str | None:
            now = time.time()
            row = db.execute("SELECT state FROM jobs WHERE id = ? AND state IN ('queued', 'running')",
                             (job_id,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET state = ?, finished_at = ?, updated_at = ? WHERE id = ?",
                       (state.value, now, now, job_id))
            return row["state"]

        was = await self._run(self._transaction, cancel)
        if was == "running":
            self.announce_stopped({job_id: state})
        return was is not None

    # -- reading ------------------------------------------------------------
    async def get_job(self, job_id: int) -> Job | None:
        def get() -> Job | None:
            row = self._conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return _job_from_row(row) if row else None

        return await self._run(get)

    async def list_jobs(
        self, *, limit: int = 50, states: Sequence[JobState] | None = None, repo: str | None = None,
        pr_number: int | None = None, kind: str | None = None,
    ) -> list[Job]:
        clauses, params = [], []
        if states:
            clauses.append(f"state IN ({','.join('?' * len(states))})")
            params += [s.value for s in states]
        for column, value in (("repo", repo), ("pr_number", pr_number), ("kind", kind)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""

        def select() -> list[Job]:
            rows = self._conn.execute(
                f"SELECT {JOB_COLUMNS} FROM jobs{where} ORDER BY id DESC LIMIT ?", (*params, limit)
            ).fetchall()
            return [_job_from_row(r) for r in rows]

        return await self._run(select)

    async def count_jobs_by_state(self) -> dict[tuple[str, str], int]:
        def count() -> dict[tuple[str, str], int]:
            rows = self._conn.execute("SELECT kind, state, count(*) FROM jobs GROUP BY kind, state").fetchall()
            return {(r[0], r[1]): r[2] for r in rows}

        return await self._run(count)

    async def get_installation(self, installation_id: int) -> Installation | None:
        def get() -> Installation | None:
            row = self._conn.execute(
                "SELECT * FROM installations WHERE installation_id = ?", (installation_id,)
            ).fetchone()
            return self._installation(row) if row else None

        return await self._run(get)

    async def list_installations(self) -> list[Installation]:
        def select() -> list[Installation]:
            rows = self._conn.execute("SELECT * FROM installations ORDER BY installation_id").fetchall()
            return [self._installation(r) for r in rows]

        return await self._run(select)

    @staticmethod
    def _installation(row: sqlite3.Row) -> Installation:
        data = dict(row)
        data["repositories"] = orjson.loads(data["repositories"])
        data["active"] = bool(data["active"])
        data["suspended"] = bool(data["suspended"])
        return Installation.model_validate(data)

    async def get_meta(self, key: str) -> str | None:
        def get() -> str | None:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return row[0] if row else None

        return await self._run(get)

    async def set_meta(self, key: str, value: str) -> None:
        await self._run(
            lambda: self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        )

    # -- agent sessions -------------------------------------------------------
    async def record_session(
        self, job_id: int, session_id: str, *, agent_id: str | None = None, agent_version: int | None = None
    ) -> SessionRecord:
        def insert(db: sqlite3.Connection) -> SessionRecord:
            now = time.time()
            db.execute(
                "INSERT INTO agent_sessions (session_id, job_id, agent_id, agent_version, state, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'open', ?, ?) ON CONFLICT (session_id) DO NOTHING",
                (session_id, job_id, agent_id, agent_version, now, now),
            )
            row = db.execute("SELECT * FROM agent_sessions WHERE session_id = ?", (session_id,)).fetchone()
            return _session_from_row(row)

        return await self._run(self._transaction, insert)

    async def get_open_session(self, job_id: int) -> SessionRecord | None:
        def get() -> SessionRecord | None:
            row = self._conn.execute(
                "SELECT * FROM agent_sessions WHERE job_id = ? AND state = 'open' ORDER BY created_at DESC LIMIT 1",
                (job_id,),
            ).fetchone()
            return _session_from_row(row) if row else None

        return await self._run(get)

    async def close_session(
        self,
        session_id: str,
        *,
        stop_reason: str | None = None,
        error: str | None = None,
        usage: dict[str, Any] | None = None,
        list_cost_cents: int | None = None,
        budget_reached: bool | None = None,
    ) -> None:
        await self._run(
            lambda: self._conn.execute(
                "UPDATE agent_sessions SET state = 'closed', stop_reason = coalesce(?, stop_reason),"
                " error = coalesce(?, error), usage = coalesce(?, usage),"
                " list_cost_cents = coalesce(?, list_cost_cents), budget_reached = coalesce(?, budget_reached),"
                " updated_at = ? WHERE session_id = ?",
                (
                    stop_reason, error, orjson.dumps(usage) if usage is not None else None, list_cost_cents,
                    None if budget_reached is None else int(budget_reached), time.time(), session_id,
                ),
            )
        )

    async def list_sessions(self, job_id: int) -> list[SessionRecord]:
        def select() -> list[SessionRecord]:
            rows = self._conn.execute(
                "SELECT * FROM agent_sessions WHERE job_id = ? ORDER BY created_at", (job_id,)
            ).fetchall()
            return [_session_from_row(r) for r in rows]

        return await self._run(select)

    async def claim_tool_call(self, session_id: str, event_id: str, name: str) -> tuple[ToolCallRecord, bool]:
        def claim(db: sqlite3.Connection) -> tuple[ToolCallRecord, bool]:
            cursor = db.execute(
                "INSERT INTO tool_calls (event_id, session_id, name, state, started_at) VALUES (?, ?, ?, 'started', ?)"
                " ON CONFLICT (event_id) DO NOTHING",
                (event_id, session_id, name, time.time()),
            )
            row = db.execute("SELECT * FROM tool_calls WHERE event_id = ?", (event_id,)).fetchone()
            return _tool_call_from_row(row), cursor.rowcount == 1

        return await self._run(self._transaction, claim)

    async def answer_tool_call(self, event_id: str, result: str, is_error: bool) -> ToolCallRecord:
        def answer(db: sqlite3.Connection) -> ToolCallRecord:
            db.execute(
                "UPDATE tool_calls SET state = 'answered', result = ?, is_error = ?, answered_at = ?"
                " WHERE event_id = ? AND state = 'started'",
                (result, int(is_error), time.time(), event_id),
            )
            row = db.execute("SELECT * FROM tool_calls WHERE event_id = ?", (event_id,)).fetchone()
            if row is None:
                raise StoreUnavailable(f"tool call {event_id} was never claimed")
            return _tool_call_from_row(row)

        return await self._run(self._transaction, answer)

    async def get_tool_call(self, event_id: str) -> ToolCallRecord | None:
        def get() -> ToolCallRecord | None:
            row = self._conn.execute("SELECT * FROM tool_calls WHERE event_id = ?", (event_id,)).fetchone()
            return _tool_call_from_row(row) if row else None

        return await self._run(get)

    async def list_tool_calls(self, session_id: str) -> list[ToolCallRecord]:
        def select() -> list[ToolCallRecord]:
            rows = self._conn.execute(
                "SELECT * FROM tool_calls WHERE session_id = ? ORDER BY started_at, rowid", (session_id,)
            ).fetchall()
            return [_tool_call_from_row(r) for r in rows]

        return await self._run(select)

    # -- pull request reviews -------------------------------------------------
    async def get_pull_review(self, repo: str, pr_number: int) -> PullReviewState | None:
        def get() -> PullReviewState | None:
            row = self._conn.execute("SELECT state FROM pull_reviews WHERE repo = ? AND pr_number = ?",
                                     (repo.lower(), pr_number)).fetchone()
            return PullReviewState.model_validate_json(row[0]) if row else None

        return await self._run(get)

    async def save_pull_review(self, state: PullReviewState) -> None:
        state = state.model_copy(update={"updated_at": time.time()})
        await self._run(lambda: self._conn.execute(
            "INSERT INTO pull_reviews (repo, pr_number, state, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (repo, pr_number) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            (state.repo.lower(), state.pr_number, state.model_dump_json(), state.updated_at)))

    # -- fixes ----------------------------------------------------------------
    async def claim_fix_attempt(self, repo: str, pr_number: int, root_sha: str, job_id: int,
                                limit: int) -> tuple[bool, int]:
        key = (repo.lower(), pr_number, root_sha)

        def claim(db: sqlite3.Connection) -> tuple[bool, int]:
            count = db.execute("SELECT count(*) FROM fix_attempts WHERE repo = ? AND pr_number = ? AND root_sha = ?",
                               key).fetchone()[0]
            if db.execute("SELECT 1 FROM fix_attempts WHERE repo = ? AND pr_number = ? AND root_sha = ?"
                          " AND job_id = ?", (*key, job_id)).fetchone():
                return True, count
            if count >= limit:
                return False, count
            db.execute("INSERT INTO fix_attempts (repo, pr_number, root_sha, job_id, created_at)"
                       " VALUES (?, ?, ?, ?, ?)", (*key, job_id, time.time()))
            return True, count + 1

        return await self._run(self._transaction, claim)

    async def record_fix_proposal(self, proposal: FixProposal) -> FixProposal:
        def insert(db: sqlite3.Connection) -> FixProposal:
            now = time.time()
            p = proposal
            cursor = db.execute(
                "INSERT INTO fix_proposals (repo, pr_number, root_sha, base_sha, fix_sha, branch, delivery, url,"
                " job_id, outcome, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (p.repo.lower(), p.pr_number, p.root_sha, p.base_sha, p.fix_sha, p.branch, p.delivery, p.url,
                 p.job_id, p.outcome, now))
            return p.model_copy(update={"id": cursor.lastrowid, "created_at": now})

        return await self._run(self._transaction, insert)

    async def find_fix_proposal(self, repo: str, *, fix_sha: str | None = None,
                                branch: str | None = None) -> FixProposal | None:
        def find() -> FixProposal | None:
            for column, value in (("fix_sha", fix_sha), ("branch", branch)):
                if value is None:
                    continue
                row = self._conn.execute(
                    f"SELECT * FROM fix_proposals WHERE repo = ? AND {column} = ? ORDER BY id DESC LIMIT 1",
                    (repo.lower(), value)).fetchone()
                if row:
                    return FixProposal.model_validate(dict(row))
            return None

        return await self._run(find)

    async def resolve_fix_proposal(self, proposal_id: int, outcome: str) -> bool:
        return await self._run(lambda: self._conn.execute(
            "UPDATE fix_proposals SET outcome = ?, resolved_at = ? WHERE id = ? AND outcome = 'pending'",
            (outcome, time.time(), proposal_id)).rowcount == 1)

    async def fix_outcome_counts(self) -> dict[str, int]:
        return await self._run(lambda: {r[0]: r[1] for r in self._conn.execute(
            "SELECT outcome, count(*) FROM fix_proposals GROUP BY outcome").fetchall()})
