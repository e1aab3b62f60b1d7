"""The worker's side of the jobs table: claim, lease, renew, release, retry, finish, cancel, read."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import orjson

from app.store.models import Job, JobState
from app.store.sqlite.connection import SQLiteBase
from app.store.sqlite.schema import JOB_COLUMNS, job_from_row
from app.store.sqlite.supersede import mark_superseded, superseded_by_newer, supersede_older, waits_for_older


class JobTables(SQLiteBase):
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
            if key and superseded_by_newer(db, row):
                mark_superseded(db, row, now, stopped)
                continue
            if key and row["state"] == "queued" and waits_for_older(db, row):
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
                supersede_older(db, key, row["id"], row["kind"], row["head_sha"], now, stopped)
            claimed.append(row["id"])
        if not claimed:
            return []
        marks = ",".join("?" * len(claimed))
        return [
            job_from_row(r)
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
            return job_from_row(row) if row else None

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
            return [job_from_row(r) for r in rows]

        return await self._run(select)

    async def count_jobs_by_state(self) -> dict[tuple[str, str], int]:
        def count() -> dict[tuple[str, str], int]:
            rows = self._conn.execute("SELECT kind, state, count(*) FROM jobs GROUP BY kind, state").fetchall()
            return {(r[0], r[1]): r[2] for r in rows}

        return await self._run(count)
