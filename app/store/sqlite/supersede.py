"""The supersede rule in SQL: jobs with the same supersede key replace each other, the newest
winning, except that a `one_per_head` job waits for a running older one on the same head
(docs/architecture.md, "Jobs and the supersede rule")."""

from __future__ import annotations

import sqlite3

from app.store.models import JobKind, JobState


def supersede_older(db: sqlite3.Connection, key: str, job_id: int, kind: str, head_sha: str | None,
                    now: float, stopped: dict[int, JobState]) -> None:
    """Supersede the unfinished jobs older than `job_id` that it replaces; running ones go into `stopped`."""
    same_head_waits = " AND (state = 'queued' OR head_sha IS NOT ?)" if JobKind(kind).one_per_head else ""
    params = (key, job_id, head_sha) if same_head_waits else (key, job_id)
    rows = db.execute(
        "SELECT id, state FROM jobs WHERE supersede_key = ? AND id < ? AND state IN ('queued', 'running')"
        + same_head_waits, params).fetchall()
    for row in rows:
        mark_superseded(db, row, now, stopped)


def mark_superseded(db: sqlite3.Connection, row: sqlite3.Row, now: float, stopped: dict[int, JobState]) -> None:
    """Supersede one unfinished job; a running one goes into `stopped`, for its worker to stop it."""
    db.execute("UPDATE jobs SET state = 'superseded', finished_at = ?, updated_at = ? WHERE id = ?",
               (now, now, row["id"]))
    if row["state"] == "running":
        stopped[row["id"]] = JobState.superseded


def superseded_by_newer(db: sqlite3.Connection, row: sqlite3.Row) -> bool:
    same_head_waits = row["state"] == "running" and JobKind(row["kind"]).one_per_head
    return db.execute(
        "SELECT 1 FROM jobs WHERE supersede_key = ? AND id > ? AND state IN ('queued', 'running')"
        + (" AND head_sha IS NOT ?" if same_head_waits else ""),
        (row["supersede_key"], row["id"], row["head_sha"]) if same_head_waits else (row["supersede_key"], row["id"]),
    ).fetchone() is not None


def waits_for_older(db: sqlite3.Connection, row: sqlite3.Row) -> bool:
    """A `one_per_head` job waits while an older job on the same head runs."""
    return JobKind(row["kind"]).one_per_head and db.execute(
        "SELECT 1 FROM jobs WHERE supersede_key = ? AND id < ? AND head_sha IS ? AND state = 'running'",
        (row["supersede_key"], row["id"], row["head_sha"]),
    ).fetchone() is not None

