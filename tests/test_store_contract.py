"""The store interface's contract (docs/architecture.md, "The store"), run against every backend.

The `store` fixture here is parametrized over `BACKENDS`; a new backend (PostgreSQL) adds an
entry that opens it on a fresh database and every test below runs against it unchanged. The
worker and race tests exercise the same rules through the running system.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from app.store import (
    Delivery,
    FixProposal,
    InstallationChange,
    JobKind,
    JobState,
    NewJob,
    PullReviewState,
    Store,
    open_store,
)

# backend name → database URL of a fresh, empty database: SQLite under the test's tmp_path, PostgreSQL
# the test run's database (tests/conftest.py) with its tables emptied
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "sqlite": lambda request, tmp: f"sqlite:///{tmp / 'contract.db'}",
    "postgresql": lambda request, tmp: request.getfixturevalue("fresh_postgres_url"),
}


@pytest.fixture(params=sorted(BACKENDS))
def database_url(request, tmp_path) -> str:
    return BACKENDS[request.param](request, tmp_path)


@pytest.fixture
async def store(database_url):
    store = open_store(database_url)
    await store.open()
    yield store
    await store.close()


_deliveries = itertools.count(1)


def job(kind: JobKind = JobKind.review, sha: str = "a" * 40, number: int = 7, repo: str = "octo/repo") -> NewJob:
    return NewJob(kind=kind, repo=repo, installation_id=1, pr_number=number, head_sha=sha,
                  supersede_key=f"{kind.value}:{repo}#{number}", payload={"sender": "alice"})


def delivery(delivery_id: str | None = None) -> Delivery:
    return Delivery(delivery_id=delivery_id or f"contract-{next(_deliveries)}", event="pull_request",
                    action="synchronize", received_at=time.time())


async def record(store: Store, *jobs: NewJob, max_attempts: int = 3) -> list[int]:
    return (await store.record_delivery(delivery(), jobs, max_attempts=max_attempts)).job_ids


async def states(store: Store, *ids: int) -> list[JobState]:
    return [(await store.get_job(i)).state for i in ids]


def listen(store: Store) -> list[dict]:
    heard: list[dict] = []
    store.on_jobs_stopped(lambda jobs: heard.append(dict(jobs)))
    return heard


# -- intake -------------------------------------------------------------------------------------
async def test_a_delivery_is_recorded_once_with_its_jobs_queued(store):
    d = delivery("same-id")
    first = await store.record_delivery(d, [job()])
    again = await store.record_delivery(d, [job()])
    assert (first.duplicate, len(first.job_ids)) == (False, 1)
    assert (again.duplicate, again.job_ids) == (True, [])
    [stored] = await store.list_jobs()
    assert (stored.id, stored.state, stored.attempts, stored.delivery_id) == (first.job_ids[0], JobState.queued, 0,
                                                                             "same-id")
    assert (stored.kind, stored.head_sha, stored.payload) == (JobKind.review, "a" * 40, {"sender": "alice"})
    assert store.jobs_recorded.is_set()


async def test_concurrent_copies_of_a_delivery_record_one(store):
    results = await asyncio.gather(*(store.record_delivery(delivery("dup"), [job()]) for _ in range(5)))
    assert sorted(r.duplicate for r in results) == [False, True, True, True, True]
    assert len(await store.list_jobs()) == 1


async def test_installation_changes_are_kept_and_merged(store):
    await store.record_delivery(delivery(), installations=[InstallationChange(
        installation_id=5, account="octo", account_type="Organization", repository_selection="selected",
        repositories_added=["octo/a", "octo/b"])])
    await store.record_delivery(delivery(), installations=[InstallationChange(
        installation_id=5, repositories_added=["octo/c"], repositories_removed=["octo/a"], suspended=True)])
    inst = await store.get_installation(5)
    assert (inst.account, inst.repository_selection, inst.repositories) == ("octo", "selected", ["octo/b", "octo/c"])
    assert (inst.active, inst.suspended) == (True, True)
    assert [i.installation_id for i in await store.list_installations()] == [5]
    assert await store.get_installation(6) is None


# -- the supersede rule ---------------------------------------------------------------------------
async def test_a_newer_job_supersedes_a_queued_one_with_its_key(store):
    a, b = await record(store, job(), job())
    [other_pr] = await record(store, job(number=8))
    assert await states(store, a, b, other_pr) == [JobState.superseded, JobState.queued, JobState.queued]


async def test_deliveries_committed_together_leave_only_the_newest_job_of_a_pull_request_queued(store):
    [older] = await record(store, job(sha="0" * 40))
    results = await asyncio.gather(*(record(store, job(sha=f"{n}" * 40)) for n in range(1, 6)),
                                   record(store, job(number=8)))
    ids = [job_id for [job_id] in results]
    assert await states(store, older, *ids) == [JobState.superseded] * 5 + [JobState.queued, JobState.queued]
    assert all([(await store.get_job(job_id)).finished_at for job_id in (older, *ids[:4])])
    claimed = await store.claim_jobs("w", 10, 60)
    assert sorted(j.id for j in claimed) == sorted(ids[4:])


async def test_a_newer_head_supersedes_a_running_review_and_the_listener_hears_it(store):
    heard = listen(store)
    [a] = await record(store, job(sha="1" * 40))
    await store.claim_jobs("w1", 1, 60)
    [b] = await record(store, job(sha="2" * 40))
    assert await states(store, a, b) == [JobState.superseded, JobState.queued]
    assert heard == [{a: JobState.superseded}]
    assert await store.held_states([a], "w1") == {a: JobState.superseded}


async def test_a_review_of_the_running_head_waits_for_it_one_per_head(store):
    assert JobKind.review.one_per_head and not JobKind.fix.one_per_head
    heard = listen(store)
    [a] = await record(store, job())
    await store.claim_jobs("w1", 1, 60)
    [b] = await record(store, job())
    assert await states(store, a, b) == [JobState.running, JobState.queued]
    assert await store.claim_jobs("w2", 5, 60) == []  # b is not handed out while a runs on its head
    assert heard == []
    assert await store.finish_job(a, "w1", JobState.done)
    assert [j.id for j in await store.claim_jobs("w2", 5, 60)] == [b]


async def test_a_fix_of_the_running_head_replaces_it(store):
    [a] = await record(store, job(JobKind.fix))
    await store.claim_jobs("w1", 1, 60)
    [b] = await record(store, job(JobKind.fix))
    assert await states(store, a, b) == [JobState.superseded, JobState.queued]


# -- claim, lease, renew, release, retry, finish ----------------------------------------------------
async def test_claim_leases_up_to_the_limit_and_counts_an_attempt(store):
    ids = await record(store, job(number=1), job(number=2), job(number=3))
    claimed = await store.claim_jobs("w1", 2, 60)
    assert [j.id for j in claimed] == ids[:2]
    assert all((j.state, j.attempts, j.lease_owner) == (JobState.running, 1, "w1") for j in claimed)
    assert claimed[0].lease_expires_at > time.time()
    assert [j.id for j in await store.claim_jobs("w2", 5, 60)] == ids[2:]
    assert await store.claim_jobs("w3", 5, 60) == []


async def test_renew_answers_the_state_only_to_the_lease_holder(store):
    [a] = await record(store, job())
    [claimed] = await store.claim_jobs("w1", 1, 60)
    assert await store.renew_lease(a, "w1", 120) is JobState.running
    assert (await store.get_job(a)).lease_expires_at > claimed.lease_expires_at
    assert await store.renew_lease(a, "w2", 120) is None


async def test_an_expired_lease_is_taken_up_again_until_the_attempts_run_out(store):
    [a] = await record(store, job(), max_attempts=2)
    await store.claim_jobs("w1", 1, 60)
    assert await store.expire_lease(a, "w1")
    [again] = await store.claim_jobs("w2", 1, 60)
    assert (again.id, again.attempts, again.lease_owner) == (a, 2, "w2")
    assert await store.renew_lease(a, "w1", 60) is None  # w1 lost it
    assert await store.expire_lease(a, "w2")
    assert await store.claim_jobs("w3", 1, 60) == []
    failed = await store.get_job(a)
    assert failed.state is JobState.failed and "stopped responding" in failed.last_error


async def test_release_gives_the_job_and_its_attempt_back_at_once(store):
    [a] = await record(store, job())
    await store.claim_jobs("w1", 1, 60)
    assert await store.release_job(a, "w1")
    assert not await store.release_job(a, "w2")
    [resumed] = await store.claim_jobs("w2", 1, 60)
    assert (resumed.id, resumed.attempts, resumed.lease_owner) == (a, 1, "w2")


async def test_retry_requeues_with_the_error_after_run_after(store):
    [a] = await record(store, job())
    await store.claim_jobs("w1", 1, 60)
    assert not await store.retry_job(a, "w2", "not yours", time.time())
    assert await store.retry_job(a, "w1", "GitHub said 502", time.time() + 60)
    queued = await store.get_job(a)
    assert (queued.state, queued.last_error, queued.lease_owner) == (JobState.queued, "GitHub said 502", None)
    assert await store.claim_jobs("w1", 1, 60) == []  # not due yet
    assert await store.held_states([a], "w1") == {a: None}


async def test_finish_records_the_outcome_only_for_the_lease_holder(store):
    [a] = await record(store, job())
    await store.claim_jobs("w1", 1, 60)
    assert not await store.finish_job(a, "w2", JobState.done)
    assert await store.finish_job(a, "w1", JobState.done, result={"review_url": "https://example.test/r/1"})
    assert not await store.finish_job(a, "w1", JobState.failed)  # once
    done = await store.get_job(a)
    assert (done.state, done.result) == (JobState.done, {"review_url": "https://example.test/r/1"})
    assert done.finished_at is not None and JobState.done.finished


async def test_held_states_reads_each_job_for_its_holder(store):
    a, b = await record(store, job(number=1), job(number=2))
    await store.claim_jobs("w1", 2, 60)
    assert await store.held_states([a, b, 999], "w1") == {a: JobState.running, b: JobState.running, 999: None}
    assert await store.held_states([a], "w2") == {a: None}
    assert await store.held_states([], "w1") == {}


# -- cancel and the stop listener -------------------------------------------------------------------
async def test_request_cancel_stops_a_running_job_and_tells_this_process(store):
    heard: list[dict] = []
    unsubscribe = store.on_jobs_stopped(lambda jobs: heard.append(dict(jobs)))
    a, queued = await record(store, job(number=1), job(number=2))
    await store.claim_jobs("w1", 1, 60)
    assert await store.request_cancel(a)
    assert await store.request_cancel(queued, JobState.superseded)
    assert heard == [{a: JobState.cancelled}]  # only a running job has a worker to stop
    assert await states(store, a, queued) == [JobState.cancelled, JobState.superseded]
    assert not await store.request_cancel(a)  # finished already
    unsubscribe()
    [c] = await record(store, job(number=3))
    await store.claim_jobs("w1", 1, 60)
    await store.request_cancel(c)
    assert heard == [{a: JobState.cancelled}]


async def test_a_failing_listener_does_not_fail_the_change(store):
    def broken(_jobs):
        raise RuntimeError("listener bug")

    store.on_jobs_stopped(broken)
    heard = listen(store)
    [a] = await record(store, job())
    await store.claim_jobs("w1", 1, 60)
    assert await store.request_cancel(a)
    assert heard == [{a: JobState.cancelled}]


# -- reading --------------------------------------------------------------------------------------
async def test_list_and_count_jobs(store):
    r, f = await record(store, job(number=1), job(JobKind.fix, number=2, repo="octo/other"))
    await store.claim_jobs("w1", 1, 60)
    assert [j.id for j in await store.list_jobs()] == [f, r]  # newest first
    assert [j.id for j in await store.list_jobs(states=[JobState.queued])] == [f]
    assert [j.id for j in await store.list_jobs(repo="octo/other")] == [f]
    assert [j.id for j in await store.list_jobs(kind="review", pr_number=1)] == [r]
    assert [j.id for j in await store.list_jobs(limit=1)] == [f]
    assert await store.count_jobs_by_state() == {("review", "running"): 1, ("fix", "queued"): 1}
    assert await store.get_job(999) is None


async def test_meta_get_and_set(store):
    assert await store.get_meta("bot_login") is None
    await store.set_meta("bot_login", "prmedic[bot]")
    await store.set_meta("bot_login", "prmedic-dev[bot]")
    assert await store.get_meta("bot_login") == "prmedic-dev[bot]"


# -- sessions and tool calls ------------------------------------------------------------------------
async def test_a_session_is_recorded_once_and_closed(store):
    [a] = await record(store, job())
    first = await store.record_session(a, "sesn_1", agent_id="agent_1", agent_version=3)
    again = await store.record_session(a, "sesn_1")
    assert (again.agent_id, again.agent_version, again.state) == ("agent_1", 3, "open") and first == again
    assert (await store.get_open_session(a)).session_id == "sesn_1"
    await store.close_session("sesn_1", stop_reason="end_turn", usage={"input_tokens": 10}, list_cost_cents=2,
                              budget_reached=False)
    assert await store.get_open_session(a) is None
    [closed] = await store.list_sessions(a)
    assert (closed.state, closed.stop_reason, closed.usage, closed.list_cost_cents) == (
        "closed", "end_turn", {"input_tokens": 10}, 2)


async def test_a_tool_call_is_claimed_once_and_answered_once(store):
    record_1, claimed = await store.claim_tool_call("sesn_1", "evt_1", "publish_review")
    record_2, claimed_again = await store.claim_tool_call("sesn_1", "evt_1", "publish_review")
    assert (claimed, claimed_again, record_2.state) == (True, False, "started")
    answered = await store.answer_tool_call("evt_1", "published", False)
    assert (answered.state, answered.result, answered.is_error) == ("answered", "published", False)
    assert (await store.answer_tool_call("evt_1", "again", True)).result == "published"
    assert (await store.get_tool_call("evt_1")).result == "published"
    assert [c.event_id for c in await store.list_tool_calls("sesn_1")] == ["evt_1"]
    assert record_1.name == "publish_review" and await store.get_tool_call("evt_2") is None


# -- reviews and fixes ------------------------------------------------------------------------------
async def test_pull_review_state_is_replaced_per_pull_request(store):
    assert await store.get_pull_review("octo/repo", 7) is None
    await store.save_pull_review(PullReviewState(repo="Octo/Repo", pr_number=7, head_sha="a" * 40,
                                                 fingerprints=["f1"]))
    await store.save_pull_review(PullReviewState(repo="octo/repo", pr_number=7, head_sha="b" * 40))
    saved = await store.get_pull_review("OCTO/repo", 7)
    assert (saved.head_sha, saved.fingerprints) == ("b" * 40, []) and saved.updated_at > 0


async def test_fix_attempts_are_counted_per_root_up_to_the_limit(store):
    assert await store.claim_fix_attempt("octo/repo", 7, "r" * 40, 1, 2) == (True, 1)
    assert await store.claim_fix_attempt("octo/repo", 7, "r" * 40, 1, 2) == (True, 1)  # same job: not recounted
    assert await store.claim_fix_attempt("octo/repo", 7, "r" * 40, 2, 2) == (True, 2)
    assert await store.claim_fix_attempt("octo/repo", 7, "r" * 40, 3, 2) == (False, 2)
    assert await store.claim_fix_attempt("octo/repo", 7, "s" * 40, 3, 2) == (True, 1)


async def test_fix_proposals_are_found_and_resolved_once(store):
    proposal = await store.record_fix_proposal(FixProposal(
        repo="octo/repo", pr_number=7, root_sha="r" * 40, base_sha="b" * 40, fix_sha="f" * 40,
        branch="prmedic/fix-7", delivery="push", job_id=1))
    assert proposal.id > 0 and proposal.created_at > 0
    assert (await store.find_fix_proposal("octo/repo", fix_sha="f" * 40)).id == proposal.id
    assert (await store.find_fix_proposal("octo/repo", fix_sha="0" * 40, branch="prmedic/fix-7")).id == proposal.id
    assert await store.find_fix_proposal("octo/repo", fix_sha="0" * 40) is None
    assert await store.resolve_fix_proposal(proposal.id, "succeeded")
    assert not await store.resolve_fix_proposal(proposal.id, "failed")
    assert await store.fix_outcome_counts() == {"succeeded": 1}


async def test_a_fix_awaiting_approval_is_found_by_pull_request_and_decided_once(store):
    def fix(pr_number: int, outcome: str) -> FixProposal:
        return FixProposal(repo="octo/repo", pr_number=pr_number, root_sha="r" * 40, base_sha="b" * 40,
                           delivery=outcome, outcome=outcome, job_id=1)

    waiting = await store.record_fix_proposal(fix(7, "awaiting_approval"))
    await store.record_fix_proposal(fix(7, "pending"))
    other_pr = await store.record_fix_proposal(fix(8, "awaiting_approval"))
    assert (await store.find_fix_proposal("octo/repo", pr_number=7, outcome="awaiting_approval")).id == waiting.id
    assert (await store.find_fix_proposal("Octo/Repo")).id == other_pr.id  # neither sha nor branch: the newest
    assert await store.find_fix_proposal("octo/repo", pr_number=9) is None
    assert await store.decide_fix_proposal(waiting.id, "pending", delivery="push", url="https://example.test/c/1")
    assert not await store.decide_fix_proposal(waiting.id, "declined")
    decided = await store.get_fix_proposal(waiting.id)
    assert (decided.outcome, decided.delivery, decided.url, decided.resolved_at) == (
        "pending", "push", "https://example.test/c/1", None)
    assert await store.get_fix_proposal(999) is None


async def test_ping_answers_while_open(store):
    await store.ping()


# -- one-time work, retention, versions ----------------------------------------------------------------
async def test_a_named_lock_has_one_holder_at_a_time_and_other_names_are_free(store):
    events: list[str] = []

    async def hold(who: str) -> None:
        async with store.exclusive("agents-sync"):
            events.append(f"{who} in")
            for _ in range(5):
                await asyncio.sleep(0)
            events.append(f"{who} out")

    await asyncio.wait_for(asyncio.gather(hold("a"), hold("b"), hold("c")), 30)
    assert [e.split()[1] for e in events] == ["in", "out"] * 3
    assert all(events[i].split()[0] == events[i + 1].split()[0] for i in range(0, 6, 2))
    async with store.exclusive("agents-sync"), store.exclusive("another-name"):  # would hang if names shared a lock
        pass


async def test_an_error_inside_the_named_lock_is_the_callers_and_frees_the_lock(store):
    with pytest.raises(OSError, match="Anthropic unreachable"):
        async with store.exclusive("agents-sync"):
            raise OSError("Anthropic unreachable")
    async with asyncio.timeout(30), store.exclusive("agents-sync"):
        pass


async def test_prune_deletes_finished_jobs_and_what_only_they_needed(store):
    done, queued, running = await record(store, job(number=1), job(number=2), job(number=3))
    [old_delivery_job] = await record(store, job(number=4))
    await store.claim_jobs("w1", 1, 60)  # done
    assert await store.finish_job(done, "w1", JobState.done)
    await store.claim_jobs("w1", 1, 60)  # queued → running, then cancelled: finished
    assert await store.request_cancel(queued)
    [claimed] = await store.claim_jobs("w1", 1, 60)
    assert claimed.id == running
    assert await store.request_cancel(old_delivery_job)
    [kept] = await record(store, job(number=5))
    await store.record_session(done, "sesn_done")
    await store.claim_tool_call("sesn_done", "evt_done", "publish_review")
    await store.record_session(running, "sesn_running")
    await store.claim_tool_call("sesn_running", "evt_running", "report_progress")
    await store.claim_fix_attempt("octo/repo", 1, "r" * 40, done, 3)
    for key in (f"check_run:job:{done}", f"stopped_by:job:{queued}", f"check_run:job:{running}",
                f"check_run:job:{kept}", "paused:octo/repo#1", "agent:reviewer"):
        await store.set_meta(key, "x")

    assert set((await store.prune(3600)).values()) == {0}  # nothing is an hour old yet
    counts = await store.prune(0)

    assert counts == {"jobs": 3, "agent_sessions": 1, "tool_calls": 1, "fix_attempts": 1, "meta": 2,
                      "deliveries": 1}  # the one whose only job was cancelled
    assert [j.id for j in await store.list_jobs()] == [kept, running]
    assert (await store.get_tool_call("evt_done"), (await store.get_tool_call("evt_running")).name) == (
        None, "report_progress")
    assert await store.list_sessions(done) == [] and len(await store.list_sessions(running)) == 1
    assert await store.get_meta(f"check_run:job:{done}") is None
    assert await store.get_meta(f"stopped_by:job:{queued}") is None
    for key in (f"check_run:job:{running}", f"check_run:job:{kept}", "paused:octo/repo#1", "agent:reviewer"):
        assert await store.get_meta(key) == "x"
    assert await store.claim_fix_attempt("octo/repo", 1, "r" * 40, 99, 1) == (True, 1)
    # the deliveries of the unfinished jobs stay: a copy of one is still a duplicate
    kept_delivery = (await store.get_job(kept)).delivery_id
    assert (await store.record_delivery(delivery(kept_delivery), [job()])).duplicate


async def test_the_store_describes_its_backend_and_schema_version(store):
    described = store.describe()
    assert described["backend"] in BACKENDS and described["schema_version"] >= 1
    assert "password" not in str(described)
