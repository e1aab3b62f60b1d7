"""Three replicas on one PostgreSQL database (issue 16): three real `prmedic serve` processes, each a
webhook server with its worker, sharing a throw-away database, against the GitHub and Managed Agents
simulators (in this process, so a test's scripted agents are the ones the replicas' sessions run).

GitHub's deliveries go round-robin to the replicas, each sent at the same moment to a second
replica under the same delivery id (GitHub's redelivery reaching another pod). One replica is killed
with SIGKILL in the middle of its review sessions. What must hold: every accepted delivery became
exactly one job; each PR got one review; each custom tool ran once; the killed replica's jobs were
finished by the others, which took over their leases and resumed their sessions.

The replicas are shared by the module's tests; each test works on PRs of its own. A failing test
prints what the replicas logged."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from typing import Self

import aiohttp
import pytest
import pytest_asyncio
from conftest import (
    APP_ID,
    APP_SLUG,
    WEBHOOK_SECRET,
    delivery_headers,
    postgres_admin,
    postgres_database_url,
)
from review_helpers import REPO, PullRequestRepo, review_script
from test_commands_serve import AnotherPullRequest
from test_end_to_end import ServeProcess

from app.store import JobState, open_store
from serve_helpers import served_app, until

try:
    from sims.github import GitHubState, make_github_app
    from sims.github_fixtures import INSTALLATION_ID, OWNER
    from sims.gitrepo import make_git_repo
    from sims.managed_agents import ManagedAgentsSimulator, Script
    from sims.managed_agents_fixtures import API_KEY
except ImportError:  # pragma: no cover
    from tests.sims.github import GitHubState, make_github_app
    from tests.sims.github_fixtures import INSTALLATION_ID, OWNER
    from tests.sims.gitrepo import make_git_repo
    from tests.sims.managed_agents import ManagedAgentsSimulator, Script
    from tests.sims.managed_agents_fixtures import API_KEY

pytestmark = pytest.mark.asyncio(loop_scope="module")

REPLICAS = 3
LEASE_SECONDS = 4  # how long a dead replica's job waits for another: short, yet many renewals (every 1.3 s)
FINDING = {"path": "src/app.py", "line": 41, "severity": "major", "body": "`total()` skips the first item."}


class Replica(ServeProcess):
    """One `prmedic serve` replica; unlike ServeProcess it may be killed, and says what it logged."""

    def __init__(self, env: dict, cwd, number: int) -> None:
        super().__init__(env, cwd)
        self.number = number
        self.killed = False

    async def __aenter__(self) -> Self:
        """Start it and wait until /healthz answers 200; if it does not, fail with what it logged."""
        # Not a pipe: a chatty server would block once it filled up. Closed by `stop`.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen([sys.executable, "-m", "app", "serve"], env=self.env,  # noqa: ASYNC220
                                        cwd=self.cwd, stdout=self.log, stderr=subprocess.STDOUT)
        self.http = aiohttp.ClientSession()
        deadline, last = time.monotonic() + 60, "no answer"
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                async with self.http.get(f"{self.url}/healthz") as answer:
                    if answer.status == 200:
                        return self
                    last = f"{answer.status} {await answer.text()}"
            except aiohttp.ClientError as exc:
                last = str(exc)
            await asyncio.sleep(0.05)
        raise AssertionError(f"replica {self.number} did not start (exit status {self.process.poll()}, last /healthz: "
                             f"{last}):\n{self.logged()}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.killed = True

    def logged(self, lines: int = 40) -> str:
        size = os.fstat(self.log.fileno()).st_size
        text = os.pread(self.log.fileno(), min(size, 200_000), max(0, size - 200_000)).decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self) -> int | None:
        await self.http.close()
        if not self.killed:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(self.process.wait, 30)
        self.log.close()
        return self.process.returncode


class Cluster:
    """The replicas and what they talk to; `script(pr, script)` sets the agents for the sessions on a PR."""

    def __init__(self, state: GitHubState, sim: ManagedAgentsSimulator, first: PullRequestRepo, database_url: str,
                 env: dict, cwd) -> None:
        self.state, self.sim, self.first, self.database_url = state, sim, first, database_url
        self.env, self.cwd = env, cwd
        self.replicas: list[Replica] = []
        self.scripts: dict[int, list[Script]] = {}  # by PR number, in order
        self._branches = itertools.count(1)

    def script_for_session(self, body: dict) -> Script | None:
        queued = self.scripts.get(int((body.get("metadata") or {}).get("pr") or 0)) or []
        return queued.pop(0) if queued else None

    def new_pr(self, *scripts: Script) -> AnotherPullRequest:
        """A PR of its own whose sessions run these scripts, in order."""
        pr = AnotherPullRequest(self.first, f"replica-{next(self._branches)}")
        self.scripts[pr.pr.number] = list(scripts)
        return pr

    def sessions_of(self, pr: PullRequestRepo) -> list:
        return [s for s in self.sim.sessions.values() if s.metadata.get("pr") == str(pr.pr.number)]

    def by_pid(self, pid: int) -> Replica:
        [replica] = [r for r in self.replicas if r.pid == pid]
        return replica

    async def deliver(self, replica: Replica, event: str, payload: dict, delivery_id: str) -> tuple[int, dict]:
        body = json.dumps(payload).encode()
        async with replica.http.post(f"{replica.url}/api/github/webhooks", data=body,
                                     headers=delivery_headers(event, body, delivery_id=delivery_id)) as answer:
            return answer.status, await answer.json()

    async def deliver_twice(self, first: Replica, second: Replica, event: dict, delivery_id: str) -> tuple:
        """`event` to both replicas at the same moment under one delivery id: the two answers, the accepted
        one first."""
        pair = await asyncio.gather(*(self.deliver(r, "pull_request", event, delivery_id) for r in (first, second)))
        return tuple(sorted(pair, key=lambda answer: -answer[0]))

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if not r.killed]

    async def deliver_round_robin(self, prs: list[PullRequestRepo], tag: str) -> list[tuple]:
        """Each PR's `opened` to replica i mod 3 and, at the same moment under the same delivery id, to the
        next replica."""
        live = self.live()
        return [await self.deliver_twice(live[i % len(live)], live[(i + 1) % len(live)], pr.event("opened"),
                                         f"{tag}-{i}-{uuid.uuid4()}") for i, pr in enumerate(prs)]

    def logs(self) -> str:
        return "\n".join(f"--- replica {r.number} (pid {r.pid}{', killed' if r.killed else ''}) ---\n{r.logged()}"
                         for r in self.replicas)






@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(postgres_url, tmp_path_factory, app_private_key, github_openapi_spec):
    """Three `prmedic serve` replicas on a database of their own, for the whole module."""
    name = f"prmedic_replicas_{uuid.uuid4().hex[:10]}"
    postgres_admin(f'CREATE DATABASE "{name}"')
    database_url = postgres_database_url(name)
    tmp = tmp_path_factory.mktemp("replicas")
    state = GitHubState(app_id=APP_ID, app_slug=APP_SLUG, app_private_key=app_private_key)
    state.add_installation(INSTALLATION_ID, OWNER, account_type="Organization")
    sim = ManagedAgentsSimulator()
    github, agents = await served_app(make_github_app(state)), await served_app(sim.make_app())
    counter = iter(range(1, 100))

    def git_repo(files=None, *, name=None, branch="main", message="Initial commit"):
        return make_git_repo(tmp / (name or f"repo{next(counter)}"), files, message=message, branch=branch)

    first = PullRequestRepo(state, git_repo)
    key = tmp / "app.pem"
    key.write_text(app_private_key)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRMEDIC_", "ANTHROPIC_"))}
    env.update({
        "PRMEDIC_APP_ID": str(APP_ID), "PRMEDIC_APP_SLUG": APP_SLUG, "PRMEDIC_PRIVATE_KEY_PATH": str(key),
        "PRMEDIC_WEBHOOK_SECRET": WEBHOOK_SECRET, "PRMEDIC_DATABASE_URL": database_url,
        "PRMEDIC_DATABASE_POOL_SIZE": "4", "PRMEDIC_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
        "PRMEDIC_JOB_RETRY_BASE_SECONDS": "0",
        "PRMEDIC_GITHUB_API_URL": str(github.make_url("")).rstrip("/"),
        "ANTHROPIC_BASE_URL": str(agents.make_url("")).rstrip("/"), "ANTHROPIC_API_KEY": API_KEY,
    })
    cluster = Cluster(state, sim, first, database_url, env, tmp)
    sim.script_for(cluster.script_for_session)
    try:
        cluster.replicas = list(await asyncio.gather(*(Replica(env, tmp, n).__aenter__() for n in range(REPLICAS))))
        yield cluster
        codes = {r.number: await r.stop() for r in cluster.replicas}
        assert all(code == 0 for r, code in zip(cluster.replicas, codes.values()) if not r.killed), codes
    finally:
        for replica in cluster.replicas:
            if replica.process.poll() is None:
                replica.process.kill()
        await sim.shutdown()
        await agents.close()
        await github.close()
        postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert state.violations == [] and sim.violations == []


@pytest.fixture(autouse=True)
def replica_logs(cluster):
    yield
    print(cluster.logs())


@pytest_asyncio.fixture(loop_scope="module")
async def store(cluster):
    """The replicas' database, as the test reads it."""
    store = open_store(cluster.database_url)
    await store.open()
    yield store
    await store.close()


