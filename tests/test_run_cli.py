"""`prmedic run`: one job inline, without a server — against both simulators, in-process and as a
real process; and its pure parts (what to run, how it ended, what GitHub would have answered)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import subprocess
import sys

import pytest
from review_helpers import REPO, PullRequestRepo, review_script

from app.cli import main
from app.oneshot.answers import FIRST_ID, FakeWrites, git_blob_sha
from app.oneshot.cli import run_once
from app.oneshot.display import Display, event_line
from app.oneshot.reference import BadReference, endpoints, parse_reference, parse_request
from app.oneshot.report import collect
from app.oneshot.result import conclusion_and_exit, run_result
from app.oneshot.settings import load_run_settings

try:
    from sims.managed_agents import normal_review_run, pause
except ImportError:  # pragma: no cover
    from tests.sims.managed_agents import normal_review_run, pause

MAJOR = {"path": "src/app.py", "line": 41, "severity": "major", "body": "`items[1:]` skips the first item."}
BLOCKER = {"path": "src/app.py", "line": 10, "severity": "blocker",
           "body": "Dividing by `len(items)` raises ZeroDivisionError for an empty list."}
ANSWER = "`total()` skips the first item: `src/app.py:42` slices `items[1:]`."
WRITES = ("POST", "PATCH", "PUT", "DELETE")


# -- what to run (pure) ----------------------------------------------------------------------

@pytest.mark.parametrize("text, repo, number, host", [
    ("octo-org/widgets#12", "octo-org/widgets", 12, None),
    ("https://github.com/octo-org/widgets/pull/12", "octo-org/widgets", 12, "github.com"),
    ("https://github.com/octo-org/widgets/pull/12/files#diff-1", "octo-org/widgets", 12, "github.com"),
    ("https://GHE.example.com/team/my.repo/pull/3?w=1", "team/my.repo", 3, "ghe.example.com"),
    ("  a-b/c_d#1 ", "a-b/c_d", 1, None),
])
def test_a_pull_request_is_named_by_reference_or_url(text, repo, number, host):
    ref = parse_reference(text)
    assert (ref.repo, ref.number, ref.host) == (repo, number, host)


@pytest.mark.parametrize("text", ["octo-org/widgets", "widgets#3", "octo-org/widgets#0", "octo-org/widgets#x",
                                  "https://github.com/octo-org/widgets/issues/3", "ftp://github.com/o/r/pull/3",
                                  "https://github.com/octo-org/pull/3", "-o/r#3", "o/r#3 extra"])
def test_anything_else_is_refused_with_the_forms_that_work(text):
    with pytest.raises(BadReference, match="OWNER/REPO#NUMBER|numbers start at 1"):
        parse_reference(text)


def test_the_github_address_follows_the_reference():
    configured = ("http://127.0.0.1:9/api", "http://127.0.0.1:9")
    assert endpoints(parse_reference("o/r#1"), *configured) == configured
    assert endpoints(parse_reference("https://github.com/o/r/pull/1"), *configured) == \
        ("https://api.github.com", "https://github.com")
    assert endpoints(parse_reference("https://ghe.corp/o/r/pull/1"), *configured) == \
        ("https://ghe.corp/api/v3", "https://ghe.corp")
    assert endpoints(parse_reference("http://127.0.0.1:9/o/r/pull/1"), *configured) == configured


def test_the_words_after_the_pull_request_are_the_actions_arguments():
    assert parse_request("ask", "o/r#3", ["why", "is", "X?"]).args == "why is X?"
    assert parse_request("fix", "o/r#3", []).args == ""
    with pytest.raises(BadReference, match="needs a question"):
        parse_request("ask", "o/r#3", [])
    with pytest.raises(BadReference, match="takes no words"):
        parse_request("review", "o/r#3", ["please"])
    with pytest.raises(BadReference, match="unknown action"):
        parse_request("merge", "o/r#3", [])


# -- how a run ended (pure) -------------------------------------------------------------------

@pytest.mark.parametrize("kind, result, failed, expected", [
    ("review", {"conclusion": "success"}, False, ("success", 0)),
    ("review", {"conclusion": "neutral", "findings": {"minor": 1}}, False, ("neutral", 0)),
    ("review", {"conclusion": "failure", "findings": {"blocker": 1}}, False, ("failure", 1)),
    ("review", {"conclusion": "failure", "unfinished": "the budget ran out"}, False, ("failure", 1)),
    ("review", {"conclusion": "neutral", "unfinished": "the budget ran out"}, False, ("neutral", 3)),
    ("review", {"skipped": "the pull request is closed"}, False, ("skipped", 0)),
    ("command", {"ok": True, "result": "answered"}, False, ("success", 0)),
    ("command", {"ok": False, "result": "no_answer"}, False, ("neutral", 3)),
    ("command", {"ok": False, "result": "skipped", "skipped": "no failing checks"}, False, ("skipped", 0)),
    ("command", {"ok": False, "result": "closed"}, False, ("skipped", 0)),
    ("command", {"result": "described"}, False, ("success", 0)),  # a command from a comment: no `ok`
    ("command", {"result": "refused", "needed": "write"}, False, ("skipped", 0)),
    ("command", {"result": "reviewed", "review": {"conclusion": "failure"}}, False, ("failure", 1)),
    ("review", None, True, ("neutral", 3)),
])
def test_the_exit_status_says_done_findings_or_failed(kind, result, failed, expected):
    assert conclusion_and_exit(kind, result, failed=failed) == expected


def test_a_result_carries_the_links_and_cost_a_workflow_reads():
    result = run_result("command", {"ok": True, "fix_url": "https://x/pull/9", "delivered_as": "pull_request",
                                    "list_cost_usd": 0.5, "session_id": "sesn_1"})
    assert result.outputs == {"conclusion": "success", "review_url": "", "fix_pr_url": "https://x/pull/9",
                              "comment_url": "", "session_id": "sesn_1", "cost_usd": "0.50"}
    pushed = run_result("command", {"ok": True, "fix_url": "https://x/commit/1", "delivered_as": "push"})
    assert pushed.fix_pr_url is None and pushed.fix_url == "https://x/commit/1"


# -- what GitHub would have answered (pure) ---------------------------------------------------

def test_a_kept_write_is_answered_as_github_would():
    fake = FakeWrites(web_url="https://github.com")
    status, review = fake.answer("POST", "/repos/o/r/pulls/2/reviews", {"body": "hi", "event": "COMMENT"})
    assert status == 200 and review["id"] >= FIRST_ID and review["state"] == "COMMENTED"
    assert review["html_url"] == f"https://github.com/o/r/pull/2#pullrequestreview-{review['id']}"
    _, check = fake.answer("POST", "/repos/o/r/check-runs", {"name": "prmedic review", "status": "in_progress"})
    _, done = fake.answer("PATCH", f"/repos/o/r/check-runs/{check['id']}", {"status": "completed",
                                                                          "conclusion": "neutral"})
    assert (done["name"], done["conclusion"]) == ("prmedic review", "neutral")
    content = b"print('hello')\n"
    _, blob = fake.answer("POST", "/repos/o/r/git/blobs", {"content": base64.b64encode(content).decode(),
                                                          "encoding": "base64"})
    git = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
    assert blob["sha"] == git_blob_sha(content) == git
    _, pull = fake.answer("POST", "/repos/o/r/pulls", {"title": "Fix", "head": "b", "base": "main"})
    assert pull["html_url"].endswith(f"/o/r/pull/{pull['number']}")


async def test_on_a_terminal_a_status_line_is_redrawn_under_the_lines():
    from app.oneshot.display import ERASE_LINE, LiveDisplay

    out = io.StringIO()
    async with LiveDisplay(out, interval=0.01) as display:
        display.start("prmedic run review o/r#2")
        display.step("reviewing o/r#2 at abc1234")
        await asyncio.sleep(0.05)
    text = out.getvalue()
    assert f"{ERASE_LINE}[0:00] reviewing o/r#2 at abc1234\n" in text
    assert "0:00 prmedic run review o/r#2 · reviewing o/r#2 at abc1234" in text  # the status line
    assert text.endswith(ERASE_LINE)  # cleared when the run ends


def test_tool_calls_and_refusals_are_lines_on_the_terminal():
    from types import SimpleNamespace as Event

    assert event_line(Event(type="agent.custom_tool_use", name="report_progress",
                            input={"message": "Reading total()", "done": ["a"], "todo": ["b", "c"]})) == \
        "progress: Reading total() (1 done, 2 to do)"
    assert event_line(Event(type="agent.tool_use", name="bash", input={"command": "pytest -q"})) == "· bash: pytest -q"
    assert event_line(Event(type="user.custom_tool_result", is_error=True,
                            content=[{"type": "text", "text": "The patch was refused"}])) == \
        "  refused: The patch was refused"
    assert event_line(Event(type="session.status_idle")) is None


# -- against the simulators, in-process ---------------------------------------------------------

@pytest.fixture
def run_env(monkeypatch, tmp_path, github_server, managed_agents):
    """`prmedic run`'s environment: a workflow-like token (an installation token), the simulators'
    addresses, no App settings, no `.env`."""
    from app.agents.sync import forget_synced

    for name in [n for n in os.environ if n.startswith("PRMEDIC_")] + ["GITHUB_TOKEN", "GH_TOKEN", "GITHUB_ACTOR"]:
        monkeypatch.delenv(name, raising=False)
    token = github_server.token()
    env = {"GITHUB_TOKEN": token, "PRMEDIC_GITHUB_API_URL": github_server.url, **managed_agents.env}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    forget_synced()
    yield env
    forget_synced()


async def run(managed_agents, action: str, ref: str = f"{REPO}#2", *words: str, dry_run: bool = False):
    """(result, the text printed after the run, the progress lines)."""
    out = io.StringIO()
    result, text = await run_once(parse_request(action, ref, list(words)), load_run_settings(), dry_run=dry_run,
                                  display=Display(out), client=managed_agents.client)
    return result, text, out.getvalue()


def writes_to(state) -> list:
    return [r for r in state.api_calls() if r.method in WRITES]


def assert_never_mounted(sim, token: str) -> None:
    """The session's repository was mounted without any token: never the user's."""
    assert sim.sessions
    for session in sim.sessions.values():
        assert token not in str(session.resources)
        assert all(resource.get("_token") is None for resource in session.resources)


async def test_run_review_with_a_token_posts_the_review_and_exits_0(run_env, github_server, managed_agents, git_repo):
    state, sim = github_server.state, managed_agents.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = review_script([MAJOR])
    result, text, progress = await run(managed_agents, "review")
    assert (result.conclusion, result.exit_code) == ("neutral", 0), text
    (review,) = state.reviews_of(REPO, 2)
    assert result.review_url and result.review_url.endswith(f"#pullrequestreview-{review.id}")
    (comment,) = state.review_comments_of(REPO, 2)
    assert (comment.path, comment.line) == ("src/app.py", 41)
    (check,) = [c for c in state.check_runs_for(REPO, pr.head) if c.name == "prmedic review"]
    assert check.conclusion == "neutral"
    assert "Reviewed octo-org/widgets#2: 1 finding(s): 1 major · conclusion neutral" in text
    assert "Posted on GitHub:" in text and "exit status 0" in text
    assert "progress: Reviewing with the reviewer and the tester." in progress and "publish_review" in progress
    assert_never_mounted(sim, run_env["GITHUB_TOKEN"])
    assert run_env["GITHUB_TOKEN"] not in text + progress


async def test_findings_at_or_above_fail_on_exit_1(run_env, github_server, managed_agents, git_repo):
    pr = PullRequestRepo(github_server.state, git_repo)
    pr.set_config("review:\n  fail_on: major\n")
    managed_agents.sim.default_script = review_script([BLOCKER])
    result, text, _ = await run(managed_agents, "review")
    assert (result.conclusion, result.exit_code) == ("failure", 1)
    assert "exit status 1 (findings at or above review.fail_on)" in text


async def test_dry_run_posts_nothing_and_prints_the_review(run_env, github_server, managed_agents, git_repo):
    state = github_server.state
    PullRequestRepo(state, git_repo)
    managed_agents.sim.default_script = review_script([MAJOR, BLOCKER], summary="Two real bugs in `total()`.")
    before = len(writes_to(state))
    result, text, _ = await run(managed_agents, "review", dry_run=True)
    assert writes_to(state)[before:] == [] and state.reviews_of(REPO, 2) == [] and state.check_runs_for(REPO) == []
    assert result.exit_code == 0 and result.review_url  # the review the agents were told was published
    assert "Dry run: nothing was posted. prmedic would have posted:" in text
    assert "── Review on #2 (COMMENT)" in text and "Two real bugs in `total()`." in text
    assert "src/app.py:41 (RIGHT)" in text and "skips the first item" in text and "ZeroDivisionError" in text
    assert "── Check run “prmedic review”: neutral" in text
    assert "<!-- prmedic:" not in text
    assert "(not posted: dry run)" in text


async def test_ask_dry_run_prints_the_answer_and_posts_nothing(run_env, github_server, managed_agents, git_repo):
    state = github_server.state
    PullRequestRepo(state, git_repo)
    managed_agents.sim.default_script = normal_review_run(custom_calls=[("reply", {"body": ANSWER})])
    before = len(writes_to(state))
    result, text, progress = await run(managed_agents, "ask", f"{REPO}#2", "why", "does", "total()", "drop",
                                       "one?", dry_run=True)
    assert writes_to(state)[before:] == []
    assert (result.conclusion, result.exit_code) == ("success", 0), text
    assert ANSWER in text.split("Dry run:")[0]  # the answer itself, first
    assert "── Comment on #2" in text and "asked with `prmedic run ask`:" in text
    assert "why does total() drop one?" in text
    assert "command started" in progress and "command done" in progress
    task = "".join(b["text"] for b in next(iter(managed_agents.sim.sessions.values())).user_messages[0]["content"])
    assert "why does total() drop one?" in task


async def test_ask_posts_its_answer_as_one_marked_comment_headed_by_the_question(
        run_env, github_server, managed_agents, git_repo):
    state = github_server.state
    PullRequestRepo(state, git_repo)
    managed_agents.sim.default_script = normal_review_run(custom_calls=[
        ("report_progress", {"message": "Reading total()"}), ("reply", {"body": ANSWER})])
    result, _, _ = await run(managed_agents, "ask", f"{REPO}#2", "why?")
    (comment,) = state.issue_comments_of(REPO, 2)
    assert comment.body.startswith("<!-- prmedic:run:") and "asked with `prmedic run ask`:" in comment.body
    assert ANSWER in comment.body and "Cost (list price): $" in comment.body
    assert result.comment_url and result.comment_url.endswith(f"#issuecomment-{comment.id}")


async def test_fix_dry_run_prints_the_fix_pull_request_and_its_patch(run_env, github_server, managed_agents,
                                                                    git_repo):
    from test_command_fix import RENAMED, patch_of, propose
    from test_fix_pipeline import fix_script

    state = github_server.state
    pr = PullRequestRepo(state, git_repo)
    patch = patch_of(pr, {"src/app.py": RENAMED})
    managed_agents.sim.default_script = fix_script(propose(patch))
    before = len(writes_to(state))
    result, text, _ = await run(managed_agents, "fix", f"{REPO}#2", "rename", "total", "to", "sum_after_first",
                                dry_run=True)
    assert writes_to(state)[before:] == [] and len(state.pulls) == 1  # no branch, commit or pull request made
    assert (result.conclusion, result.exit_code) == ("success", 0), text
    assert result.fix_pr_url and result.result["delivered_as"] == "pull_request"
    assert f"Fix pull request “Rename total() to sum_after_first()” (prmedic/fix/2-{pr.head[:7]}-change-" in text
    assert "→ feature)" in text and "asked with `/fix` by @prmedic[bot]" in text
    assert "── The patch (the agents' last accepted propose_fix call)" in text
    assert "+def sum_after_first(items):" in text
    assert "── Check run “prmedic fix”: neutral — Change proposed:" in text
    # The fix commit was not made, so no verifier could check it out: the fix says so instead.
    assert not [s for s in managed_agents.sim.sessions.values() if s.agent["name"] == "verifier"]
    assert "this is a dry run" in text


async def test_a_fix_that_would_wait_for_approval_is_proposed_as_a_pull_request_instead(
        run_env, github_server, managed_agents, git_repo):
    from test_command_fix import RENAMED, patch_of, propose
    from test_fix_pipeline import fix_script

    state = github_server.state
    pr = PullRequestRepo(state, git_repo)
    pr.set_config("fix:\n  delivery: push\n")  # approval is then required by default
    patch = patch_of(pr, {"src/app.py": RENAMED})
    managed_agents.sim.default_script = fix_script(propose(patch))
    head = pr.head
    result, text, _ = await run(managed_agents, "fix", f"{REPO}#2", "rename", "total", "to", "sum_after_first")
    assert result.result["delivered_as"] == "pull_request" and result.fix_pr_url, text
    assert len(state.pulls) == 2 and pr.head == head  # a fix pull request; nothing pushed to the branch
    assert not [c for c in state.check_runs.values() if c.conclusion == "action_required"]
    assert "a run without a prmedic server cannot wait for a decision" in text


async def test_describe_dry_run_prints_the_new_description(run_env, github_server, managed_agents, git_repo):
    state = github_server.state
    PullRequestRepo(state, git_repo, body="Adds `total()`.")
    description = "Adds `total()`, which sums every item but the first.\n\n**Changes**\n- src/app.py"
    managed_agents.sim.default_script = normal_review_run(custom_calls=[("write_description", {"body": description})])
    result, text, _ = await run(managed_agents, "describe", dry_run=True)
    assert writes_to(state) == [] and state.pull(REPO, 2).body == "Adds `total()`."
    assert result.exit_code == 0, text
    section = text.split("── Description of #2 (the pull request's new body)")[1]
    assert "Adds `total()`.\n\n    Adds `total()`, which sums every item but the first." in section


async def test_a_check_run_github_refuses_the_token_is_shown_here_and_the_review_still_posted(
        run_env, github_server, managed_agents, git_repo):
    state = github_server.state
    PullRequestRepo(state, git_repo)
    state.inject_fault("POST", r"/check-runs$", 403, body={"message": "You must authenticate via a GitHub App.",
                                                          "documentation_url": "https://docs.github.com/rest"})
    managed_agents.sim.default_script = review_script([MAJOR])
    result, text, progress = await run(managed_agents, "review")
    assert result.exit_code == 0 and len(state.reviews_of(REPO, 2)) == 1
    assert state.check_runs_for(REPO) == [] and state.count("PATCH", r"/check-runs/") == 0
    assert "only GitHub Apps may" in progress
    assert "── Check run “prmedic review”: neutral" in text


async def test_stopped_with_ctrl_c_the_session_is_interrupted_and_the_check_run_cancelled(
        run_env, github_server, managed_agents, git_repo):
    state, sim = github_server.state, managed_agents.sim
    pr = PullRequestRepo(state, git_repo)
    slow = review_script([MAJOR])
    slow.turns[0].insert(0, pause(30))
    sim.default_script = slow
    running = asyncio.create_task(run(managed_agents, "review"))
    await sim.wait_until(lambda: any(s.user_messages for s in sim.sessions.values()))  # the task was sent
    running.cancel()  # what asyncio.run does with the main task on Ctrl-C
    with pytest.raises(asyncio.CancelledError):
        await running
    assert next(iter(sim.sessions.values())).interrupts
    (check,) = state.check_runs_for(REPO, pr.head)
    assert (check.status, check.conclusion) == ("completed", "cancelled")
    assert state.reviews_of(REPO, 2) == []


def use_the_app(monkeypatch, tmp_path, github_server) -> None:
    """The App's settings (id + key file) beside the token: the App is what the run uses."""
    from sims.github_fixtures import APP_ID

    key = tmp_path / "app.pem"
    key.write_text(github_server.private_key)
    monkeypatch.setenv("PRMEDIC_APP_ID", str(APP_ID))
    monkeypatch.setenv("PRMEDIC_PRIVATE_KEY_PATH", str(key))


