"""Slash-commands from outside: one real `prmedic serve` process (embedded SQLite, its worker
inside) against both simulators, for the whole module. Each test posts signed deliveries built
from GitHub's own `issue_comment`, `pull_request_review_comment` and `pull_request` examples, as
GitHub would, and waits for the result on the PR in the GitHub simulator. The simulators run in this process, so a scripted agent set on the Managed
Agents simulator before a delivery is the one the server's session runs.

Each command whose result is PR state (a review, the body, a fix PR, the pause) runs on a PR of its
own (`Served.another_pr`) with its own scripts (`Served.script`), so no test depends on another's
order. A failing test prints what the server logged while it ran."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from command_helpers import FINDING, comment_event, reactions, review_comment_event
from conftest import APP_ID, APP_SLUG, WEBHOOK_SECRET, delivery_headers
from review_helpers import HEAD_FILES, REPO, PullRequestRepo, review_script
from test_command_describe import AUTHOR, FIRST, SECOND, block, describe_script
from test_command_fix import NEW_TEST, RENAMED, RUN, fenced, fix_check, patch_of, propose, tree_after_git_apply
from test_command_threads import HUNK, ask_script
from test_end_to_end import ServeProcess
from test_fix_pipeline import fix_script
from serve_helpers import served_app, until

try:
    from sims.github import GitHubState, make_github_app
    from sims.github_fixtures import INSTALLATION_ID, OWNER
    from sims.gitrepo import make_git_repo
    from sims.managed_agents import ManagedAgentsSimulator, Script, normal_review_run, pause
    from sims.managed_agents_fixtures import API_KEY
except ImportError:  # pragma: no cover
    from tests.sims.github import GitHubState, make_github_app
    from tests.sims.github_fixtures import INSTALLATION_ID, OWNER
    from tests.sims.gitrepo import make_git_repo
    from tests.sims.managed_agents import ManagedAgentsSimulator, Script, normal_review_run, pause
    from tests.sims.managed_agents_fixtures import API_KEY

pytestmark = pytest.mark.asyncio(loop_scope="module")

ANSWER = "`total()` skips the first item: `src/app.py:42` slices `items[1:]`."
# A command's answer comment takes the agents' progress at most every 5 s, counting from its first
# write: a session that reports later than that shows its report at once.
PROGRESS_INTERVAL = 5.0
FIX_PR = re.compile(r"\[a fix pull request\]\((https://github\.com/[^)]+/pull/(\d+))\)")


class AnotherPullRequest(PullRequestRepo):
    """One more open PR in the module's repository, by octocat: its own branch off `main` with the
    same change as the first PR, so what a test does to a PR (a review, its body, a pause, jobs) is
    its own. The local git checkout is left on this PR's branch (for `patch_of`)."""

    def __init__(self, first: PullRequestRepo, branch: str) -> None:  # not the parent's: it adds the repository
        self.state, self.git, self.repo, self.branch = first.state, first.git, first.repo, branch
        self.git.checkout(branch, create=True, start="main")
        self.git.write(HEAD_FILES)
        self._publish(self.git.commit(None, f"Change widgets ({branch})"))
        self.pr = self.state.add_pull_request(REPO, head_ref=branch, title="Compute totals", body=AUTHOR,
                                              user="octocat")
        self.shas = [self.pr.head_sha]

    def _publish(self, sha: str) -> None:
        # Only this branch: the simulator's `main` holds commits (the config) the local one has not.
        self.state.import_git(REPO, self.git.path, refs=False)
        self.state.set_branch(REPO, self.branch, sha)

    def push(self, files: dict, message: str = "More changes") -> tuple[str, str]:
        before = self.pr.head_sha
        self.git.checkout(self.branch)
        after = self.git.commit(files, message)
        self._publish(after)
        self.shas.append(after)
        return before, after

    def event(self, action: str = "opened", **pr_fields) -> dict:
        data = super().event(action, **pr_fields)
        data["pull_request"]["head"]["ref"] = self.branch
        return data


