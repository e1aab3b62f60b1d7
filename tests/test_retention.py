"""Retention: the worker prunes what the store no longer needs past PRMEDIC_RETENTION_DAYS (the rules
of `Store.prune` are in tests/test_store_contract.py)."""

from __future__ import annotations

import asyncio
import logging
import time

from app.metrics import Metrics
from app.settings import Settings
from app.store import Delivery, JobKind, JobState, NewJob
from app.worker import Worker


async def finished_job(store) -> int:
    delivery = Delivery(delivery_id=f"d-{time.monotonic_ns()}", event="pull_request", received_at=time.time())
    [job_id] = (await store.record_delivery(delivery, [NewJob(kind=JobKind.review, repo="octo/repo")])).job_ids
    await store.claim_jobs("w1", 1, 60)
    assert await store.finish_job(job_id, "w1", JobState.done)
    return job_id


def test_retention_is_thirty_days_unless_set_and_zero_keeps_everything(settings_env, monkeypatch):
    assert Settings().retention_days == 30
    monkeypatch.setenv("PRMEDIC_RETENTION_DAYS", "0")
    assert Settings().retention_days == 0


async def test_a_sweep_prunes_past_the_age_and_logs_what_it_deleted(store, caplog):
    job_id = await finished_job(store)
    worker = Worker(store, {}, metrics=Metrics(), retention_seconds=1e-6)
    with caplog.at_level(logging.INFO, logger="prmedic.worker"):
        counts = await worker.sweep_retention()
    assert (counts["jobs"], counts["deliveries"]) == (1, 1) and await store.get_job(job_id) is None
    assert "retention: deleted 1 jobs, 1 deliveries (older than" in caplog.text


async def test_a_running_worker_sweeps_when_it_starts_and_a_worker_without_retention_never_does(store):
    job_id = await finished_job(store)
    keeper = Worker(store, {}, metrics=Metrics(), poll_seconds=0.01)
    task = asyncio.create_task(keeper.run())
    await asyncio.sleep(0.05)
    await keeper.stop()
    await asyncio.wait_for(task, 10)
    assert await store.get_job(job_id) is not None

    sweeper = Worker(store, {}, metrics=Metrics(), poll_seconds=0.01, retention_seconds=1e-6)
    task = asyncio.create_task(sweeper.run())
    for _ in range(400):
        if await store.get_job(job_id) is None:
            break
        await asyncio.sleep(0.025)
    await sweeper.stop()
    await asyncio.wait_for(task, 10)
    assert await store.get_job(job_id) is None