async def test_with_the_apps_settings_the_session_mounts_a_read_only_installation_token(
        run_env, github_server, managed_agents, git_repo, monkeypatch, tmp_path):
    from sims.github_fixtures import INSTALLATION_ID

    state, sim = github_server.state, managed_agents.sim
    PullRequestRepo(state, git_repo)
    use_the_app(monkeypatch, tmp_path, github_server)
    sim.default_script = review_script([MAJOR])
    result, text, progress = await run(managed_agents, "review", dry_run=True)
    assert result.exit_code == 0 and "(the App)" in progress, text
    # the installation was looked up as the App (its JWT), on the pull request's repository
    (lookup,) = state.calls("GET", r"/installation$")
    assert (lookup.path, lookup.auth, lookup.status) == (f"/repos/{REPO}/installation", "jwt", 200)
    # minting installation tokens is the only request that changes anything, even in a dry run
    mints = writes_to(state)
    assert {r.path for r in mints} == {f"/app/installations/{INSTALLATION_ID}/access_tokens"}
    # the session's token: asked for this one repository, contents read-only
    (resource,) = next(iter(sim.sessions.values())).resources
    mounted = state.tokens[resource["_token"]]
    (mint,) = [r for r in mints if r.json and r.json.get("repositories")]
    assert mint.json == {"repositories": [REPO.split("/")[1]], "permissions": {"contents": "read"}}
    assert mounted.permissions == {"contents": "read", "metadata": "read"} and mounted.repositories == {REPO.lower()}
    assert resource["_token"] != run_env["GITHUB_TOKEN"]
    assert resource["_token"] not in text + progress


