"""The PostgreSQL backend as several replicas use it: two store objects on one database stand for two
`prmedic serve` processes. The store contract itself runs in tests/test_store_contract.py."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest
from conftest import postgres_admin, postgres_database_url

from app.store import (
    Delivery,
    JobKind,
    JobState,
    NewJob,
    SchemaTooNew,
    StoreUnavailable,
    open_store,
)
from app.store.postgres.schema import SCHEMA_VERSION

# Generous bounds on waits for something another connection sends: a guard against hanging, never a timing claim.
PATIENCE = 20.0


@pytest.fixture
async def replicas(fresh_postgres_url):
    """Two opened stores on the test run's (emptied) database."""
    stores = [open_store(fresh_postgres_url, pool_size=4) for _ in range(2)]
    for store in stores:
        await store.open()
    yield stores
    for store in stores:
        await store.close()


@pytest.fixture
def empty_database():
    """The URL of a database of its own with no tables at all, dropped after the test."""
    name = f"prmedic_test_{uuid.uuid4().hex[:12]}"
    postgres_admin(f'CREATE DATABASE "{name}"')
    yield postgres_database_url(name)
    postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delivery(delivery_id: str | None = None) -> Delivery:
    return Delivery(delivery_id=delivery_id or uuid.uuid4().hex, event="pull_request", action="synchronize",
                    received_at=time.time())


def job(number: int = 7, sha: str = "a" * 40, kind: JobKind = JobKind.review) -> NewJob:
    return NewJob(kind=kind, repo="octo/repo", installation_id=1, pr_number=number, head_sha=sha,
                  supersede_key=f"{kind.value}:octo/repo#{number}")


async def heard_stop(store) -> asyncio.Future:
    """A future set to the first stopped jobs `store`'s listeners hear of."""
    heard: asyncio.Future = asyncio.get_running_loop().create_future()
    store.on_jobs_stopped(lambda jobs: heard.done() or heard.set_result(dict(jobs)))
    return heard


# -- intake across replicas ------------------------------------------------------------------------
async def test_a_delivery_sent_to_two_replicas_at_once_becomes_one_job(replicas):
    a, b = replicas
    for n in range(10):
        copies = [store.record_delivery(delivery(f"dup-{n}"), [job(number=n)]) for store in (a, b, a, b)]
        results = await asyncio.gather(*copies)
        assert sorted(r.duplicate for r in results) == [False, True, True, True]
    assert len(await a.list_jobs(limit=100)) == 10


async def test_deliveries_arriving_together_share_one_commit_and_each_gets_its_answer(replicas):
    a, _ = replicas
    batches: list[int] = []
    commit = a._commit

    async def counted(conn, batch, stopped):
        batches.append(len(batch))
        return await commit(conn, batch, stopped)

    a._commit = counted
    results = await asyncio.gather(*(a.record_delivery(delivery(), [job(number=n)]) for n in range(50)))
    assert [len(r.job_ids) for r in results] == [1] * 50 and not any(r.duplicate for r in results)
    assert len({r.job_ids[0] for r in results}) == 50
    assert sum(batches) == 50 and len(batches) < 50


# -- claiming across replicas ----------------------------------------------------------------------
async def test_two_replicas_claiming_at_once_never_get_the_same_job(replicas):
    a, b = replicas
    await asyncio.gather(*(a.record_delivery(delivery(), [job(number=n)]) for n in range(60)))
    claimed: list[int] = []
    while True:
        rounds = await asyncio.gather(*(store.claim_jobs(f"w{i}", 3, 60) for i, store in enumerate((a, b, a, b))))
        got = [j.id for jobs in rounds for j in jobs]
        if not got:
            break
        claimed += got
    assert len(claimed) == 60 and len(set(claimed)) == 60


async def test_siblings_recorded_by_two_replicas_at_once_are_settled_at_claim_the_newest_winning(replicas):
    a, b = replicas
    for number in range(10):
        first, second = await asyncio.gather(a.record_delivery(delivery(), [job(number, sha="1" * 40)]),
                                             b.record_delivery(delivery(), [job(number, sha="2" * 40)]))
        newest = max(first.job_ids + second.job_ids)
        claimed = await a.claim_jobs("w1", 5, 60) + await b.claim_jobs("w2", 5, 60)
        assert [j.id for j in claimed] == [newest]
        older = min(first.job_ids + second.job_ids)
        assert (await a.get_job(older)).state is JobState.superseded


async def test_a_tool_call_handed_to_two_replicas_is_claimed_by_one(replicas):
    a, b = replicas
    results = await asyncio.gather(*(s.claim_tool_call("sesn_1", "evt_1", "publish_review") for s in (a, b, a, b)))
    assert sorted(claimed for _, claimed in results) == [False, False, False, True]


async def test_two_replicas_never_both_take_the_last_fix_attempt(replicas):
    a, b = replicas
    results = await asyncio.gather(*(s.claim_fix_attempt("octo/repo", 7, "r" * 40, job_id, 1)
                                     for s, job_id in ((a, 1), (b, 2), (a, 3), (b, 4))))
    assert sorted(allowed for allowed, _ in results) == [False, False, False, True]


# -- wake-ups across replicas ----------------------------------------------------------------------
async def test_jobs_recorded_by_one_replica_wake_the_other_at_once(replicas):
    a, b = replicas
    b.jobs_recorded.clear()
    await a.record_delivery(delivery(), [job()])
    await asyncio.wait_for(b.jobs_recorded.wait(), PATIENCE)