async def jobs_of(store, prs: list[PullRequestRepo]) -> list:
    numbers = {pr.pr.number for pr in prs}
    return [j for j in await store.list_jobs(limit=1000, kind="review") if j.pr_number in numbers]


def assert_one_job_per_accepted_delivery(answers, jobs) -> None:
    for accepted, copy in answers:
        assert accepted[0] == 202 and accepted[1]["status"] == "accepted", (accepted, copy)
        assert copy == (200, {"status": "duplicate"}), (accepted, copy)
    accepted_ids = sorted(job_id for (_, body), _ in answers for job_id in body["jobs"])
    assert sorted(j.id for j in jobs) == accepted_ids
    assert len({j.delivery_id for j in jobs}) == len(jobs) == len(answers)


async def assert_each_tool_ran_once(cluster: Cluster, store, pr: PullRequestRepo) -> str:
    """One session on the PR; each of its tool calls claimed, run and answered once. Its id."""
    [session] = cluster.sessions_of(pr)
    assert Counter(r.name for r in session.tool_results) == {"report_progress": 1, "publish_review": 1}
    assert not any(r.is_error for r in session.tool_results), [r.text for r in session.tool_results]
    calls = await store.list_tool_calls(session.id)
    assert Counter(c.name for c in calls) == {"report_progress": 1, "publish_review": 1}
    [review] = cluster.state.reviews_of(REPO, pr.pr.number)
    assert review.commit_id == pr.head
    return session.id