async def test_with_the_apps_settings_a_repository_the_app_is_not_installed_on_exits_2(
        run_env, github_server, managed_agents, git_repo, monkeypatch, tmp_path, capsys):
    state = github_server.state
    PullRequestRepo(state, git_repo)
    state.installations.clear()  # the App exists, but no installation covers the repository
    use_the_app(monkeypatch, tmp_path, github_server)
    code = await asyncio.to_thread(main, ["run", "review", f"{REPO}#2"])
    err = capsys.readouterr().err
    assert code == 2 and f"is not installed on {REPO}" in err and "Traceback" not in err, err
    assert [r.status for r in state.calls("GET", r"/installation$")] == [404]
    assert managed_agents.sim.sessions == {} and writes_to(state) == []


def test_the_report_shows_each_object_in_its_final_state():
    from app.oneshot.github import Write

    writes = [Write("POST", "/repos/o/r/issues/2/comments", {"body": "<!-- prmedic:run:x -->\nworking…"},
                    {"id": 7}, True),
              Write("PATCH", "/repos/o/r/issues/comments/7", {"body": "<!-- prmedic:run:x -->\nThe answer."},
                    {"id": 7}, True),
              Write("PATCH", "/repos/o/r/pulls/2", {"body": "Mine.\n\n<!-- prmedic:describe:start -->\nNew."
                                                           "\n<!-- prmedic:describe:end -->"}, {}, True)]
    posted = collect(writes)
    assert [(p.title, p.body) for p in posted] == [
        ("Comment on #2", "The answer."), ("Description of #2 (the pull request's new body)", "Mine.\n\nNew.")]