@dataclass
class Served:
    """The server process and what it talks to: the GitHub simulator's state, the Managed Agents
    simulator, the module's PR the comments are written on by default, and the scripts queued for
    the sessions on each PR (`script_for_session` picks them by the session's `pr` metadata)."""

    server: ServeProcess
    state: GitHubState
    sim: ManagedAgentsSimulator
    pr: PullRequestRepo
    scripts: dict[int, list[Script]] = field(default_factory=dict)  # by PR number, in order
    _branches: itertools.count = field(default_factory=lambda: itertools.count(1))

    def another_pr(self) -> AnotherPullRequest:
        return AnotherPullRequest(self.pr, f"feature-{next(self._branches)}")

    def script(self, pr: PullRequestRepo, *scripts: Script) -> None:
        """The next sessions on `pr` run these scripts, in order."""
        self.scripts.setdefault(pr.pr.number, []).extend(scripts)

    def script_for_session(self, body: dict) -> Script | None:
        queued = self.scripts.get(int((body.get("metadata") or {}).get("pr") or 0)) or []
        return queued.pop(0) if queued else None

    def sessions_of(self, pr: PullRequestRepo) -> list:
        """The PR's review, fix and command sessions (not the router's, which a review may ask first, nor
        the verifier's, which checks a fix before it is delivered)."""
        return [s for s in self.sim.sessions.values() if s.metadata.get("pr") == str(pr.pr.number)
                and s.agent["name"] not in ("router", "verifier")]

    def log_size(self) -> int:
        return os.fstat(self.server.log.fileno()).st_size

    def log_since(self, offset: int, lines: int = 60) -> str:
        """The server's last `lines` log lines written since `offset` (read without moving the
        file's offset, which the server writes at)."""
        fd = self.server.log.fileno()
        size = os.fstat(fd).st_size
        start = max(offset, size - 200_000)
        text = os.pread(fd, size - start, start).decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def deliver(self, event: str, payload: dict, delivery_id: str) -> tuple[int, dict]:
        """Post a signed delivery, as GitHub does: (HTTP status, the server's answer)."""
        body = json.dumps(payload).encode()
        async with self.server.http.post(f"{self.server.url}/api/github/webhooks", data=body,
                                         headers=delivery_headers(event, body, delivery_id=delivery_id)) as answer:
            return answer.status, await answer.json()

    def answer_comments(self, comment_id: int) -> list:
        """prmedic's answer comments to this command comment, on any PR's conversation."""
        return [c for c in self.state.issue_comments.values() if comment_marker(comment_id) in c.body]

    def answers(self, comment_id: int) -> list[str]:
        """The bodies of prmedic's answer comments to this command comment."""
        return [c.body for c in self.answer_comments(comment_id)]

    def reactions(self, comment_id: int) -> list[str]:
        return reactions(self.state.issue_comments.get(comment_id) or self.state.review_comments[comment_id])

    def edits(self, comment_id: int) -> list[str]:
        """Every body the answer comment to this command comment had, in order: the simulator
        records each request (the post, then each update)."""
        (comment,) = self.answer_comments(comment_id)
        marker = comment_marker(comment_id)
        posted = [r for r in self.state.calls("POST", r"/issues/\d+/comments$") if r.json["body"].startswith(marker)]
        return [r.json["body"] for r in posted + self.state.calls("PATCH", rf"/issues/comments/{comment.id}$")]

    def check_runs(self, pr: PullRequestRepo, name: str, sha: str | None = None) -> list:
        return [c for c in self.state.check_runs_for(REPO, sha or pr.head) if c.name == name]


def comment_marker(comment_id: int) -> str:
    return f"<!-- prmedic:command:{comment_id} -->"






@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory, app_private_key, github_openapi_spec):
    """`prmedic serve` for the whole module, with a PR by octocat on which `maintainer` may write
    and `reader` may read."""
    tmp = tmp_path_factory.mktemp("serve")
    state = GitHubState(app_id=APP_ID, app_slug=APP_SLUG, app_private_key=app_private_key)
    state.add_installation(INSTALLATION_ID, OWNER, account_type="Organization")
    sim = ManagedAgentsSimulator()
    github, agents = await served_app(make_github_app(state)), await served_app(sim.make_app())
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
            served = Served(server, state, sim, pr)
            sim.script_for(served.script_for_session)
            yield served
    finally:
        await sim.shutdown()
        await agents.close()
        await github.close()
    assert state.violations == [] and sim.violations == []


