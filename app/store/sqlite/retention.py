"""Retention on SQLite: `prune` deletes finished jobs and what only they needed, in small batches so
the event loop (which runs every statement) is never held for long."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from app.store.base import JOB_META_MARK
from app.store.sqlite.connection import SQLiteBase

BATCH = 500
TABLES = ("jobs", "agent_sessions", "tool_calls", "fix_attempts", "meta", "deliveries")
_UNFINISHED_DELIVERIES = "SELECT delivery_id FROM jobs WHERE state IN ('queued', 'running') AND delivery_id IS NOT NULL"


class Retention(SQLiteBase):
    async def prune(self, older_than_seconds: float) -> dict[str, int]:
        cutoff = time.time() - older_than_seconds
        counts = dict.fromkeys(TABLES, 0)
        while await self._run(self._transaction, lambda db: _prune_jobs(db, cutoff, counts)) == BATCH:
            await asyncio.sleep(0)
        counts["meta"] = await self._run(self._transaction, _prune_job_meta)
        while True:
            deleted = await self._run(self._transaction, lambda db: db.execute(
                "DELETE FROM deliveries WHERE rowid IN (SELECT rowid FROM deliveries WHERE received_at < ?"
                f" AND delivery_id NOT IN ({_UNFINISHED_DELIVERIES}) LIMIT ?)", (cutoff, BATCH)).rowcount)
            counts["deliveries"] += deleted
            if deleted < BATCH:
                return counts
            await asyncio.sleep(0)


def _prune_jobs(db: sqlite3.Connection, cutoff: float, counts: dict[str, int]) -> int:
    """Delete one batch of jobs finished before `cutoff`, with their sessions, tool calls and fix attempts."""
    ids = [r[0] for r in db.execute(
        "SELECT id FROM jobs WHERE state NOT IN ('queued', 'running') AND coalesce(finished_at, updated_at) < ?"
        " ORDER BY id LIMIT ?", (cutoff, BATCH))]
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    counts["tool_calls"] += db.execute(
        f"DELETE FROM tool_calls WHERE session_id IN (SELECT session_id FROM agent_sessions WHERE job_id IN ({marks}))",
        ids).rowcount
    counts["agent_sessions"] += db.execute(f"DELETE FROM agent_sessions WHERE job_id IN ({marks})", ids).rowcount
    counts["fix_attempts"] += db.execute(f"DELETE FROM fix_attempts WHERE job_id IN ({marks})", ids).rowcount
    counts["jobs"] += db.execute(f"DELETE FROM jobs WHERE id IN ({marks})", ids).rowcount
    return len(ids)


def _prune_job_meta(db: sqlite3.Connection) -> int:
    """Delete the per-job meta rows (`…:job:<id>`) whose job is gone: job ids are never reused."""
    return db.execute(
        f"DELETE FROM meta WHERE key GLOB '*{JOB_META_MARK}[0-9]*' AND CAST(substr(key, instr(key, '{JOB_META_MARK}')"
        f" + {len(JOB_META_MARK)}) AS INTEGER) NOT IN (SELECT id FROM jobs)"
    ).rowcount
