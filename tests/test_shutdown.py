"""SIGTERM (a deploy, `docker stop`, a rollout): a real `prmedic worker` stops taking jobs, gives its
running job back at once without spending an attempt, and leaves the agent session running for the
next process, which resumes it; every custom tool runs once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from review_helpers import REPO, PullRequestRepo
from test_races import answered, gated_review, until

from app.store import JobState


def start_worker(env: dict, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app", "worker"], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


async def terminate(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    return (await asyncio.to_thread(process.communicate, timeout=30))[0].decode()


async def test_sigterm_mid_session_gives_the_job_back_and_the_next_worker_finishes_it_on_the_first_attempt(
    settings_env, github_server, managed_agents, git_repo, deliver, store, tmp_path
):
    state, sim = github_server.state, managed_agents.sim
    pr = PullRequestRepo(state, git_repo)
    gate = asyncio.Event()
    sim.default_script = gated_review(gate)
    # A 10-minute lease: the next worker must not need it to expire.
    env = {**os.environ, **settings_env, **managed_agents.env, "PRMEDIC_GITHUB_API_URL": github_server.url,
           "PRMEDIC_JOB_LEASE_SECONDS": "600", "PRMEDIC_WORKER_POLL_SECONDS": "0.1"}
    answer = await deliver("pull_request", pr.event("opened"))
    assert answer.status == 202
    [job_id] = (await answer.json())["jobs"]

    first = start_worker(env, tmp_path)
    try:
        await until(lambda: sim.sessions and answered(sim.session(), "report_progress"), timeout=60,
                    what="the first worker's session")
    finally:
        output = await terminate(first)
    assert first.returncode == 0, output
    job = await store.get_job(job_id)
    assert (job.state, job.attempts) == (JobState.running, 0), output  # given back, no attempt spent
    assert not sim.interrupts  # the session runs on, for the next worker
    (record,) = await store.list_sessions(job_id)
    assert record.state == "open"

    gate.set()  # meanwhile the agent goes on and asks to publish
    second = start_worker(env, tmp_path)
    try:
        for _ in range(600):
            job = await store.get_job(job_id)
            if job.state.finished:
                break
            await asyncio.sleep(0.1)
    finally:
        output += await terminate(second)
    assert second.returncode == 0, output
    assert (job.state, job.attempts) == (JobState.done, 1), (job.last_error, output)
    assert job.result["resumed"] and job.result["session_id"] == record.session_id
    assert len(sim.sessions) == 1 and not sim.interrupts
    session = sim.session()
    assert [r.name for r in session.tool_results] == ["report_progress", "publish_review"]
    assert not any(r.is_error for r in session.tool_results), [r.text for r in session.tool_results]
    assert sorted(c.name for c in await store.list_tool_calls(record.session_id)) == ["publish_review",
                                                                                      "report_progress"]
    assert len(state.reviews_of(REPO, pr.pr.number)) == 1