@pytest.fixture(autouse=True)
def server_log(served):
    """Prints what the server logged during the test; pytest shows it when the test fails."""
    offset = served.log_size()
    yield
    print(f"--- prmedic serve, last lines logged during this test ---\n{served.log_since(offset)}")


async def _command(served: Served, body: str, delivery_id: str, *, pr: PullRequestRepo | None = None, **kw) -> int:
    """Write `body` as a comment on `pr` (the module's PR by default) and deliver it; the comment's id."""
    data = comment_event(pr or served.pr, body, **kw)
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
    assert "| `/review` · `/review full` · `/review deep` / `light` |" in answer and "| `/pause` |" in answer
    assert "`@prmedic <command>`" in answer
    assert served.reactions(cid) == ["eyes", "rocket"]
    assert served.state.violations == []


async def test_a_readers_pause_is_refused_naming_the_permission(served):
    cid = await _command(served, "/pause", "serve-pause", user="reader")
    answer = await _finished(served, cid)
    assert "@reader `/pause` needs **write** permission on this repository (you have read)" in answer
    assert served.reactions(cid) == ["eyes", "confused"]


async def test_ask_is_answered_in_its_answer_comment_with_cost_and_duration(served):
    served.script(served.pr, normal_review_run(custom_calls=[
        ("report_progress", {"message": "Reading total()", "done": ["read the diff"], "todo": ["answer"]}),
        ("reply", {"body": ANSWER})], final_text="Answered."))
    sessions = len(served.sessions_of(served.pr))
    cid = await _command(served, "/ask why does total() return 5 for [1, 2, 3]?", "serve-ask")
    answer = await _finished(served, cid)
    assert ANSWER in answer
    assert "`/ask` by @maintainer · Cost (list price): $" in answer and "Duration:" in answer
    assert served.reactions(cid) == ["eyes", "rocket"]
    assert len(served.sessions_of(served.pr)) == sessions + 1
    session = served.sessions_of(served.pr)[-1]
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


# -- every command's result on the PR, each on a PR of its own -------------------------------------

def task_of(session) -> str:
    return "".join(block["text"] for block in session.user_messages[0]["content"])


async def test_review_posts_a_review_its_answer_links_after_showing_the_agents_progress(served):
    pr = served.another_pr()
    script = review_script([FINDING])
    script.turns[0].insert(0, pause(PROGRESS_INTERVAL))  # so the answer comment takes the report at once
    served.script(pr, script)
    cid = await _command(served, "/review", "serve-review", pr=pr)
    answer = await _finished(served, cid)
    (review,) = served.state.reviews_of(REPO, pr.pr.number)
    assert review.commit_id == pr.head and review.user == served.state.bot_login
    (check,) = served.check_runs(pr, "prmedic review")
    assert check.conclusion == "neutral"
    assert f"Reviewed `{pr.head[:7]}`: 1 finding(s)" in answer
    assert f"#pullrequestreview-{review.id})" in answer and f"/runs/{check.id})" in answer
    assert "`/review` by @maintainer · Cost (list price): $" in answer and "Duration:" in answer
    assert served.reactions(cid) == ["eyes", "rocket"]
    # the same comment showed the steps on the way: the heading first, then the agents' checklist
    edits = served.edits(cid)
    assert f"Reviewing `{pr.head[:7]}` (asked by @maintainer)…" in edits[0] and "Starting the agents…" in edits[0]
    progress = [i for i, body in enumerate(edits) if "Reviewing with the reviewer and the tester." in body]
    assert progress and progress[0] < len(edits) - 1, edits
    assert "- [ ] review\n- [ ] tests" in edits[progress[0]]
    assert "Reviewing with the reviewer" not in answer  # the outcome replaced the progress
    assert len(served.answers(cid)) == 1


async def test_describe_writes_the_description_into_the_body_and_keeps_the_authors_text(served):
    pr = served.another_pr()
    served.script(pr, describe_script(FIRST), describe_script(SECOND))
    cid = await _command(served, "/describe", "serve-describe", pr=pr)
    answer = await _finished(served, cid)
    assert pr.pr.body == f"{AUTHOR}\n\n{block(FIRST)}"
    assert "written into its body" in answer and "`/describe` by @maintainer · Cost" in answer
    assert served.reactions(cid) == ["eyes", "rocket"]

    pr.pr.body += "\n\nNotes below the description."  # the author edits it on GitHub
    again = await _command(served, "/describe", "serve-describe-again", pr=pr)
    await _finished(served, again)
    assert pr.pr.body == f"{AUTHOR}\n\n{block(SECOND)}\n\nNotes below the description."
    assert served.reactions(again) == ["eyes", "rocket"]


