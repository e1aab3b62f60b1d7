"""`prmedic serve` as a real process against both simulators: a webhook in, a review out."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile

import aiohttp
from conftest import delivery_headers
from review_helpers import REPO, PullRequestRepo, review_script

from app.pipelines.review.publish import SUMMARY_MARKER


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _until(predicate, timeout: float = 60.0) -> None:
    for _ in range(int(timeout / 0.1)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("not reached in time")


class ServeProcess:
    """`python -m app serve` with the simulators' URLs; `deliver()` posts signed deliveries to it."""

    def __init__(self, env: dict, cwd) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "PRMEDIC_HOST": "127.0.0.1", "PRMEDIC_PORT": str(self.port),
                    "PRMEDIC_WORKER_POLL_SECONDS": "0.1", "PRMEDIC_LOG_FORMAT": "json"}
        self.cwd = cwd
        self.output = ""

    async def __aenter__(self) -> "ServeProcess":
        self.log = tempfile.TemporaryFile()  # not a pipe: a chatty server would block once it filled up
        self.process = subprocess.Popen([sys.executable, "-m", "app", "serve"], env=self.env, cwd=self.cwd,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self.http = aiohttp.ClientSession()
        for _ in range(300):
            try:
                async with self.http.get(f"{self.url}/healthz") as answer:
                    if answer.status == 200:
                        return self
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
        raise AssertionError("prmedic serve did not start")

    async def deliver(self, event: str, payload: dict, delivery_id: str) -> int:
        body = json.dumps(payload).encode()
        headers = delivery_headers(event, body, delivery_id=delivery_id)
        async with self.http.post(f"{self.url}/api/github/webhooks", data=body, headers=headers) as answer:
            return answer.status

    async def __aexit__(self, *exc) -> None:
        await self.http.close()
        self.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self.process.wait, 30)
        self.log.seek(0)
        self.output = self.log.read().decode()
        self.log.close()
        assert self.process.returncode == 0, self.output
        logged = [json.loads(line) for line in self.output.splitlines() if line.startswith("{")]
        assert any(entry.get("job_id") for entry in logged), self.output
        assert "ghs_" not in self.output and "sk-ant-" not in self.output


def serve_env(settings_env, github_server, managed_agents) -> dict:
    return {**os.environ, **settings_env, **managed_agents.env, "PRMEDIC_GITHUB_API_URL": github_server.url}


async def test_a_pull_request_delivered_to_prmedic_serve_gets_one_review_and_a_completed_check(
    settings_env, github_server, managed_agents, git_repo, tmp_path
):
    state, sim = github_server.state, managed_agents.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = review_script([
        {"path": "src/app.py", "line": 41, "severity": "major", "body": "`total` skips the first item.",
         "suggestion": "    return sum(items)"},
    ], summary="`total()` drops the first element.")
    event = pr.event("opened")
    event["repository"]["language"] = "Python"
    async with ServeProcess(serve_env(settings_env, github_server, managed_agents), tmp_path) as server:
        for _ in range(2):  # GitHub redelivers: the second one must change nothing
            assert await server.deliver("pull_request", event, "e2e-review") in (200, 202)
        await _until(lambda: any(c.status == "completed" for c in state.check_runs_for(REPO, pr.head)))
    (review,) = state.reviews_of(REPO, pr.pr.number)
    assert review.body.startswith(SUMMARY_MARKER)
    (comment,) = state.review_comments_of(REPO, pr.pr.number)
    assert (comment.path, comment.line) == ("src/app.py", 41) and "```suggestion" in comment.body
    (check,) = [c for c in state.check_runs_for(REPO, pr.head) if c.name == "prmedic review"]
    assert check.conclusion == "neutral" and "Cost (list price): $" in check.output["summary"]
    (session,) = sim.sessions.values()
    assert sim.environments[session.environment_id]["name"] == "python"  # from the payload's repository.language


async def test_a_failing_check_delivered_to_prmedic_serve_gets_one_verified_fix_pr(
    settings_env, github_server, managed_agents, git_repo, tmp_path
):
    from types import SimpleNamespace

    from test_fix_pipeline import GOOD, Project, fix_script, propose
    from test_fix_pipeline import REPO as FIX_REPO

    state = github_server.state
    project = Project(SimpleNamespace(github_state=state), git_repo)
    project.failing_job(4242)
    patch = project.patch({"src/calc.py": GOOD})
    managed_agents.sim.default_script = fix_script(propose(patch))
    async with ServeProcess(serve_env(settings_env, github_server, managed_agents), tmp_path) as server:
        assert await server.deliver("check_run", project.check_run_event(4242), "e2e-fix") == 202
        await _until(lambda: any(c.status == "completed" and c.name == "prmedic fix"
                                 for c in state.check_runs_for(FIX_REPO, project.head)))
    fix_pr = state.pull(FIX_REPO, 8)
    assert fix_pr.base_ref == "feature" and "Root cause" in fix_pr.body
    commit = project.fix_commit(state.repo(FIX_REPO).branch_sha(fix_pr.head_ref))
    assert commit.parents == [project.head] and commit.tree == project.tree_after_git_apply(patch)
    # the fix's session, then the verifier's at the fix commit, whose run the fix PR quotes
    assert [s.agent["name"] for s in managed_agents.sim.sessions.values()] == ["coordinator", "verifier"]
    assert "**Independent verification**" in fix_pr.body
