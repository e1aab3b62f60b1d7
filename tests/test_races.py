"""Races around one pull request: redeliveries, pushes mid-review, two workers claiming at once.

One review per head, whatever arrives: a second job for the head a review is running on waits for
it (and then finds the head reviewed); a job for a newer head supersedes the running one at once,
and a superseded session can never publish.
"""

from __future__ import annotations

import asyncio
import time

from conftest import Deliverer
from review_helpers import REPO, PullRequestRepo, review_script

from app.metrics import Metrics
from app.server import create_app
from app.store import Delivery, JobKind, JobState, NewJob, open_store

COMMENT = {"path": "src/app.py", "line": 41, "severity": "major", "body": "`items[1:]` skips the first item."}


def gated_review(gate: asyncio.Event):
    """A review session that reports progress, then waits for `gate` before it publishes."""
    script = review_script([COMMENT])

    async def wait_for_gate(ctx) -> None:
        await gate.wait()

    steps = script.turns[0]
    steps.insert(len(steps) - 5, wait_for_gate)  # just before publish_review
    return script


async def until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s")
        await asyncio.sleep(0.005)


def answered(session, name: str) -> list:
    return [r for r in session.tool_results if r.name == name]


async def all_finished(store, count: int) -> bool:
    jobs = await store.list_jobs(kind="review")
    return len(jobs) == count and all(j.state.finished for j in jobs)