async def test_a_cancel_through_one_replica_reaches_the_one_running_the_job(replicas):
    a, b = replicas
    [job_id] = (await a.record_delivery(delivery(), [job()])).job_ids
    [running] = await b.claim_jobs("b-worker", 1, 60)
    heard = await heard_stop(b)
    assert await a.request_cancel(running.id)
    assert await asyncio.wait_for(heard, PATIENCE) == {job_id: JobState.cancelled}


async def test_a_newer_head_recorded_by_one_replica_stops_the_review_running_on_the_other(replicas):
    a, b = replicas
    [old] = (await a.record_delivery(delivery(), [job(sha="1" * 40)])).job_ids
    await b.claim_jobs("b-worker", 1, 60)
    heard = await heard_stop(b)
    await a.record_delivery(delivery(), [job(sha="2" * 40)])
    assert await asyncio.wait_for(heard, PATIENCE) == {old: JobState.superseded}


async def test_a_replica_does_not_hear_its_own_changes_twice(replicas):
    a, b = replicas
    [job_id] = (await a.record_delivery(delivery(), [job()])).job_ids
    await a.claim_jobs("a-worker", 1, 60)
    heard_a: list[dict] = []
    a.on_jobs_stopped(lambda jobs: heard_a.append(dict(jobs)))
    heard_b = await heard_stop(b)
    await a.request_cancel(job_id)
    await asyncio.wait_for(heard_b, PATIENCE)  # b heard it from PostgreSQL, so a's copy was delivered too
    assert heard_a == [{job_id: JobState.cancelled}]


async def test_the_listener_reconnects_when_its_connection_is_killed(replicas):
    a, b = replicas
    listener = b._listener
    async with a._connection() as conn:
        await conn.execute("SELECT pg_terminate_backend($1)", listener.conn.get_server_pid())
    for _ in range(int(PATIENCE / 0.05)):
        if listener.reconnects:
            break
        await asyncio.sleep(0.05)
    assert listener.reconnects == 1 and b.jobs_recorded.is_set()  # woken: it may have missed notifications
    b.jobs_recorded.clear()
    await a.record_delivery(delivery(), [job()])
    await asyncio.wait_for(b.jobs_recorded.wait(), PATIENCE)
    assert b.describe()["listening"]


# -- one-time work across replicas -----------------------------------------------------------------
async def test_the_named_lock_holds_across_replicas(replicas):
    a, b = replicas
    inside: list[str] = []
    overlaps = 0

    async def hold(store, who: str) -> None:
        nonlocal overlaps
        async with store.exclusive("agents-sync"):
            overlaps += bool(inside)
            inside.append(who)
            await store.ping()  # a round trip to the server while holding it
            inside.remove(who)

    await asyncio.wait_for(asyncio.gather(*(hold(s, f"{i}") for i, s in enumerate((a, b, a, b, a, b)))), PATIENCE)
    assert overlaps == 0


# -- schema versions -------------------------------------------------------------------------------
async def test_two_replicas_starting_on_an_empty_database_migrate_it_once(empty_database):
    stores = [open_store(empty_database, pool_size=2) for _ in range(3)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        assert {store.describe()["schema_version"] for store in stores} == {SCHEMA_VERSION}
        conn = await asyncpg.connect(empty_database)
        try:
            versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
        finally:
            await conn.close()
        assert versions == list(range(1, SCHEMA_VERSION + 1))
    finally:
        for store in stores:
            await store.close()


async def test_a_database_upgraded_by_a_newer_prmedic_stops_start_up_naming_both_versions(empty_database):
    store = open_store(empty_database)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(empty_database)
    try:
        await conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)", SCHEMA_VERSION + 5)
    finally:
        await conn.close()
    with pytest.raises(SchemaTooNew) as refused:
        await open_store(empty_database).open()
    message = str(refused.value)
    assert f"version {SCHEMA_VERSION + 5}" in message and f"up to {SCHEMA_VERSION}" in message
    assert isinstance(refused.value, StoreUnavailable)


async def test_an_unreachable_server_is_store_unavailable_without_the_password():
    store = open_store("postgresql://prmedic:s3cret@127.0.0.1:1/prmedic")
    with pytest.raises(StoreUnavailable) as refused:
        await store.open()
    assert "127.0.0.1:1/prmedic" in str(refused.value) and "s3cret" not in str(refused.value)
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.ping()


# -- a worker on one replica, changes through the other --------------------------------------------
async def test_a_worker_idle_on_one_replica_runs_a_job_recorded_by_the_other_and_stops_on_its_cancel(replicas):
    from app.metrics import Metrics
    from app.worker import Worker

    a, b = replicas
    started: asyncio.Future = asyncio.get_running_loop().create_future()
    stopped: asyncio.Future = asyncio.get_running_loop().create_future()

    async def review(ctx):
        started.set_result(ctx.job.id)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set_result(ctx.job.id)
            raise

    # Polls and lease renewals an hour apart: only a notification can reach this worker in time.
    worker = Worker(b, {"review": review}, metrics=Metrics(), poll_seconds=3600, lease_seconds=3600)
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0)
        [job_id] = (await a.record_delivery(delivery(), [job()])).job_ids
        assert await asyncio.wait_for(started, PATIENCE) == job_id
        assert await a.request_cancel(job_id)
        assert await asyncio.wait_for(stopped, PATIENCE) == job_id
    finally:
        await worker.stop()
        await asyncio.wait_for(running, PATIENCE)
    assert (await a.get_job(job_id)).state is JobState.cancelled