def fix_pull_of(served: Served, answer: str):
    found = FIX_PR.search(answer)
    assert found, answer
    return found[1], served.state.pull(REPO, int(found[2]))


async def test_fix_with_instructions_opens_a_fix_pr_holding_the_agents_patch(served):
    pr = served.another_pr()
    patch = patch_of(pr, {"src/app.py": RENAMED})
    served.script(pr, fix_script(propose(patch)))
    cid = await _command(served, "/fix rename total to sum_after_first", "serve-fix", pr=pr)
    answer = await _finished(served, cid)
    url, fix_pr = fix_pull_of(served, answer)
    assert fix_pr.base_ref == pr.branch
    assert fix_pr.head_ref.startswith(f"prmedic/fix/{pr.pr.number}-{pr.head[:7]}-change-")
    repo = served.state.repo(REPO)
    commit = repo.store.commit(repo.branch_sha(fix_pr.head_ref))
    assert commit.parents == [pr.head] and commit.tree == tree_after_git_apply(pr, patch)
    assert "asked with `/fix` by @maintainer" in fix_pr.body
    check = fix_check(served, pr.head)
    assert check.conclusion == "neutral" and check.output["title"] == f"Change proposed: {url}"
    assert f"/runs/{check.id})" in answer and "`/fix` by @maintainer · Cost (list price): $" in answer
    assert served.reactions(cid) == ["eyes", "rocket"]
    (session,) = served.sessions_of(pr)
    assert fenced(task_of(session), "/fix from @maintainer") == "rename total to sum_after_first"


async def test_test_proposes_the_tests_as_a_fix_pr_with_the_runs_result(served):
    pr = served.another_pr()
    patch = patch_of(pr, {"tests/test_total.py": NEW_TEST})
    body = f"**What is tested**: total() over three items.\n**Run**: {RUN}\n**Found**: nothing."
    served.script(pr, fix_script(propose(patch, title="Add tests for total()", body=body)))
    cid = await _command(served, "/test total() with three items", "serve-test", pr=pr)
    answer = await _finished(served, cid)
    url, fix_pr = fix_pull_of(served, answer)
    assert f"Proposed tests in [a fix pull request]({url})" in answer and RUN in answer
    assert fix_pr.head_ref.startswith(f"prmedic/fix/{pr.pr.number}-{pr.head[:7]}-tests-")
    assert f"Tests for #{pr.pr.number}, asked with `/test` by @maintainer." in fix_pr.body and RUN in fix_pr.body
    repo = served.state.repo(REPO)
    assert repo.store.commit(repo.branch_sha(fix_pr.head_ref)).tree == tree_after_git_apply(pr, patch)
    assert fix_check(served, pr.head).output["title"] == f"Tests proposed: {url}"
    assert served.reactions(cid) == ["eyes", "rocket"]


async def test_ask_in_a_review_thread_is_answered_in_that_thread(served):
    pr = served.another_pr()
    served.script(pr, ask_script(("reply", {"body": ANSWER})))
    data = review_comment_event(pr, "/ask why does the loop skip one item?")
    data["comment"].update(diff_hunk=HUNK, side="RIGHT")
    status, accepted = await served.deliver("pull_request_review_comment", data, "serve-ask-thread")
    assert (status, accepted["status"]) == (202, "accepted"), accepted
    cid = data["comment"]["id"]
    await until(lambda: len(served.reactions(cid)) == 2, "the final reaction on the review comment")
    assert served.reactions(cid) == ["eyes", "rocket"]
    (reply,) = [c for c in served.state.review_comments_of(REPO, pr.pr.number) if comment_marker(cid) in c.body]
    assert reply.in_reply_to_id == cid and reply.user == served.state.bot_login
    assert ANSWER in reply.body and "`/ask` by @maintainer" in reply.body
    assert served.answers(cid) == []  # nothing on the conversation
    (session,) = served.sessions_of(pr)
    assert "In a review thread on `src/app.py` line 41 (new version)" in task_of(session)