async def test_a_shared_store_with_a_job_waiting_for_its_worker_is_left_as_it_was(tmp_path):
    from app.oneshot.engine import SHARED_STORE_BUSY, _claim
    from app.oneshot.result import UsageError
    from app.store import Delivery, JobKind, JobState, NewJob, open_store

    store = open_store(f"sqlite:///{tmp_path / 'shared.db'}")
    await store.open()
    try:
        def job(n: int) -> NewJob:
            return NewJob(kind=JobKind.review, repo=REPO, installation_id=1, pr_number=n, head_sha="a" * 40)

        await store.record_delivery(Delivery(delivery_id="webhook", event="pull_request", received_at=0), [job(1)])
        (mine,) = (await store.record_delivery(Delivery(delivery_id="run", event="prmedic-run", received_at=0),
                                               [job(2)], max_attempts=1)).job_ids
        with pytest.raises(UsageError, match="PRMEDIC_DATABASE_URL"):
            await _claim(store, mine, "host:1:run", 60)
        waiting = [j for j in await store.list_jobs() if j.id != mine]
        assert [(j.state, j.attempts) for j in waiting] == [(JobState.running, 0)]  # given back, runnable at once
        assert (await store.get_job(mine)).state is JobState.cancelled
        assert SHARED_STORE_BUSY.startswith("the store at PRMEDIC_DATABASE_URL")
    finally:
        await store.close()