async def test_deliveries_sent_round_robin_and_again_to_another_replica_become_one_job_each(cluster, store):
    prs = [cluster.new_pr(review_script([FINDING])) for _ in range(6)]
    answers = await cluster.deliver_round_robin(prs, "round-robin")

    async def reviewed() -> bool:
        jobs = await jobs_of(store, prs)
        return len(jobs) == len(prs) and all(j.state.finished for j in jobs)

    await until(reviewed, "every PR reviewed")
    jobs = await jobs_of(store, prs)
    assert_one_job_per_accepted_delivery(answers, jobs)
    assert {(j.state, j.attempts) for j in jobs} == {(JobState.done, 1)}, [(j.id, j.last_error) for j in jobs]
    for pr in prs:
        await assert_each_tool_ran_once(cluster, store, pr)


async def test_a_push_delivered_to_one_replica_stops_the_review_another_replica_runs(cluster, store):
    gate = asyncio.Event()
    pr = cluster.new_pr(gated_review(gate), review_script([FINDING]))
    old_sha = pr.head
    live = cluster.live()
    opened = await cluster.deliver_twice(live[0], live[1], pr.event("opened"), f"push-opened-{uuid.uuid4()}")

    async def mid_review() -> bool:
        return bool(cluster.sessions_of(pr) and cluster.sessions_of(pr)[0].tool_results)

    await until(mid_review, "the first head's session mid-review")
    [old_job] = await jobs_of(store, [pr])
    runner = cluster.by_pid(int(old_job.lease_owner.split(":")[1]))
    others = [r for r in live if r is not runner]
    pr.push({"src/util.py": "def helper(x):\n    return x * 2\n"})
    pushed = await cluster.deliver_twice(others[0], others[-1], pr.event("synchronize"), f"push-{uuid.uuid4()}")
    gate.set()  # the old session asks to publish at once: it must be refused or interrupted, never run
    old_session = cluster.sessions_of(pr)[0]

    async def settled() -> bool:
        jobs = await jobs_of(store, [pr])
        return len(jobs) == 2 and all(j.state.finished for j in jobs) and bool(old_session.interrupts)

    await until(settled, "the old review stopped by the replica running it, the new head reviewed")
    jobs = sorted(await jobs_of(store, [pr]), key=lambda job: job.id)
    assert_one_job_per_accepted_delivery([opened, pushed], jobs)
    older, newer = jobs
    assert older.state is JobState.superseded and (newer.state, newer.attempts) == (JobState.done, 1), newer.last_error
    assert [r.name for r in old_session.tool_results if not r.is_error] == ["report_progress"]
    [review] = cluster.state.reviews_of(REPO, pr.pr.number)
    assert review.commit_id == pr.head != old_sha
    [old_check] = [c for c in cluster.state.check_runs_for(REPO, old_sha) if c.name == "prmedic review"]
    assert old_check.conclusion == "cancelled"


