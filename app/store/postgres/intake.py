"""The SQL of one group commit on PostgreSQL: a batch of deliveries, their jobs and installation changes.

A batch costs the same few statements whatever its size (one insert of the deliveries, one of the
jobs, one lock and one update for the supersede rule), so intake keeps up under load: many deliveries
share one transaction and its round trips.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from app.store.models import (
    Delivery,
    InstallationChange,
    JobState,
    NewJob,
    RecordResult,
)
from app.store.postgres.notify import CHANNEL
from app.store.postgres.schema import dumps
from app.store.postgres.supersede import supersede_older_than_new


@dataclass(slots=True)
class PendingDelivery:
    delivery: Delivery
    jobs: Sequence[NewJob]
    installations: Sequence[InstallationChange]
    max_attempts: int
    future: asyncio.Future[RecordResult] = field(repr=False)


async def write_batch(conn: asyncpg.Connection, batch: Sequence[PendingDelivery], stopped: dict[int, JobState],
                      notice: str | None = None) -> list[RecordResult]:
    """Record the batch (inside the caller's transaction); a delivery id seen before, in the database or
    earlier in the batch, is a duplicate and adds nothing. `notice`: the notification that jobs were
    recorded, sent (on commit) when there are any."""
    deliveries = [p.delivery for p in batch]
    inserted = {r["delivery_id"] for r in await conn.fetch(
        "INSERT INTO deliveries (delivery_id, event, action, received_at)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[])"
        " ON CONFLICT (delivery_id) DO NOTHING RETURNING delivery_id",
        [d.delivery_id for d in deliveries], [d.event for d in deliveries], [d.action for d in deliveries],
        [d.received_at for d in deliveries])}
    new: list[PendingDelivery] = []
    for pending in batch:
        if pending.delivery.delivery_id in inserted:
            inserted.remove(pending.delivery.delivery_id)  # a second copy later in the batch is a duplicate
            new.append(pending)
    job_ids = await _insert_jobs(conn, new, stopped, notice)
    for pending in new:
        for change in pending.installations:
            await _apply_installation(conn, change, pending.delivery.received_at)
    return [RecordResult(duplicate=False, job_ids=job_ids[id(p)]) if id(p) in job_ids else RecordResult(duplicate=True)
            for p in batch]


async def _insert_jobs(conn: asyncpg.Connection, new: list[PendingDelivery], stopped: dict[int, JobState],
                       notice: str | None) -> dict[int, list[int]]:
    """Insert the jobs of the new deliveries, in order, and apply the supersede rule to what they replace;
    returns id(pending) → its job ids."""
    rows = [(p, job) for p in new for job in p.jobs]
    ids: list[int] = []
    if rows:
        now = time.time()
        # A job that a later job of the same batch supersedes is written superseded at once: the rule
        # then runs once per key against older rows only, not once per job against the batch's own.
        last = {job.supersede_key: i for i, (_, job) in enumerate(rows) if job.supersede_key}
        queued = [not job.supersede_key or last[job.supersede_key] == i for i, (_, job) in enumerate(rows)]
        # Rows are inserted in `ord` order, so their identities ascend in it: sorted, the ids match the rows.
        # The notification rides on the same statement (PostgreSQL sends one per transaction and payload).
        ids = sorted(r["id"] for r in await conn.fetch(
            "WITH inserted AS (INSERT INTO jobs (kind, repo, installation_id, pr_number, head_sha, supersede_key,"
            " payload, state, max_attempts, delivery_id, created_at, updated_at, finished_at)"
            " SELECT kind, repo, installation_id, pr_number, head_sha, supersede_key, payload::jsonb,"
            " CASE WHEN queued THEN 'queued' ELSE 'superseded' END, max_attempts, delivery_id, received_at,"
            " received_at, CASE WHEN queued THEN NULL ELSE $13::float8 END FROM unnest($1::text[], $2::text[],"
            " $3::bigint[], $4::int[], $5::text[], $6::text[], $7::text[], $8::int[], $9::text[], $10::float8[],"
            " $14::bool[]) WITH ORDINALITY AS t(kind, repo, installation_id, pr_number, head_sha, supersede_key,"
            " payload, max_attempts, delivery_id, received_at, queued, ord) ORDER BY ord RETURNING id)"
            " SELECT id, CASE WHEN $11::text IS NOT NULL THEN pg_notify($12, $11) END FROM inserted",
            [j.kind.value for _, j in rows], [j.repo for _, j in rows], [j.installation_id for _, j in rows],
            [j.pr_number for _, j in rows], [j.head_sha for _, j in rows], [j.supersede_key for _, j in rows],
            [dumps(j.payload) for _, j in rows], [p.max_attempts for p, _ in rows],
            [p.delivery.delivery_id for p, _ in rows], [p.delivery.received_at for p, _ in rows], notice, CHANNEL,
            now, queued))
        keyed = [(job_id, job) for job_id, (_, job), fresh in zip(ids, rows, queued) if job.supersede_key and fresh]
        if keyed:
            await supersede_older_than_new(conn, keyed, now, stopped)
    by_delivery: dict[int, list[int]] = {id(p): [] for p in new}
    for job_id, (pending, _) in zip(ids, rows):
        by_delivery[id(pending)].append(job_id)
    return by_delivery


async def _apply_installation(conn: asyncpg.Connection, change: InstallationChange, now: float) -> None:
    # The repository list is merged in SQL, so two replicas changing one installation lose nothing.
    await conn.execute(
        "INSERT INTO installations (installation_id, account, account_type, active, suspended,"
        " repository_selection, repositories, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)"
        " ON CONFLICT (installation_id) DO UPDATE SET"
        " account = coalesce(excluded.account, installations.account),"
        " account_type = coalesce(excluded.account_type, installations.account_type),"
        " active = excluded.active, suspended = excluded.suspended,"
        " repository_selection = coalesce(excluded.repository_selection, installations.repository_selection),"
        " repositories = (SELECT coalesce(jsonb_agg(r ORDER BY r COLLATE \"C\"), '[]'::jsonb) FROM"
        "   (SELECT jsonb_array_elements_text(installations.repositories) AS r UNION SELECT unnest($9::text[])) s"
        "   WHERE r <> ALL($10::text[])),"
        " updated_at = excluded.updated_at",
        change.installation_id, change.account, change.account_type, change.active, change.suspended,
        change.repository_selection,
        dumps(sorted(set(change.repositories_added) - set(change.repositories_removed))), now,
        change.repositories_added, change.repositories_removed,
    )
