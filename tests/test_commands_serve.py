"""Slash-commands from outside: one real `prmedic serve` process (embedded SQLite, its worker
inside) against both simulators, for the whole module. Each test posts signed deliveries built
from GitHub's own `issue_comment` example, as GitHub would, and waits for the result on the PR in
the GitHub simulator. The simulators run in this process, so a scripted agent set on the Managed
Agents simulator before a delivery is the one the server's session runs."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from command_helpers import comment_event, reactions
from conftest import APP_ID, APP_SLUG, WEBHOOK_SECRET, delivery_headers
from review_helpers import REPO, PullRequestRepo
from test_end_to_end import ServeProcess

try:
    from sims.github import GitHubState, make_github_app
    from sims.github_fixtures import INSTALLATION_ID, OWNER
    from sims.gitrepo import make_git_repo
    from sims.managed_agents import ManagedAgentsSimulator, normal_review_run
    from sims.managed_agents_fixtures import API_KEY
except ImportError:  # pragma: no cover
    from tests.sims.github import GitHubState, make_github_app
    from tests.sims.github_fixtures import INSTALLATION_ID, OWNER
    from tests.sims.gitrepo import make_git_repo
    from tests.sims.managed_agents import ManagedAgentsSimulator, normal_review_run
    from tests.sims.managed_agents_fixtures import API_KEY

pytestmark = pytest.mark.asyncio(loop_scope="module")

ANSWER = "`total()` skips the first item: `src/app.py:42` slices `items[1:]`."


@dataclass
class Served:
    """The server process and what it talks to: the GitHub simulator's state, the Managed Agents
    simulator, and the PR the comments are written on."""

    server: ServeProcess
    state: GitHubState
    sim: ManagedAgentsSimulator
    pr: PullRequestRepo

    async def deliver(self, event: str, payload: dict, delivery_id: str) -> tuple[int, dict]:
        """Post a signed delivery, as GitHub does: (HTTP status, the server's answer)."""
        body = json.dumps(payload).encode()
        async with self.server.http.post(f"{self.server.url}/api/github/webhooks", data=body,
                                         headers=delivery_headers(event, body, delivery_id=delivery_id)) as answer:
            return answer.status, await answer.json()

    def answers(self, comment_id: int) -> list[str]:
        """The bodies of prmedic's answer comments to this command comment."""
        marker = f"<!-- prmedic:command:{comment_id} -->"
        return [c.body for c in self.state.issue_comments_of(REPO, self.pr.pr.number) if marker in c.body]

    def reactions(self, comment_id: int) -> list[str]:
        return reactions(self.state.issue_comments[comment_id])


async def until(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout:.0f} s: {what}")
        await asyncio.sleep(0.05)


async def _served_app(app) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory, app_private_key, github_openapi_spec):
    """`prmedic serve` for the whole module, with a PR by octocat on which `maintainer` may write
    and `reader` may read."""
    tmp = tmp_path_factory.mktemp("serve")
    state = GitHubState(app_id=APP_ID, app_slug=APP_SLUG, app_private_key=app_private_key)
    state.add_installation(INSTALLATION_ID, OWNER, account_type="Organization")
    sim = ManagedAgentsSimulator()
    github, agents = await _served_app(make_github_app(state)), await _served_app(sim.make_app())
    counter = iter(range(1, 100))

    def git_repo(files=None, *, name=None, branch="main", message="Initial commit"):
        return make_git_repo(tmp / (name or f"repo{next(counter)}"), files, message=message, branch=branch)

    pr = PullRequestRepo(state, git_repo)
    state.set_permission(REPO, "maintainer", "write")
    state.set_permission(REPO, "reader", "read")
    key = tmp / "app.pem"
    key.write_text(app_private_key)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRMEDIC_", "ANTHROPIC_"))}
    env.update({
        "PRMEDIC_APP_ID": str(APP_ID), "PRMEDIC_APP_SLUG": APP_SLUG, "PRMEDIC_PRIVATE_KEY_PATH": str(key),
        "PRMEDIC_WEBHOOK_SECRET": WEBHOOK_SECRET, "PRMEDIC_DATABASE_URL": f"sqlite:///{tmp / 'prmedic.db'}",
        "PRMEDIC_GITHUB_API_URL": str(github.make_url("")).rstrip("/"), "PRMEDIC_JOB_RETRY_BASE_SECONDS": "0",
        "ANTHROPIC_BASE_URL": str(agents.make_url("")).rstrip("/"), "ANTHROPIC_API_KEY": API_KEY,
    })
    try:
        async with ServeProcess(env, tmp) as server:
            yield Served(server, state, sim, pr)
    finally:
        await sim.shutdown()
        await agents.close()
        await github.close()
    assert state.violations == [] and sim.violations == []


