"""Retention on PostgreSQL: `prune` deletes finished jobs and what only they needed, in batches (short
transactions, short row locks). One replica prunes at a time: the others find the lock taken and skip."""

from __future__ import annotations

import logging
import re
import time

import asyncpg

from app.store.base import JOB_META_MARK
from app.store.postgres.connection import PostgresBase, lock_key

log = logging.getLogger("prmedic.store")

BATCH = 1000
TABLES = ("jobs", "agent_sessions", "tool_calls", "fix_attempts", "meta", "deliveries")
_JOB_META = re.escape(JOB_META_MARK) + "([0-9]+)$"


class Retention(PostgresBase):
    async def prune(self, older_than_seconds: float) -> dict[str, int]:
        cutoff = time.time() - older_than_seconds
        counts = dict.fromkeys(TABLES, 0)
        key = lock_key("retention")
        async with self._connection() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                log.info("retention: another replica is pruning; skipped")
                return counts
            try:
                while await _prune_jobs(conn, cutoff, counts) == BATCH:
                    pass
                counts["meta"] = _count(await conn.execute(
                    "DELETE FROM meta m WHERE key ~ $1 AND NOT EXISTS"
                    " (SELECT 1 FROM jobs j WHERE j.id = substring(m.key from $1)::bigint)", _JOB_META))
                while True:
                    deleted = _count(await conn.execute(
                        "DELETE FROM deliveries WHERE delivery_id IN (SELECT delivery_id FROM deliveries d"
                        " WHERE received_at < $1 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.delivery_id = d.delivery_id"
                        " AND j.state IN ('queued', 'running')) LIMIT $2)", cutoff, BATCH))
                    counts["deliveries"] += deleted
                    if deleted < BATCH:
                        return counts
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", key)


async def _prune_jobs(conn: asyncpg.Connection, cutoff: float, counts: dict[str, int]) -> int:
    """Delete one batch of jobs finished before `cutoff`, with their sessions, tool calls and fix attempts."""
    async with conn.transaction():
        ids = [r["id"] for r in await conn.fetch(
            "SELECT id FROM jobs WHERE state NOT IN ('queued', 'running') AND coalesce(finished_at, updated_at) < $1"
            " ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED", cutoff, BATCH)]
        if not ids:
            return 0
        counts["tool_calls"] += _count(await conn.execute(
            "DELETE FROM tool_calls WHERE session_id IN"
            " (SELECT session_id FROM agent_sessions WHERE job_id = ANY($1::bigint[]))", ids))
        counts["agent_sessions"] += _count(await conn.execute(
            "DELETE FROM agent_sessions WHERE job_id = ANY($1::bigint[])", ids))
        counts["fix_attempts"] += _count(await conn.execute(
            "DELETE FROM fix_attempts WHERE job_id = ANY($1::bigint[])", ids))
        counts["jobs"] += _count(await conn.execute("DELETE FROM jobs WHERE id = ANY($1::bigint[])", ids))
    return len(ids)


def _count(status: str) -> int:
    """Rows a statement touched, from its status line ("DELETE 12")."""
    return int(status.rsplit(" ", 1)[-1])
