"""The supersede rule in SQL on PostgreSQL, as on SQLite: jobs with the same supersede key replace each
other, the newest winning, except that a `one_per_head` job waits for a running older one on the same
head (docs/architecture.md, "Jobs and the supersede rule"). Each function handles a set of jobs in one
statement, so a batch of deliveries or a claim costs the same round trips whatever its size.

Two replicas may record siblings at the same moment, each transaction not yet seeing the other's job:
both stay queued then, and the claim applies the rule (`superseded_among`) before handing one out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from app.store.models import JobKind, JobState, NewJob


async def supersede_older_than_new(conn: asyncpg.Connection, new: Sequence[tuple[int, NewJob]], now: float,
                                   stopped: dict[int, JobState]) -> None:
    """Supersede the unfinished jobs older than each of `new` (id, job) that it replaces, a job earlier in
    the same batch included; running ones go into `stopped`. Locks them first, so a job a claim is
    taking at this moment is seen in the state that claim leaves it in."""
    rows = await conn.fetch(
        "SELECT o.id, o.state FROM jobs o JOIN unnest($1::bigint[], $2::text[], $3::text[], $4::bool[])"
        " AS n(id, key, head_sha, one_per_head) ON o.supersede_key = n.key AND o.id < n.id"
        " WHERE o.state IN ('queued', 'running')"
        " AND (NOT n.one_per_head OR o.state = 'queued' OR o.head_sha IS DISTINCT FROM n.head_sha)"
        " ORDER BY o.id FOR UPDATE OF o",
        [job_id for job_id, _ in new], [job.supersede_key for _, job in new], [job.head_sha for _, job in new],
        [job.kind.one_per_head for _, job in new])
    await mark_superseded(conn, rows, now, stopped)


async def mark_superseded(conn: asyncpg.Connection, rows: Sequence[Mapping[str, Any]], now: float,
                          stopped: dict[int, JobState]) -> None:
    """Supersede these unfinished jobs (rows with `id` and `state`); running ones go into `stopped`, for
    their workers to stop them."""
    was = {row["id"]: row["state"] for row in rows}
    if not was:
        return
    await conn.execute(
        "UPDATE jobs SET state = 'superseded', finished_at = $1, updated_at = $1"
        " WHERE id = ANY($2::bigint[]) AND state IN ('queued', 'running')", now, list(was))
    stopped.update({job_id: JobState.superseded for job_id, state in was.items() if state == "running"})


async def superseded_among(conn: asyncpg.Connection, rows: Sequence[Mapping[str, Any]]) -> set[int]:
    """The ids of the keyed jobs among `rows` that a newer unfinished sibling supersedes (a running
    `one_per_head` job only by one on another head)."""
    keyed = [r for r in rows if r["supersede_key"]]
    if not keyed:
        return set()
    found = await conn.fetch(
        "SELECT c.id FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bool[]) AS c(id, key, head_sha, same_head_waits)"
        " WHERE EXISTS (SELECT 1 FROM jobs n WHERE n.supersede_key = c.key AND n.id > c.id"
        " AND n.state IN ('queued', 'running') AND (NOT c.same_head_waits OR n.head_sha IS DISTINCT FROM c.head_sha))",
        [r["id"] for r in keyed], [r["supersede_key"] for r in keyed], [r["head_sha"] for r in keyed],
        [r["state"] == "running" and JobKind(r["kind"]).one_per_head for r in keyed])
    return {r["id"] for r in found}


async def waiting_among(conn: asyncpg.Connection, rows: Sequence[Mapping[str, Any]]) -> set[int]:
    """The ids of the queued `one_per_head` jobs among `rows` that wait while an older job on the same
    head runs."""
    waiting = [r for r in rows if r["supersede_key"] and r["state"] == "queued" and JobKind(r["kind"]).one_per_head]
    if not waiting:
        return set()
    found = await conn.fetch(
        "SELECT c.id FROM unnest($1::bigint[], $2::text[], $3::text[]) AS c(id, key, head_sha)"
        " WHERE EXISTS (SELECT 1 FROM jobs o WHERE o.supersede_key = c.key AND o.id < c.id"
        " AND o.head_sha IS NOT DISTINCT FROM c.head_sha AND o.state = 'running')",
        [r["id"] for r in waiting], [r["supersede_key"] for r in waiting], [r["head_sha"] for r in waiting])
    return {r["id"] for r in found}