async def _command(served: Served, body: str, delivery_id: str, **kw) -> int:
    """Write `body` as a comment on the PR and deliver it; the comment's id."""
    data = comment_event(served.pr, body, **kw)
    status, answer = await served.deliver("issue_comment", data, delivery_id)
    assert (status, answer["status"]) == (202, "accepted"), answer
    return data["comment"]["id"]


async def _finished(served: Served, comment_id: int) -> str:
    """Wait for the command's final reaction; its answer comment."""
    await until(lambda: len(served.reactions(comment_id)) == 2, f"the final reaction on comment {comment_id}")
    (answer,) = served.answers(comment_id)
    return answer


async def test_help_is_answered_with_the_table_and_eyes_then_rocket(served):
    cid = await _command(served, "/help", "serve-help")
    answer = await _finished(served, cid)
    assert "| command | what it does | who may run it here |" in answer
    assert "| `/review` · `/review full` |" in answer and "| `/pause` |" in answer
    assert "`@prmedic <command>`" in answer
    assert served.reactions(cid) == ["eyes", "rocket"]
    assert served.state.violations == []


async def test_a_readers_pause_is_refused_naming_the_permission(served):
    cid = await _command(served, "/pause", "serve-pause", user="reader")
    answer = await _finished(served, cid)
    assert "@reader `/pause` needs **write** permission on this repository (you have read)" in answer
    assert served.reactions(cid) == ["eyes", "confused"]


async def test_ask_is_answered_in_its_answer_comment_with_cost_and_duration(served):
    served.sim.queue_script(normal_review_run(custom_calls=[
        ("report_progress", {"message": "Reading total()", "done": ["read the diff"], "todo": ["answer"]}),
        ("reply", {"body": ANSWER})], final_text="Answered."))
    sessions = len(served.sim.sessions)
    cid = await _command(served, "/ask why does total() return 5 for [1, 2, 3]?", "serve-ask")
    answer = await _finished(served, cid)
    assert ANSWER in answer
    assert "`/ask` by @maintainer · Cost (list price): $" in answer and "Duration:" in answer
    assert served.reactions(cid) == ["eyes", "rocket"]
    assert len(served.sim.sessions) == sessions + 1
    session = list(served.sim.sessions.values())[-1]
    task = "".join(block["text"] for block in session.user_messages[0]["content"])
    assert "why does total() return 5 for [1, 2, 3]?" in task


async def test_an_edited_comment_and_a_bots_comment_run_nothing(served):
    edited = comment_event(served.pr, "/pause", action="edited")
    bot = comment_event(served.pr, "/pause", user="dependabot[bot]", user_type="Bot")
    for data, delivery_id in ((edited, "serve-edited"), (bot, "serve-bot")):
        status, answer = await served.deliver("issue_comment", data, delivery_id)
        assert (status, answer["status"]) == (200, "ignored"), answer
    # A command delivered after them is answered; by then they would have been too.
    after = await _command(served, "/help", "serve-after")
    await _finished(served, after)
    for data in (edited, bot):
        cid = data["comment"]["id"]
        assert served.answers(cid) == [] and served.reactions(cid) == []
    paused = [c for c in served.state.issue_comments_of(REPO, served.pr.pr.number) if "**paused**" in c.body]
    assert paused == []


async def test_the_same_delivery_twice_is_answered_once(served):
    data = comment_event(served.pr, "/config")
    first = await served.deliver("issue_comment", data, "serve-twice")
    again = await served.deliver("issue_comment", data, "serve-twice")  # GitHub's redelivery keeps the id
    assert first[0] == 202 and again == (200, {"status": "duplicate"})
    cid = data["comment"]["id"]
    answer = await _finished(served, cid)
    assert "```yaml" in answer
    # Give a second job the time the first one took; nothing more appears.
    await asyncio.sleep(0.5)
    assert len(served.answers(cid)) == 1 and served.reactions(cid) == ["eyes", "rocket"]
