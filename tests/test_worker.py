"""The worker: leases, retries, supersede, pipelines missing, and a worker killed mid-job."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import example
from gidgethub import GitHubBroken

from app.errors import PermanentError
from app.metrics import Metrics
from app.store import Delivery, JobKind, JobState, NewJob
from app.worker import Worker, retry_backoff


def opened_with_installation() -> dict:
    """GitHub's `opened` example, with the installation a real delivery to an App carries."""
    data = example("pull_request", "opened")
    data["installation"] = {"id": 1, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="}
    return data


def review_job(number: int = 7, sha: str = "a" * 40) -> NewJob:
    return NewJob(kind=JobKind.review, repo="octo/repo", installation_id=1, pr_number=number, head_sha=sha,
                  supersede_key=f"review:octo/repo#{number}", payload={"sender": "alice"})


async def record(store, *jobs: NewJob, max_attempts: int = 3) -> list[int]:
    delivery = Delivery(delivery_id=f"d-{time.monotonic_ns()}", event="pull_request", received_at=time.time())
    return (await store.record_delivery(delivery, jobs, max_attempts=max_attempts)).job_ids


def make_worker(store, pipelines, **kwargs) -> Worker:
    kwargs.setdefault("retry_base_seconds", 0)
    kwargs.setdefault("lease_seconds", 5)
    return Worker(store, pipelines, metrics=Metrics(), **kwargs)


async def test_a_job_runs_its_pipeline_once_and_is_done(store):
    seen = []

    async def review(ctx):
        seen.append(ctx.job.id)
        return {"review_url": "https://example.test/r/1"}

    [job_id] = await record(store, review_job())
    await make_worker(store, {"review": review}).run_until_idle()
    job = await store.get_job(job_id)
    assert seen == [job_id]
    assert (job.state, job.attempts, job.result) == (JobState.done, 1, {"review_url": "https://example.test/r/1"})


async def test_transient_failures_are_retried_then_the_job_fails_with_its_error(store):
    calls = []

    async def review(ctx):
        calls.append(ctx.job.attempts)
        raise GitHubBroken(__import__("http").HTTPStatus.BAD_GATEWAY, "Bad Gateway")

    [job_id] = await record(store, review_job(), max_attempts=3)
    await make_worker(store, {"review": review}).run_until_idle()
    job = await store.get_job(job_id)
    assert calls == [1, 2, 3]
    assert job.state is JobState.failed
    assert "gave up after 3 attempts" in job.last_error and "Bad Gateway" in job.last_error


async def test_a_transient_failure_then_success(store):
    async def review(ctx):
        if ctx.job.attempts == 1:
            raise asyncio.TimeoutError()
        return {}

    [job_id] = await record(store, review_job())
    await make_worker(store, {"review": review}).run_until_idle()
    job = await store.get_job(job_id)
    assert (job.state, job.attempts) == (JobState.done, 2)
    assert "TimeoutError" in job.last_error


async def test_retry_waits_with_exponential_backoff(store):
    async def review(ctx):
        raise GitHubBroken(__import__("http").HTTPStatus.SERVICE_UNAVAILABLE)

    [job_id] = await record(store, review_job())
    worker = make_worker(store, {"review": review}, retry_base_seconds=30)
    await worker.run_until_idle()
    job = await store.get_job(job_id)
    assert job.state is JobState.queued and job.attempts == 1
    assert 30 * 0.5 - 1 <= job.run_after - time.time() <= 30
    assert retry_backoff(3, 30) <= 120 and retry_backoff(3, 30) >= 60
    assert retry_backoff(30, 30) <= 15 * 60


async def test_a_permanent_error_fails_at_once(store):
    async def review(ctx):
        raise PermanentError("the repository config is unreadable")

    [job_id] = await record(store, review_job())
    await make_worker(store, {"review": review}).run_until_idle()
    job = await store.get_job(job_id)
    assert (job.state, job.attempts) == (JobState.failed, 1)
    assert "repository config is unreadable" in job.last_error


async def test_a_kind_without_pipeline_is_marked_visibly(store):
    [job_id] = await record(store, review_job())
    await make_worker(store, {}).run_until_idle()
    job = await store.get_job(job_id)
    assert job.state is JobState.no_pipeline
    assert "no pipeline for job kind 'review'" in job.last_error


async def test_newer_job_supersedes_a_queued_one(store):
    ran = []

    async def review(ctx):
        ran.append(ctx.job.head_sha)
        return {}

    older, newer = await record(store, review_job(sha="1" * 40), review_job(sha="2" * 40))
    await make_worker(store, {"review": review}).run_until_idle()
    assert ran == ["2" * 40]
    assert (await store.get_job(older)).state is JobState.superseded
    assert (await store.get_job(newer)).state is JobState.done


async def test_newer_job_supersedes_a_running_one(store):
    started = asyncio.Event()
    outcomes = []

    async def review(ctx):
        started.set()
        try:
            if ctx.job.head_sha == "1" * 40:
                await asyncio.sleep(30)
            outcomes.append(("finished", ctx.job.head_sha))
        except asyncio.CancelledError:
            outcomes.append(("interrupted", ctx.job.head_sha))
            raise
        return {}

    worker = make_worker(store, {"review": review}, lease_seconds=2, poll_seconds=0.05)
    runner = asyncio.create_task(worker.run())
    [older] = await record(store, review_job(sha="1" * 40))
    await asyncio.wait_for(started.wait(), 5)
    [newer] = await record(store, review_job(sha="2" * 40))
    for _ in range(100):
        if (await store.get_job(newer)).state is JobState.done and not worker.running:
            break
        await asyncio.sleep(0.05)
    await worker.stop()
    await runner
    assert ("interrupted", "1" * 40) in outcomes and ("finished", "2" * 40) in outcomes
    assert (await store.get_job(older)).state is JobState.superseded


async def test_jobs_for_different_prs_run_concurrently_within_the_limit(store):
    active, peak = 0, 0

    async def review(ctx):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        return {}

    await record(store, *(review_job(number=n) for n in range(10)))
    await make_worker(store, {"review": review}, concurrency=3).run_until_idle()
    assert peak == 3
    assert {j.state for j in await store.list_jobs()} == {JobState.done}


async def test_an_expired_lease_is_taken_up_again(store):
    [job_id] = await record(store, review_job())
    [claimed] = await store.claim_jobs("dead-worker", 1, lease_seconds=0.01)
    await asyncio.sleep(0.05)
    [again] = await store.claim_jobs("live-worker", 1, lease_seconds=5)
    assert (again.id, again.attempts, again.lease_owner) == (job_id, 2, "live-worker")
    assert not await store.finish_job(job_id, "dead-worker", JobState.done)
    assert await store.renew_lease(job_id, "dead-worker", 5) is None


async def test_a_job_whose_workers_keep_dying_fails_after_its_attempts(store):
    [job_id] = await record(store, review_job(), max_attempts=2)
    for _ in range(2):
        assert await store.claim_jobs("dying", 1, lease_seconds=0.01)
        await asyncio.sleep(0.03)
    assert await store.claim_jobs("next", 1, lease_seconds=5) == []
    job = await store.get_job(job_id)
    assert job.state is JobState.failed and "stopped responding 2 times" in job.last_error


async def test_jobs_caused_by_the_bot_are_skipped(store):
    job = review_job()
    job.payload["sender"] = "prmedic[bot]"
    [job_id] = await record(store, job)

    async def review(ctx):
        raise AssertionError("must not run")

    await make_worker(store, {"review": review}, bot_login="prmedic[bot]").run_until_idle()
    assert (await store.get_job(job_id)).state is JobState.skipped


async def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def _start_worker(trace: Path, env: dict) -> subprocess.Popen:
    script = Path(__file__).parent / "helpers" / "worker_process.py"
    return subprocess.Popen([sys.executable, str(script), str(trace), "60"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


async def test_a_worker_killed_mid_job_is_replaced_and_the_job_completes_exactly_once(
    settings_env, deliver, store, tmp_path
):
    response = await deliver("pull_request", opened_with_installation())
    assert response.status == 202
    [job_id] = (await response.json())["jobs"]
    trace = tmp_path / "trace.txt"
    # A long lease: the restarted worker must see that the old one is gone, not wait for expiry.
    env = {**os.environ, **settings_env, "PRMEDIC_JOB_LEASE_SECONDS": "600", "PRMEDIC_WORKER_POLL_SECONDS": "0.2"}

    first = _start_worker(trace, env)
    try:
        await _wait_for(lambda: trace.exists() and "start" in trace.read_text())
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    assert (await store.get_job(job_id)).state is JobState.running

    second = _start_worker(trace, env)
    try:
        await _wait_for(lambda: "done" in trace.read_text())
        for _ in range(100):
            if (await store.get_job(job_id)).state is JobState.done:
                break
            await asyncio.sleep(0.05)
    finally:
        second.send_signal(signal.SIGTERM)
        output = second.communicate(timeout=20)[0].decode()
    lines = trace.read_text().splitlines()
    assert lines == [f"start {job_id} attempt 1", f"start {job_id} attempt 2", f"done {job_id}"], output
    job = await store.get_job(job_id)
    assert (job.state, job.attempts, job.result) == (JobState.done, 2, {"posted": True})
    assert second.returncode == 0, output


@pytest.mark.parametrize("state", [JobState.cancelled])
async def test_cancel_request_stops_a_running_job(store, state):
    started = asyncio.Event()

    async def review(ctx):
        started.set()
        await asyncio.sleep(30)

    worker = make_worker(store, {"review": review}, lease_seconds=1, poll_seconds=0.05)
    runner = asyncio.create_task(worker.run())
    [job_id] = await record(store, review_job())
    await asyncio.wait_for(started.wait(), 5)
    assert await store.request_cancel(job_id, state)
    await _wait_for(lambda: not worker.running, timeout=5)
    await worker.stop()
    await runner
    assert (await store.get_job(job_id)).state is state


async def test_stopping_gives_back_only_the_jobs_whose_work_has_ended(store):
    started, busy = asyncio.Event(), asyncio.Event()

    async def quick(ctx):
        started.set()
        await asyncio.sleep(30)  # cancelled at once on stop

    async def stubborn(ctx):
        busy.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:  # like a tool call that finishes before the task ends
            await asyncio.sleep(0.5)
            raise

    worker = make_worker(store, {"review": quick, "fix": stubborn}, lease_seconds=30, poll_seconds=0.05)
    runner = asyncio.create_task(worker.run())
    [quick_id] = await record(store, review_job())
    [busy_id] = await record(store, NewJob(kind=JobKind.fix, repo="octo/repo", installation_id=1, head_sha="b" * 40,
                                           supersede_key="fix:octo/repo@b"))
    await asyncio.wait_for(asyncio.gather(started.wait(), busy.wait()), 5)
    await worker.stop(grace=0.1)
    await runner
    given_back, still_leased = await store.get_job(quick_id), await store.get_job(busy_id)
    assert given_back.attempts == 0 and given_back.lease_expires_at == 0
    assert still_leased.attempts == 1 and still_leased.lease_owner == worker.owner
    assert still_leased.lease_expires_at > time.time()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_prmedic_serve_keeps_an_accepted_delivery_through_kill_9(settings_env, store, tmp_path):
    import aiohttp

    from conftest import delivery_headers

    port = _free_port()
    env = {**os.environ, **settings_env, "PRMEDIC_HOST": "127.0.0.1", "PRMEDIC_PORT": str(port),
           "PRMEDIC_WORKER_POLL_SECONDS": "0.1", "PRMEDIC_JOB_LEASE_SECONDS": "2"}
    url = f"http://127.0.0.1:{port}"

    async def start() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "app", "serve"], env=env, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"{url}/healthz") as answer:
                        if answer.status == 200:
                            return proc
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        proc.kill()
        raise AssertionError(proc.communicate()[0].decode())

    body = __import__("json").dumps(opened_with_installation()).encode()
    headers = delivery_headers("pull_request", body, delivery_id="kill-9-delivery")
    server = await start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/api/github/webhooks", data=body, headers=headers) as answer:
                assert answer.status == 202
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        server = await start()
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/api/github/webhooks", data=body, headers=headers) as answer:
                assert answer.status == 200  # the redelivery is recognised after the restart
        restarted = f":{server.pid}:"
        for _ in range(100):
            jobs = await store.list_jobs()
            if jobs and restarted in (jobs[0].lease_owner or ""):
                break
            await asyncio.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=20)[0].decode()
    [job] = jobs
    # the restarted process took the job up (GitHub is unreachable here, so it cannot finish it)
    assert restarted in (job.lease_owner or ""), output
    assert job.delivery_id == "kill-9-delivery"
    assert server.returncode == 0, output
