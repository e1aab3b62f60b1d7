"""The worker's side of the jobs table on PostgreSQL: claim, lease, renew, release, retry, finish, cancel, read.

Claiming locks its candidates with `FOR UPDATE SKIP LOCKED`: replicas claiming at once take different
jobs, never the same one, and never wait for each other's candidates.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import asyncpg

from app.store.models import Job, JobKind, JobState
from app.store.postgres.connection import PostgresBase
from app.store.postgres.notify import CHANNEL, payloads
from app.store.postgres.schema import JOB_COLUMNS, dumps, job_from_row
from app.store.postgres.supersede import (
    mark_superseded,
    supersede_older_than_new,
    superseded_among,
    waiting_among,
)

ONE_PER_HEAD = [kind.value for kind in JobKind if kind.one_per_head]


class JobTables(PostgresBase):
    # -- worker -------------------------------------------------------------
    async def claim_jobs(self, owner: str, limit: int, lease_seconds: float) -> list[Job]:
        stopped: dict[int, JobState] = {}

        async def claim(conn: asyncpg.Connection) -> list[Job]:
            stopped.clear()
            jobs = await _claim(conn, owner, limit, lease_seconds, stopped)
            await self._notify(conn, stopped=stopped)
            return jobs

        jobs = await self._tx(claim)
        self.announce_stopped(stopped)
        return jobs

    async def renew_lease(self, job_id: int, owner: str, lease_seconds: float) -> JobState | None:
        now = time.time()
        # The lease is extended only while running; the state is answered to its holder either way.
        row = await self._fetchrow(
            "WITH held AS (SELECT id, state FROM jobs WHERE id = $1 AND lease_owner = $2),"
            " renewed AS (UPDATE jobs SET lease_expires_at = $3, updated_at = $4"
            "   WHERE id = (SELECT id FROM held WHERE state = 'running') AND lease_owner = $2 AND state = 'running')"
            " SELECT state FROM held", job_id, owner, now + lease_seconds, now)
        return JobState(row["state"]) if row else None

    async def finish_job(
        self,
        job_id: int,
        owner: str,
        state: JobState,
        *,
        error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> bool:
        # One statement (one commit); it wakes the replicas when a sibling waiting for this head may run now.
        rows = await self._fetch(
            "WITH finished AS (UPDATE jobs SET state = $1, last_error = coalesce($2, last_error), result = $3::jsonb,"
            " finished_at = $4, updated_at = $4, lease_expires_at = NULL"
            " WHERE id = $5 AND lease_owner = $6 AND state = 'running' RETURNING kind, supersede_key)"
            " SELECT CASE WHEN supersede_key IS NOT NULL AND kind = ANY($7::text[]) THEN pg_notify($8, $9) END"
            " FROM finished",
            state.value, error, dumps(result), time.time(), job_id, owner, ONE_PER_HEAD, CHANNEL, self._recorded)
        return len(rows) == 1

    async def retry_job(self, job_id: int, owner: str, error: str, run_after: float) -> bool:
        return await self._fetchval(
            "UPDATE jobs SET state = 'queued', last_error = $1, run_after = $2, lease_owner = NULL,"
            " lease_expires_at = NULL, updated_at = $3 WHERE id = $4 AND lease_owner = $5 AND state = 'running'"
            " RETURNING true", error, run_after, time.time(), job_id, owner) is not None

    async def release_job(self, job_id: int, owner: str) -> bool:
        return await self._given_back(
            "UPDATE jobs SET lease_expires_at = 0, attempts = greatest(attempts - 1, 0), updated_at = $1"
            " WHERE id = $2 AND lease_owner = $3 AND state = 'running' RETURNING id", job_id, owner)

    async def expire_lease(self, job_id: int, owner: str) -> bool:
        return await self._given_back(
            "UPDATE jobs SET lease_expires_at = 0, updated_at = $1"
            " WHERE id = $2 AND lease_owner = $3 AND state = 'running' RETURNING id", job_id, owner)

    async def _given_back(self, sql: str, job_id: int, owner: str) -> bool:
        """Run a statement that makes a job claimable at once (`... RETURNING id`), and wake the replicas."""
        rows = await self._fetch(f"WITH given AS ({sql}) SELECT pg_notify($4, $5) FROM given",
                                 time.time(), job_id, owner, CHANNEL, self._recorded)
        return len(rows) == 1

    async def held_states(self, job_ids: Sequence[int], owner: str) -> dict[int, JobState | None]:
        if not job_ids:
            return {}
        rows = await self._fetch("SELECT id, state, lease_owner FROM jobs WHERE id = ANY($1::bigint[])", list(job_ids))
        found = {r["id"]: JobState(r["state"]) if r["lease_owner"] == owner else None for r in rows}
        return {job_id: found.get(job_id) for job_id in job_ids}

    async def request_cancel(self, job_id: int, state: JobState = JobState.cancelled) -> bool:
        [notice] = payloads(self.instance, stopped={job_id: state})
        row = await self._fetchrow(
            "WITH before AS (SELECT id, state FROM jobs WHERE id = $1 AND state IN ('queued', 'running') FOR UPDATE),"
            " cancelled AS (UPDATE jobs SET state = $2, finished_at = $3, updated_at = $3 FROM before"
            "   WHERE jobs.id = before.id RETURNING before.state AS was)"
            " SELECT was, CASE WHEN was = 'running' THEN pg_notify($4, $5) END FROM cancelled",
            job_id, state.value, time.time(), CHANNEL, notice)
        if row is not None and row["was"] == "running":
            self.announce_stopped({job_id: state})
        return row is not None

    # -- reading ------------------------------------------------------------
    async def get_job(self, job_id: int) -> Job | None:
        row = await self._fetchrow(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1", job_id)
        return job_from_row(row) if row else None

    async def list_jobs(
        self, *, limit: int = 50, states: Sequence[JobState] | None = None, repo: str | None = None,
        pr_number: int | None = None, kind: str | None = None,
    ) -> list[Job]:
        clauses: list[str] = []
        args: list[Any] = []
        if states:
            args.append([s.value for s in states])
            clauses.append(f"state = ANY(${len(args)}::text[])")
        for column, value in (("repo", repo), ("pr_number", pr_number), ("kind", kind)):
            if value is not None:
                args.append(value)
                clauses.append(f"{column} = ${len(args)}")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        args.append(limit)
        rows = await self._fetch(f"SELECT {JOB_COLUMNS} FROM jobs{where} ORDER BY id DESC LIMIT ${len(args)}", *args)
        return [job_from_row(r) for r in rows]

    async def count_jobs_by_state(self) -> dict[tuple[str, str], int]:
        rows = await self._fetch("SELECT kind, state, count(*) AS n FROM jobs GROUP BY kind, state")
        return {(r["kind"], r["state"]): r["n"] for r in rows}


async def _claim(conn: asyncpg.Connection, owner: str, limit: int, lease_seconds: float,
                 stopped: dict[int, JobState]) -> list[Job]:
    """The claim in a few set-wide statements: supersede what a newer sibling replaces, fail what ran out
    of attempts, skip what waits for its head, then lease up to `limit` of the rest, in id order."""
    now = time.time()
    rows = await conn.fetch(
        "SELECT id, kind, state, attempts, max_attempts, lease_owner, supersede_key, head_sha FROM jobs"
        " WHERE (state = 'queued' AND run_after <= $1) OR (state = 'running' AND lease_expires_at < $1)"
        " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED", now, max(limit * 4, 16))
    superseded = await superseded_among(conn, rows)
    await mark_superseded(conn, [r for r in rows if r["id"] in superseded], now, stopped)
    rows = [r for r in rows if r["id"] not in superseded]
    exhausted = [r["id"] for r in rows if r["state"] == "running" and r["attempts"] >= r["max_attempts"]]
    if exhausted:
        await conn.execute(
            "UPDATE jobs SET state = 'failed', finished_at = $1, updated_at = $1, lease_owner = NULL,"
            " last_error = format('the worker holding this job stopped responding %s times (last lease owner %s)',"
            " attempts, lease_owner) WHERE id = ANY($2::bigint[])", now, exhausted)
    rows = [r for r in rows if r["id"] not in exhausted]
    waiting = await waiting_among(conn, rows)
    claimed = [r["id"] for r in rows if r["id"] not in waiting][:limit]
    if not claimed:
        return []
    jobs = sorted((job_from_row(r) for r in await conn.fetch(
        "UPDATE jobs SET state = 'running', lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1,"
        f" started_at = coalesce(started_at, $3), updated_at = $3 WHERE id = ANY($4::bigint[]) RETURNING {JOB_COLUMNS}",
        owner, now + lease_seconds, now, claimed)), key=lambda job: job.id)
    keyed = [(job.id, job) for job in jobs if job.supersede_key]
    if keyed:
        await supersede_older_than_new(conn, keyed, now, stopped)
    return jobs
