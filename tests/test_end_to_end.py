"""`prmedic serve` as a real process against both simulators: a webhook in, a review out."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys

import aiohttp
from conftest import delivery_headers
from review_helpers import REPO, PullRequestRepo, review_script

from app.pipelines.publish import SUMMARY_MARKER


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


async def test_a_pull_request_delivered_to_prmedic_serve_gets_one_review_and_a_completed_check(
    settings_env, github_server, managed_agents, git_repo, tmp_path
):
    state, sim = github_server.state, managed_agents.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = review_script([
        {"path": "src/app.py", "line": 41, "severity": "major", "body": "`total` skips the first item.",
         "suggestion": "    return sum(items)"},
    ], summary="`total()` drops the first element.")
    port = _free_port()
    env = {**os.environ, **settings_env, **managed_agents.env, "PRMEDIC_GITHUB_API_URL": github_server.url,
           "PRMEDIC_HOST": "127.0.0.1", "PRMEDIC_PORT": str(port), "PRMEDIC_WORKER_POLL_SECONDS": "0.1",
           "PRMEDIC_LOG_FORMAT": "json"}
    server = subprocess.Popen([sys.executable, "-m", "app", "serve"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async def healthy() -> bool:
                try:
                    async with http.get(f"{url}/healthz") as answer:
                        return answer.status == 200
                except aiohttp.ClientError:
                    return False

            for _ in range(300):
                if await healthy():
                    break
                await asyncio.sleep(0.05)
            body = json.dumps(pr.event("opened")).encode()
            for _ in range(2):  # GitHub redelivers: the second one must change nothing
                async with http.post(f"{url}/api/github/webhooks", data=body,
                                     headers=delivery_headers("pull_request", body, delivery_id="e2e-1")) as answer:
                    assert answer.status in (200, 202)

            def check_completed() -> bool:
                return any(c.status == "completed" for c in state.check_runs_for(REPO, pr.head))

            await _until(check_completed)
    finally:
        server.send_signal(signal.SIGTERM)
        output = await asyncio.to_thread(lambda: server.communicate(timeout=30)[0].decode())
    (review,) = state.reviews_of(REPO, pr.pr.number)
    assert review.body.startswith(SUMMARY_MARKER)
    (comment,) = state.review_comments_of(REPO, pr.pr.number)
    assert (comment.path, comment.line) == ("src/app.py", 41) and "```suggestion" in comment.body
    (check,) = [c for c in state.check_runs_for(REPO, pr.head) if c.name == "prmedic review"]
    assert check.conclusion == "neutral" and "Cost (list price): $" in check.output["summary"]
    assert len(sim.sessions) == 1
    assert server.returncode == 0, output
    logged = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(entry.get("job_id") for entry in logged), output
    assert "ghs_" not in output and managed_agents.env["ANTHROPIC_API_KEY"] not in output