async def test_a_replica_killed_mid_session_leaves_its_jobs_to_the_others_which_resume_the_sessions(cluster, store):
    gate = asyncio.Event()
    prs = [cluster.new_pr(gated_review(gate)) for _ in range(4)]
    answers = await cluster.deliver_round_robin(prs, "kill")

    async def all_waiting() -> bool:  # each session has had report_progress answered and waits on the gate
        return all(s and s[0].tool_results for s in map(cluster.sessions_of, prs))

    await until(all_waiting, "every session mid-review")
    running = await jobs_of(store, prs)
    assert {j.state for j in running} == {JobState.running}
    owners = Counter(int(j.lease_owner.split(":")[1]) for j in running)
    victim = cluster.by_pid(owners.most_common(1)[0][0])
    victims = {j.id: cluster.sessions_of(next(pr for pr in prs if pr.pr.number == j.pr_number))[0].id
               for j in running if int(j.lease_owner.split(":")[1]) == victim.pid}
    victim.kill()
    gate.set()  # the agents go on and ask to publish, with nobody listening on the victim's sessions

    async def finished() -> bool:
        return all(j.state.finished for j in await jobs_of(store, prs))

    await until(finished, "every job finished, the killed replica's by another", timeout=LEASE_SECONDS + 30)
    jobs = await jobs_of(store, prs)
    assert_one_job_per_accepted_delivery(answers, jobs)
    for job in jobs:
        assert job.state is JobState.done, (job.id, job.last_error)
        if job.id in victims:
            assert job.attempts == 2 and int(job.lease_owner.split(":")[1]) != victim.pid
            assert job.result["resumed"] and job.result["session_id"] == victims[job.id]
        else:
            assert job.attempts == 1
    for pr in prs:
        await assert_each_tool_ran_once(cluster, store, pr)
        assert not cluster.sessions_of(pr)[0].interrupts


def gated_review(gate: asyncio.Event) -> Script:
    """A review session that reports progress, then waits for `gate` before it publishes."""
    script = review_script([FINDING])

    async def wait_for_gate(_ctx) -> None:
        await gate.wait()

    steps = script.turns[0]
    steps.insert(len(steps) - 5, wait_for_gate)  # just before publish_review (as tests/test_races.py does)
    return script
