"""One review per head between `/review` and the automatic review (README, "Slash-commands"):
an automatic review of a head a running `/review` is reviewing leaves it to that command, and a
command and an automatic review starting at the same moment never both review the head."""

from __future__ import annotations

import asyncio
import time

import pytest
from command_helpers import FINDING, _outcome, comment_event, finished, reactions
from review_helpers import REPO, review_script, review_sessions

from app.pipelines.pr_state import CommandReview, clear_command_review, command_review, mark_command_review
from app.pipelines.review.overlap import running_command_review
from app.store import Delivery, JobKind, JobState, NewJob

try:
    from sims.managed_agents import pause
except ImportError:  # pragma: no cover
    from tests.sims.managed_agents import pause


async def _until_all_finished(store, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = await store.list_jobs()
        if len(jobs) == count and all(j.state.finished for j in jobs):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError([(j.kind.value, j.state.value) for j in await store.list_jobs()])


async def review_then_push_event(app_stack, pr, action: str) -> dict:
    """`/review` by maintainer, its session paused a moment; while it runs, a `pull_request`
    delivery (`action`) for the same head. Runs the worker until both jobs end; the comment's payload."""
    sim = app_stack.agents.sim
    slow = review_script([FINDING])
    slow.turns[0].insert(0, pause(1.5))
    sim.queue_script(slow)
    sim.default_script = review_script([FINDING])  # what a second session would run
    worker = app_stack.worker()
    running = asyncio.create_task(worker.run())
    try:
        data = comment_event(pr, "/review")
        await app_stack.deliver("issue_comment", data)
        await sim.wait_until(lambda: len(review_sessions(sim)) == 1, timeout=10)
        await app_stack.deliver("pull_request", pr.event(action))
        await _until_all_finished(app_stack.store, 2)
    finally:
        await worker.stop()
        await running
    return data


# -- end to end: a `/review` running, then the automatic review's delivery ---------------------

@pytest.mark.parametrize("action", ["opened", "synchronize"])
async def test_an_automatic_review_of_the_head_a_review_command_reviews_is_left_to_it(app_stack, pr, action):
    state, sim = app_stack.state, app_stack.agents.sim
    if action == "synchronize":
        pr.push({"src/util.py": "def helper(x):\n    return x * 2\n"})  # its delivery comes while /review runs
    data = await review_then_push_event(app_stack, pr, action)

    assert len(review_sessions(sim)) == 1
    assert len(state.reviews_of(REPO, pr.pr.number)) == 1
    cid, answer, comment = _outcome(app_stack, pr, data["comment"]["id"])
    command_job = await finished(app_stack, cid)
    assert command_job.result["result"] == "reviewed"
    assert f"Reviewed `{pr.head[:7]}`: 1 finding(s)" in answer and reactions(comment) == ["eyes", "rocket"]
    (review_job,) = await app_stack.store.list_jobs(kind="review")
    assert review_job.state is JobState.done and review_job.head_sha == pr.head
    assert review_job.result == {"skipped": "a `/review` of this commit asked by @maintainer is running"}
    # The command's check run is the commit's review check; the automatic job adds none beside it.
    (check,) = [c for c in state.check_runs_for(REPO, pr.head) if c.name == "prmedic review"]
    assert check.external_id == f"prmedic-job-{command_job.id}" and check.conclusion == "neutral"
    # The head is recorded as reviewed by the command, and its mark is gone.
    stored = await app_stack.store.get_pull_review(REPO, pr.pr.number)
    assert stored.head_sha == pr.head and stored.job_id == command_job.id
    assert await command_review(app_stack.store, REPO, pr.pr.number) is None
    assert state.violations == []


async def test_the_next_push_after_a_review_command_is_reviewed_automatically(app_stack, pr):
    state, sim = app_stack.state, app_stack.agents.sim
    await review_then_push_event(app_stack, pr, "opened")
    pr.push({"src/util.py": "def helper(x):\n    return x * 3\n"})
    await app_stack.deliver("pull_request", pr.event("synchronize"))
    await app_stack.run_jobs()
    assert len(review_sessions(sim)) == 2
    (_, latest) = sorted(await app_stack.store.list_jobs(kind="review"), key=lambda j: j.id)
    assert latest.head_sha == pr.head and "skipped" not in latest.result
    (check,) = [c for c in state.check_runs_for(REPO, pr.head) if c.name == "prmedic review"]
    assert check.external_id == f"prmedic-job-{latest.id}" and check.conclusion == "neutral"


async def test_a_review_command_that_finds_the_automatic_review_running_leaves_no_mark(app_stack, pr):
    from test_commands import command_during_a_running_review

    state, sim = app_stack.state, app_stack.agents.sim
    data = await command_during_a_running_review(app_stack, pr, "/review", 1)
    _cid, answer, _ = _outcome(app_stack, pr, data["comment"]["id"])
    assert "is already running" in answer
    assert await command_review(app_stack.store, REPO, pr.pr.number) is None
    assert len(sim.sessions) == 1 and len(state.reviews_of(REPO, pr.pr.number)) == 1


# -- the marks, when a command and an automatic review start at the same moment ---------------

_deliveries = iter(range(1, 1_000))
HEAD, OTHER_HEAD = "a" * 40, "b" * 40


async def _running(store, kind: JobKind, payload: dict, head: str | None = HEAD):
    """A job of `kind` on PR #2, claimed by a worker (running)."""
    delivery = Delivery(delivery_id=f"overlap-{next(_deliveries)}", event="issue_comment", action="created",
                        received_at=time.time())
    new = NewJob(kind=kind, repo=REPO, installation_id=1, pr_number=2, head_sha=head,
                 supersede_key=f"review:{REPO}#2" if kind is JobKind.review else None, payload=payload)
    (job_id,) = (await store.record_delivery(delivery, [new])).job_ids
    (job,) = await store.claim_jobs("w1", 1, 60)
    assert job.id == job_id and job.state is JobState.running
    return job


def _review_command(user: str = "maintainer", command: str = "review") -> dict:
    return {"command": command, "args": "", "comment": {"id": 1, "author": user}}


async def test_a_review_command_still_deciding_is_waited_for_then_its_decision_counts(store):
    command = await _running(store, JobKind.command, _review_command())
    automatic = await _running(store, JobKind.review, {"trigger": "opened"})
    mark = CommandReview(HEAD, command.id, reviewing=False)
    await mark_command_review(store, REPO, 2, mark)

    async def decide_to_review():
        await asyncio.sleep(0.2)
        await mark_command_review(store, REPO, 2, CommandReview(HEAD, command.id, reviewing=True))

    started = time.monotonic()
    asker, _ = await asyncio.gather(running_command_review(store, automatic, poll_seconds=0.01), decide_to_review())
    assert asker == "maintainer" and time.monotonic() - started >= 0.2

    await mark_command_review(store, REPO, 2, mark)  # the command saw the automatic review: it backs off

    async def back_off():
        await asyncio.sleep(0.2)
        await clear_command_review(store, REPO, 2, command.id)

    asker, _ = await asyncio.gather(running_command_review(store, automatic, poll_seconds=0.01), back_off())
    assert asker is None


async def test_a_command_that_never_decides_does_not_hold_the_automatic_review_for_ever(store):
    command = await _running(store, JobKind.command, _review_command())
    automatic = await _running(store, JobKind.review, {"trigger": "opened"})
    await mark_command_review(store, REPO, 2, CommandReview(HEAD, command.id, reviewing=False))
    assert await running_command_review(store, automatic, settle_seconds=0.1, poll_seconds=0.01) is None


async def test_only_a_running_review_command_of_the_same_head_counts(store):
    command = await _running(store, JobKind.command, _review_command("alice"))
    automatic = await _running(store, JobKind.review, {"trigger": "synchronize"})
    await mark_command_review(store, REPO, 2, CommandReview(HEAD, command.id, reviewing=True))
    assert await running_command_review(store, automatic) == "alice"

    await mark_command_review(store, REPO, 2, CommandReview(OTHER_HEAD, command.id, reviewing=True))
    assert await running_command_review(store, automatic) is None  # a /review of the commit before the push

    ask = await _running(store, JobKind.command, _review_command(command="ask"))
    await mark_command_review(store, REPO, 2, CommandReview(HEAD, ask.id, reviewing=True))
    assert await running_command_review(store, automatic) is None

    await mark_command_review(store, REPO, 2, CommandReview(HEAD, command.id, reviewing=True))
    assert await store.finish_job(command.id, "w1", JobState.done, result={})
    assert await running_command_review(store, automatic) is None  # a mark left by a job that ended


async def test_a_command_clears_only_its_own_mark(store):
    await mark_command_review(store, REPO, 2, CommandReview(HEAD, 8, reviewing=True))
    await clear_command_review(store, REPO, 2, 7)
    assert await command_review(store, REPO, 2) == CommandReview(HEAD, 8, reviewing=True)
    await clear_command_review(store, REPO, 2, 8)
    assert await command_review(store, REPO, 2) is None


def test_a_mark_reads_back_as_written_and_anything_else_as_none():
    mark = CommandReview(HEAD, 12, reviewing=False)
    assert CommandReview.decode(mark.encode()) == mark
    for value in (None, "", HEAD, f"{HEAD}:x:reviewing", f"{HEAD}:12:maybe"):
        assert CommandReview.decode(value) is None