async def test_stop_during_a_running_review_ends_its_check_run_cancelled_stopped_by_the_user(served):
    pr = served.another_pr()
    slow = review_script([FINDING])
    slow.turns[0].insert(0, pause(30))
    served.script(pr, slow)
    review = await _command(served, "/review", "serve-stop-review", pr=pr)
    await until(lambda: served.sessions_of(pr), "the /review session")
    stop = await _command(served, "/stop", "serve-stop", pr=pr)
    stop_answer = await _finished(served, stop)
    assert "Stopped 1 job(s) on this pull request (by @maintainer)" in stop_answer and "(running)" in stop_answer
    assert served.reactions(stop) == ["eyes", "rocket"]
    review_answer = await _finished(served, review)
    assert "`/review` was stopped by @maintainer." in review_answer
    assert served.reactions(review) == ["eyes", "confused"]
    await until(lambda: served.check_runs(pr, "prmedic review")[0].status == "completed", "the check run closed")
    (check,) = served.check_runs(pr, "prmedic review")
    assert check.conclusion == "cancelled" and check.output["title"] == "Stopped by @maintainer"
    (session,) = served.sessions_of(pr)
    assert session.interrupts and not served.state.reviews_of(REPO, pr.pr.number)


async def test_pause_then_a_push_gets_no_automatic_review_and_resume_brings_it_back(served):
    pr = served.another_pr()
    served.script(pr, review_script([FINDING]))
    paused = await _command(served, "/pause", "serve-pause-own", pr=pr)
    assert "Automatic reviews are **paused**" in await _finished(served, paused)
    assert served.reactions(paused) == ["eyes", "rocket"]

    pr.push({"src/util.py": "def helper(x):\n    return x * 2\n"})
    await served.deliver("pull_request", pr.event("synchronize"), "serve-push-paused")
    await until(lambda: [c for c in served.check_runs(pr, "prmedic review") if c.status == "completed"],
                "the paused push's check run")
    (check,) = served.check_runs(pr, "prmedic review")
    assert check.conclusion == "skipped"
    assert check.output["title"] == "Skipped: automatic reviews are paused on this PR (/resume)"
    assert served.sessions_of(pr) == []

    resumed = await _command(served, "/resume", "serve-resume", pr=pr)
    assert "Automatic reviews are **on** again" in await _finished(served, resumed)
    pr.push({"src/util.py": "def helper(x):\n    return x * 3\n"})
    await served.deliver("pull_request", pr.event("synchronize"), "serve-push-resumed")
    await until(lambda: served.state.reviews_of(REPO, pr.pr.number), "the review of the push after /resume")
    await until(lambda: served.check_runs(pr, "prmedic review")[0].status == "completed", "its check run")
    assert served.check_runs(pr, "prmedic review")[0].conclusion == "neutral" and len(served.sessions_of(pr)) == 1


async def test_config_answers_the_effective_yaml_and_the_files_problems(served):
    served.pr.set_config("review:\n  max_comments: 3\n  colour: blue\n")
    try:
        cid = await _command(served, "/config", "serve-config")
        answer = await _finished(served, cid)
    finally:
        served.state.commit_files(REPO, {".github/prmedic.yml": None}, branch="main", message="No config")
    assert "The effective configuration (from `.github/prmedic.yml` on the default branch):" in answer
    assert "```yaml\nreview:\n  enabled: true" in answer
    assert "max_comments: 10" in answer  # the file is invalid: the defaults are in force
    assert "`review.colour`: is not a known setting" in answer
    assert served.reactions(cid) == ["eyes", "rocket"]


async def test_a_readers_fix_is_refused_naming_the_permission_and_starts_nothing(served):
    pr = served.another_pr()
    served.script(pr, fix_script(propose(patch_of(pr, {"src/app.py": RENAMED}))))
    pulls = len(served.state.pulls)
    cid = await _command(served, "/fix rename total", "serve-reader-fix", pr=pr, user="reader")
    answer = await _finished(served, cid)
    assert "@reader `/fix` needs **write** permission on this repository (you have read); prmedic did not run it." \
        in answer
    assert served.reactions(cid) == ["eyes", "confused"]
    assert served.sessions_of(pr) == [] and len(served.state.pulls) == pulls
    assert served.check_runs(pr, "prmedic fix") == []