async def wait_all_finished(store, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await all_finished(store, count):
        if time.monotonic() > deadline:
            raise AssertionError([(j.id, j.state, j.last_error) for j in await store.list_jobs()])
        await asyncio.sleep(0.02)


def review_check_runs(state, sha):
    return [c for c in state.check_runs_for(REPO, sha) if c.name == "prmedic review"]


class RunningWorker:
    """`worker.run()` in the background, as `prmedic serve` runs it, with a realistic lease."""

    def __init__(self, app_stack, *, lease_seconds: float = 60.0, poll_seconds: float | None = None) -> None:
        self.worker = app_stack.worker()
        self.worker.lease_seconds = lease_seconds
        if poll_seconds is not None:
            self.worker.poll_seconds = poll_seconds

    async def __aenter__(self):
        self.task = asyncio.create_task(self.worker.run())
        return self.worker

    async def __aexit__(self, *exc) -> None:
        await self.worker.stop()
        await self.task


# -- item: one review per head ------------------------------------------------------------------


async def test_a_redelivery_and_ready_for_review_while_the_review_runs_make_no_second_session(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    gate = asyncio.Event()
    sim.default_script = gated_review(gate)
    async with RunningWorker(app_stack):
        assert (await app_stack.deliver("pull_request", pr.event("opened"))).status == 202
        await until(lambda: sim.sessions and answered(sim.session(), "report_progress"), what="first review")
        # GitHub's redelivery (a new delivery id), then `ready_for_review` right behind it
        assert (await app_stack.deliver("pull_request", pr.event("opened"))).status == 202
        assert (await app_stack.deliver("pull_request", pr.event("ready_for_review"))).status == 202
        gate.set()
        await wait_all_finished(app_stack.store, 3)

    first, redelivered, ready = sorted(await app_stack.store.list_jobs(kind="review"), key=lambda j: j.id)
    assert first.state is JobState.done and not first.result.get("skipped"), first.last_error
    assert redelivered.state is JobState.superseded  # by `ready`, before it ever ran
    assert ready.state is JobState.done and "already reviewed" in ready.result["skipped"]
    assert len(sim.sessions) == 1 and not sim.interrupts
    assert len(state.reviews_of(REPO, pr.pr.number)) == 1
    assert len(review_check_runs(state, pr.head)) == 1


async def test_a_push_mid_review_interrupts_the_old_session_at_once_and_only_the_new_head_is_reviewed(
    app_stack, git_repo
):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    gate = asyncio.Event()
    sim.queue_script(gated_review(gate), review_script([COMMENT]))
    async with RunningWorker(app_stack):  # a 60 s lease: its renewal comes 20 s later
        assert (await app_stack.deliver("pull_request", pr.event("opened"))).status == 202
        await until(lambda: sim.sessions and answered(sim.session(), "report_progress"), what="first review")
        old = sim.session()
        old_sha = pr.head
        pr.push({"src/util.py": "def helper(x):\n    return x * 2\n"})
        pushed = time.monotonic()
        assert (await app_stack.deliver("pull_request", pr.event("synchronize"))).status == 202
        await until(lambda: old.interrupts, timeout=10, what="old session interrupted")
        delay = time.monotonic() - pushed
        gate.set()  # the old agent would publish now: too late
        await wait_all_finished(app_stack.store, 2)

    print(f"\nsupersede delay, push delivered to this process → old session interrupted: {delay * 1000:.0f} ms")
    assert delay < 5
    older, newer = sorted(await app_stack.store.list_jobs(kind="review"), key=lambda j: j.id)
    assert older.state is JobState.superseded and newer.state is JobState.done, newer.last_error
    assert not answered(old, "publish_review")
    (review,) = state.reviews_of(REPO, pr.pr.number)
    assert review.commit_id == pr.head
    (old_check,) = review_check_runs(state, old_sha)
    assert old_check.conclusion == "cancelled" and old_check.output["title"] == "Superseded by a newer push"


class OtherServer:
    """A second `prmedic serve --no-worker` on the same database: what it records, the worker of
    this process learns from the database, not from its own store object."""

    def __init__(self, app_stack, aiohttp_client) -> None:
        self.app_stack, self.aiohttp_client = app_stack, aiohttp_client

    async def __aenter__(self) -> Deliverer:
        self.store = open_store(self.app_stack.settings.database_url)
        await self.store.open()
        return Deliverer(await self.aiohttp_client(create_app(self.app_stack.settings, self.store, Metrics())))

    async def __aexit__(self, *exc) -> None:
        await self.store.close()


async def test_a_push_recorded_by_another_process_stops_the_review_within_one_poll(app_stack, git_repo, aiohttp_client):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    gate = asyncio.Event()
    sim.queue_script(gated_review(gate), review_script([COMMENT]))
    async with OtherServer(app_stack, aiohttp_client) as other_server, RunningWorker(app_stack, poll_seconds=1.0):
        assert (await app_stack.deliver("pull_request", pr.event("opened"))).status == 202
        await until(lambda: sim.sessions and answered(sim.session(), "report_progress"), what="first review")
        old = sim.session()
        pr.push({"src/util.py": "def helper(x):\n    return x * 2\n"})
        pushed = time.monotonic()
        assert (await other_server("pull_request", pr.event("synchronize"))).status == 202
        await until(lambda: old.interrupts, timeout=10, what="old session interrupted")
        delay = time.monotonic() - pushed
        gate.set()
        await wait_all_finished(app_stack.store, 2)

    print(f"\nsupersede delay, push delivered to another process (worker poll 1 s) → old session interrupted: "
          f"{delay * 1000:.0f} ms")
    assert delay < 5
    assert not answered(old, "publish_review")
    (review,) = state.reviews_of(REPO, pr.pr.number)
    assert review.commit_id == pr.head


async def test_a_superseded_session_that_publishes_before_its_worker_polls_is_refused_and_stopped(
    app_stack, git_repo, aiohttp_client
):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    gate = asyncio.Event()
    sim.queue_script(gated_review(gate), review_script([COMMENT]))
    async with OtherServer(app_stack, aiohttp_client) as other_server:
        async with RunningWorker(app_stack, poll_seconds=60.0):  # no poll in this test
            assert (await app_stack.deliver("pull_request", pr.event("opened"))).status == 202
            await until(lambda: sim.sessions and answered(sim.session(), "report_progress"), what="first review")
            old = sim.session()
            old_sha = pr.head
            pr.push({"src/util.py": "def helper(x):\n    return x * 2\n"})
            assert (await other_server("pull_request", pr.event("synchronize"))).status == 202
            gate.set()  # the old agent publishes at once
            await until(lambda: old.interrupts, timeout=10, what="old session interrupted")
        await app_stack.run_jobs()

    (publish,) = answered(old, "publish_review")
    assert publish.is_error and "Refused" in publish.text and "superseded" in publish.text
    (review,) = state.reviews_of(REPO, pr.pr.number)
    assert review.commit_id == pr.head
    older, newer = sorted(await app_stack.store.list_jobs(kind="review"), key=lambda j: j.id)
    assert older.state is JobState.superseded and newer.state is JobState.done, newer.last_error
    (old_check,) = review_check_runs(state, old_sha)
    assert old_check.conclusion == "cancelled"


# -- the store's rules ----------------------------------------------------------------------------


def job(kind: JobKind = JobKind.review, sha: str = "1" * 40, number: int = 7) -> NewJob:
    return NewJob(kind=kind, repo="octo/repo", installation_id=1, pr_number=number, head_sha=sha,
                  supersede_key=f"{kind.value}:octo/repo#{number}", payload={})


async def record(store, *jobs: NewJob) -> list[int]:
    delivery = Delivery(delivery_id=f"d-{time.monotonic_ns()}", event="pull_request", received_at=time.time())
    return (await store.record_delivery(delivery, jobs)).job_ids


async def states(store, *ids: int) -> list[JobState]:
    return [(await store.get_job(i)).state for i in ids]


async def test_a_second_review_of_the_running_head_waits_and_a_new_head_supersedes_both_at_once(store):
    stopped: list[dict] = []
    store.on_jobs_stopped(lambda jobs: stopped.append(dict(jobs)))
    [a] = await record(store, job(sha="1" * 40))
    assert [j.id for j in await store.claim_jobs("w1", 1, 60)] == [a]

    [b] = await record(store, job(sha="1" * 40))
    assert await states(store, a, b) == [JobState.running, JobState.queued]
    assert await store.claim_jobs("w2", 5, 60) == []  # b waits while a runs on its head
    assert stopped == []

    [c] = await record(store, job(sha="2" * 40))
    assert await states(store, a, b) == [JobState.superseded, JobState.superseded]
    assert stopped == [{a: JobState.superseded}]  # the worker of this process hears it at once
    assert [j.id for j in await store.claim_jobs("w2", 5, 60)] == [c]


async def test_a_second_review_of_the_same_head_runs_once_the_first_has_finished(store):
    [a] = await record(store, job())
    await store.claim_jobs("w1", 1, 60)
    [b] = await record(store, job())
    assert await store.finish_job(a, "w1", JobState.done)
    assert [j.id for j in await store.claim_jobs("w2", 5, 60)] == [b]


async def test_a_queued_review_is_replaced_by_a_newer_one_for_the_same_head(store):
    a, b = await record(store, job(), job())
    assert await states(store, a, b) == [JobState.superseded, JobState.queued]


async def test_a_fix_for_the_same_head_still_replaces_the_running_one(store):
    [a] = await record(store, job(JobKind.fix))
    await store.claim_jobs("w1", 1, 60)
    [b] = await record(store, job(JobKind.fix))  # one more failing check: the newest gathers them all
    assert await states(store, a, b) == [JobState.superseded, JobState.queued]


async def test_two_worker_slots_claiming_at_the_same_moment_never_get_the_superseded_job(store, tmp_path):
    other = open_store(f"sqlite:///{tmp_path / 'prmedic.db'}")  # another worker process on the same database
    await other.open()
    try:
        older, newer = await asyncio.gather(record(store, job(sha="1" * 40)), record(store, job(sha="2" * 40)))
        first, second = await asyncio.gather(store.claim_jobs("slot-1", 1, 60), other.claim_jobs("slot-2", 1, 60))
    finally:
        await other.close()
    assert sorted(j.id for j in first + second) == newer
    assert await states(store, *older) == [JobState.superseded]


async def test_a_cancel_request_reaches_the_worker_of_this_process_at_once(store):
    stopped: list[dict] = []
    unsubscribe = store.on_jobs_stopped(lambda jobs: stopped.append(dict(jobs)))
    [a] = await record(store, job())
    await store.claim_jobs("w1", 1, 60)
    assert await store.request_cancel(a)
    unsubscribe()
    assert stopped == [{a: JobState.cancelled}]
    assert await store.held_states([a], "w1") == {a: JobState.cancelled}
    assert await store.held_states([a], "someone-else") == {a: None}