# -- refused before any session: exit status 2 ----------------------------------------------------

async def test_a_private_repository_with_only_a_token_fails_before_any_session(
        run_env, github_server, managed_agents, git_repo, capsys):
    pr = PullRequestRepo(github_server.state, git_repo)
    pr.repo.private = True
    code = await asyncio.to_thread(main, ["run", "review", f"{REPO}#2"])
    err = capsys.readouterr().err
    assert code == 2 and "a private repository needs the App's settings" in err and "Traceback" not in err
    assert managed_agents.sim.sessions == {} and writes_to(github_server.state) == []


@pytest.mark.parametrize("unset, argv, message", [
    (("GITHUB_TOKEN",), ["run", "review", f"{REPO}#2"], "no GitHub credentials: set GITHUB_TOKEN"),
    (("ANTHROPIC_API_KEY",), ["run", "review", f"{REPO}#2"], "ANTHROPIC_API_KEY is not set"),
    ((), ["run", "review", "widgets#2"], "is not a pull request"),
    ((), ["run", "ask", f"{REPO}#2"], "`ask` needs a question"),
])
def test_usage_and_configuration_errors_exit_2_with_one_line(run_env, monkeypatch, capsys, unset, argv, message):
    for name in unset:
        monkeypatch.delenv(name)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# -- a real process ---------------------------------------------------------------------------

async def test_python_m_app_run_review_dry_run_prints_the_review_and_posts_nothing(
        run_env, github_server, managed_agents, git_repo, tmp_path):
    state = github_server.state
    PullRequestRepo(state, git_repo)
    managed_agents.sim.default_script = review_script([MAJOR], summary="`total()` drops the first element.")
    env = {**os.environ, **run_env}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "run", "review", f"https://github.com/{REPO}/pull/2",
        "--dry-run", env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    out, err = stdout.decode(), stderr.decode()
    assert process.returncode == 0, out + err
    assert "Reviewed octo-org/widgets#2: 1 finding(s): 1 major" in out
    assert "Dry run: nothing was posted." in out and "`total()` drops the first element." in out
    assert "src/app.py:41 (RIGHT)" in out and "skips the first item" in out
    assert "[0:0" in out and "progress: Reviewing with the reviewer and the tester." in out  # plain lines: a pipe
    assert writes_to(state) == []
    assert_never_mounted(managed_agents.sim, run_env["GITHUB_TOKEN"])
    assert run_env["GITHUB_TOKEN"] not in out + err and "sk-ant-" not in out + err
    assert not list(tmp_path.glob("*.db"))  # the throw-away store is not left in the working directory
