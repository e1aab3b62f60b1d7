"""The review pipeline end to end: GitHub's `pull_request` example delivered to the real server, the
worker running the shipped pipelines (`app.runtime.PIPELINES`), scripted agents on the Managed
Agents simulator, and the GitHub simulator checking every request against GitHub's OpenAPI
description."""

from __future__ import annotations

import asyncio

from review_helpers import REPO, PullRequestRepo, github_calls, review_script

from app.pipelines.review.brief import DEFAULT_BUDGET_TOKENS, estimate_tokens
from app.pipelines.review.publish import SUMMARY_MARKER
from app.store import JobState

try:
    from sims.github import error_body
    from sims.managed_agents import custom_tool_use, end_turn_only, pause
except ImportError:  # pragma: no cover
    from tests.sims.github import error_body
    from tests.sims.managed_agents import custom_tool_use, end_turn_only, pause

COMMENTS = [
    {"path": "src/app.py", "line": 41, "severity": "major", "body": "`items[1:]` skips the first item, so every "
     "total is short by it.", "suggestion": "    return sum(items)"},
    {"path": "src/app.py", "line": 12, "side": "LEFT", "severity": "minor",
     "body": "`value_12` is still imported by `report.py`; removing it breaks that import."},
    {"path": "src/app.py", "line": 25, "severity": "major", "body": "`value_25` is computed twice on every call."},
    {"path": "src/app.py", "line": 12, "side": "LEFT", "severity": "minor", "body": "Keep this line.",
     "suggestion": "value_12 = compute(12)"},
    {"path": "src/app.py", "start_line": 9, "line": 10, "severity": "blocker",
     "body": "Dividing by `len(items)` raises ZeroDivisionError for an empty list.",
     "suggestion": "value_9 = compute(9)\nvalue_10 = compute(10) / max(len(items), 1)"},
    {"path": "src/app.py", "line": 41, "severity": "nit", "body": "Prefer a generator here."},
]
TESTS_RUN = [{"command": "pytest -q tests/test_app.py", "outcome": "failed", "details": "test_total_empty fails"},
             {"command": "pytest -q", "outcome": "passed", "details": "41 passed"}]


def task_of(sim, index: int = -1) -> str:
    session = list(sim.sessions.values())[index]
    return "".join(block["text"] for block in session.user_messages[0]["content"])


def review_check_runs(state, sha):
    return [c for c in state.check_runs_for(REPO, sha) if c.name == "prmedic review"]


async def test_a_pull_request_gets_one_review_with_placeable_comments_and_a_completed_check(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.agents.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = review_script(COMMENTS, tests_run=TESTS_RUN)
    mark = len(state.api_calls())

    answer = await app_stack.deliver("pull_request", pr.event("opened"))
    assert answer.status == 202
    await app_stack.run_jobs()

    (job,) = await app_stack.store.list_jobs(kind="review")
    assert job.state is JobState.done, job.last_error
    (review,) = state.reviews_of(REPO, pr.pr.number)
    comments = state.review_comments_of(REPO, pr.pr.number)
    # the three anchorable comments are inline, each where it was meant to be
    assert sorted((c.path, c.line, c.side, c.start_line) for c in comments) == [
        ("src/app.py", 10, "RIGHT", 9), ("src/app.py", 12, "LEFT", None), ("src/app.py", 41, "RIGHT", None)]
    assert all("<!-- prmedic:finding:" in c.body for c in comments)
    blocker = next(c for c in comments if c.line == 10)
    assert "🛑 **Blocker**" in blocker.body and "```suggestion\nvalue_9 = compute(9)\n" in blocker.body
    # the two that GitHub would refuse are in the summary with their location and the reason
    assert review.body.startswith(SUMMARY_MARKER) and review.state == "COMMENTED"
    assert "src/app.py:25" in review.body and "outside the diff" in review.body
    assert "cannot be anchored on deleted lines" in review.body
    assert "below this repository's `minor` threshold" in review.body
    assert "| `pytest -q tests/test_app.py` | ❌ failed | test_total_empty fails |" in review.body
    assert state.violations == []

    # the check run: in progress at the start, completed with the findings, tests, cost and duration
    (check,) = review_check_runs(state, pr.head)
    created = state.calls("POST", r"/check-runs$")[0]
    assert created.json["status"] == "in_progress" and created.json["head_sha"] == pr.head
    assert check.status == "completed" and check.conclusion == "neutral"
    summary = check.output["summary"]
    assert "1 blocker" in summary and "2 major" in summary and "pytest -q" in summary
    assert "Cost (list price): $" in summary and "Duration:" in summary

    # the brief told the agents where the code is and kept the PR's text as data
    task = task_of(sim)
    assert "/workspace/widgets" in task and "<<<PR DATA" in task and "`src/app.py`" in task
    assert "docs/guide.md" in task and estimate_tokens(task) <= DEFAULT_BUDGET_TOKENS

    calls = github_calls(state, mark)
    assert len(calls) <= 6, calls


async def test_a_second_delivery_or_rerun_posts_nothing_twice(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.agents.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = review_script(COMMENTS[:2])
    event = pr.event("opened")
    assert (await app_stack.deliver("pull_request", event, delivery_id="same-delivery")).status == 202
    await app_stack.run_jobs()
    assert (await app_stack.deliver("pull_request", event, delivery_id="same-delivery")).status == 200
    mark = len(state.api_calls())
    assert (await app_stack.deliver("pull_request", pr.event("reopened"))).status == 202  # a re-run
    await app_stack.run_jobs()

    assert len(state.reviews_of(REPO, pr.pr.number)) == 1
    assert len(state.review_comments_of(REPO, pr.pr.number)) == 2
    assert len(review_check_runs(state, pr.head)) == 1
    assert len(sim.sessions) == 1
    assert len(github_calls(state, mark)) == 1  # the config, nothing else


async def test_a_push_gets_an_incremental_review_and_the_summary_is_updated_not_repeated(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.agents.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = review_script(COMMENTS[:1], summary="First pass.")
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    (summary_review,) = state.reviews_of(REPO, pr.pr.number)

    pr.push({"src/util.py": "def helper(x):\n    return x * 2\n"})
    new_finding = {"path": "src/util.py", "line": 2, "severity": "minor", "body": "`helper` doubles strings too."}
    sim.default_script = review_script([COMMENTS[0], new_finding], summary="Second pass: `helper` is new.")
    mark = len(state.api_calls())
    await app_stack.deliver("pull_request", pr.event("synchronize"))
    await app_stack.run_jobs()

    reviews = state.reviews_of(REPO, pr.pr.number)
    assert len(reviews) == 2  # the summary, and one short review carrying the new comment
    delta = reviews[1]
    assert [c.path for c in state.review_comments_of(REPO, pr.pr.number) if c.review_id == delta.id] == ["src/util.py"]
    assert "1 new inline finding" in delta.body and SUMMARY_MARKER not in delta.body
    updated = state.reviews[summary_review.id].body
    assert "Second pass" in updated and "First pass" not in updated
    assert "posted earlier and not repeated" in updated and "re-review" in updated
    task = task_of(sim)
    assert "A re-review after new commits" in task and f"`{pr.shas[0]}`" in task
    assert task.index("`src/util.py`") < task.index("`src/app.py`")  # changed since the last review first
    assert "already posted" in task and "items[1:]" in task
    assert len(github_calls(state, mark)) <= 6
    (check,) = review_check_runs(state, pr.head)
    assert check.conclusion == "neutral" and "Re-review: 1 file(s) changed" in check.output["summary"]


async def test_a_summary_github_cannot_update_never_gets_the_new_comments_posted_twice(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.agents.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = review_script(COMMENTS[:1], summary="First pass.")
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()

    pr.push({"src/util.py": "def helper(x):\n    return x * 2\n"})
    new_finding = {"path": "src/util.py", "line": 2, "severity": "minor", "body": "`helper` doubles strings too."}
    sim.default_script = review_script([new_finding], summary="Second pass.")
    state.inject_fault("PUT", r"/pulls/\d+/reviews/\d+$", 502, times=10)
    await app_stack.deliver("pull_request", pr.event("synchronize"))
    await app_stack.run_jobs()

    (job,) = [j for j in await app_stack.store.list_jobs(kind="review") if j.head_sha == pr.head]
    assert job.state is JobState.done, job.last_error
    assert len(state.reviews_of(REPO, pr.pr.number)) == 2  # the first summary and the new comment, once
    assert [c.path for c in state.review_comments_of(REPO, pr.pr.number)].count("src/util.py") == 1
    (answer,) = [r for s in sim.sessions.values() for r in s.tool_results if r.name == "publish_review"][1:]
    assert not answer.is_error and "could not be updated this time" in answer.text


async def test_a_push_during_a_review_supersedes_it(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.agents.sim
    pr = PullRequestRepo(state, git_repo)
    slow = review_script(COMMENTS[:1])
    slow.turns[0].insert(0, pause(30))
    sim.queue_script(slow, review_script(COMMENTS[:1]))
    worker = app_stack.worker()
    running = asyncio.create_task(worker.run())
    try:
        await app_stack.deliver("pull_request", pr.event("opened"))
        await sim.wait_until(lambda: len(sim.sessions) == 1)
        first_sha = pr.head
        pr.push({"src/util.py": "def helper(x):\n    return x * 2\n"})
        await app_stack.deliver("pull_request", pr.event("synchronize"))
        for _ in range(200):
            jobs = await app_stack.store.list_jobs(kind="review")
            if all(j.state.finished for j in jobs) and len(jobs) == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
        await running
    older, newer = sorted(await app_stack.store.list_jobs(kind="review"), key=lambda j: j.id)
    assert older.state is JobState.superseded and newer.state is JobState.done, newer.last_error
    (old_check,) = review_check_runs(state, first_sha)
    assert old_check.status == "completed" and old_check.conclusion == "cancelled"
    assert old_check.output["title"] == "Superseded by a newer push"
    (new_check,) = review_check_runs(state, pr.head)
    assert new_check.conclusion == "neutral"
    assert list(sim.sessions.values())[0].interrupts
    assert len(state.reviews_of(REPO, pr.pr.number)) == 1


async def test_an_invalid_repo_config_is_reported_and_the_defaults_are_used(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.agents.sim
    pr = PullRequestRepo(state, git_repo)
    pr.set_config("review:\n  max_comments: 500\n  colour: red\n")
    sim.default_script = review_script(COMMENTS[:1])
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    (check,) = review_check_runs(state, pr.head)
    problems = ["`review.max_comments`: Input should be less than or equal to 50",
                "`review.colour`: is not a known setting"]
    for problem in problems:
        assert problem in check.output["summary"]
        assert problem in state.reviews_of(REPO, pr.pr.number)[0].body
    assert len(state.review_comments_of(REPO, pr.pr.number)) == 1


async def test_the_repositorys_review_instructions_reach_the_coordinator_without_forking_its_prompt(
    app_stack, git_repo
):
    state, sim = app_stack.state, app_stack.agents.sim
    pr = PullRequestRepo(state, git_repo)
    pr.set_config("review:\n  instructions: Money is always Decimal, never float.\n  path_instructions:\n"
                  "    - path: 'src/**'\n      instructions: Public functions need docstrings.\n"
                  "    - path: 'web/**'\n      instructions: Escape every template variable.\n")
    sim.default_script = review_script(COMMENTS[:1])
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    (session,) = sim.sessions.values()
    system = session.agent["system"]
    assert "Money is always Decimal" in system and "Public functions need docstrings" in system
    assert "Escape every template variable" not in system  # no file of the PR is under web/
    assert system.index("Money is always Decimal") > system.index("untrusted")  # appended, not replacing


async def test_a_3000_file_pull_request_gets_a_brief_within_budget_naming_every_file(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.agents.sim
    head = {f"pkg/mod{i // 40:03d}/file_{i:04d}.py": f"x = {i}\n" for i in range(3000)}
    pr = PullRequestRepo(state, git_repo, base={"README.md": "# big\n"}, head=head, title="Generate modules")
    sim.default_script = end_turn_only("Nothing needs attention.")
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs(timeout=120)

    task = task_of(sim)
    assert estimate_tokens(task) <= DEFAULT_BUDGET_TOKENS
    missing = [path for path in head if path.rsplit("/", 1)[1] not in task]
    assert missing == []
    assert state.count("GET", r"/pulls/\d+/files$") == 30
    (check,) = review_check_runs(state, pr.head)
    # the agents ended without publish_review: not a "no findings" success
    assert check.conclusion == "neutral" and "3,000" not in check.output["title"]
    assert check.output["title"] == "The agents ended without publishing a review"
    assert "> Nothing needs attention." in check.output["summary"]


async def test_github_answering_422_to_the_review_falls_back_to_the_comments_it_accepts(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.agents.sim
    state.expect_violations = True  # the injected 422 is recorded like a refused request
    pr = PullRequestRepo(state, git_repo)
    state.inject_fault("POST", r"/pulls/\d+/reviews$", 422, body=error_body(
        422, "Unprocessable Entity", ["Pull request review thread line must be part of the diff"]))
    sim.default_script = review_script(COMMENTS[:2] + COMMENTS[4:5])
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()

    (review,) = state.reviews_of(REPO, pr.pr.number)
    inline = state.review_comments_of(REPO, pr.pr.number)
    assert [(c.line, c.side) for c in inline] == [(41, "RIGHT")]  # a single added line: re-posted inline
    assert review.body.count("GitHub refused the inline comments (422") == 2
    assert "src/app.py:9–10" in review.body and "src/app.py:12" in review.body
    assert state.count("POST", r"/pulls/\d+/reviews$") == 2


async def test_a_review_is_never_lost_even_when_github_refuses_every_inline_comment(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.agents.sim
    state.expect_violations = True
    pr = PullRequestRepo(state, git_repo)
    state.inject_fault("POST", r"/pulls/\d+/reviews$", 422, body=error_body(422, "Unprocessable Entity"), times=2)
    sim.default_script = review_script(COMMENTS[:2])
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    (review,) = state.reviews_of(REPO, pr.pr.number)
    assert state.review_comments_of(REPO, pr.pr.number) == []
    assert "items[1:]" in review.body and "value_12" in review.body


async def test_config_can_fail_the_check_on_blockers_and_refuse_approval(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.agents.sim
    pr = PullRequestRepo(state, git_repo)
    pr.set_config("review:\n  fail_on: major\n")
    sim.default_script = review_script(COMMENTS[:1], event="APPROVE")
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    (check,) = review_check_runs(state, pr.head)
    assert check.conclusion == "failure"
    (review,) = state.reviews_of(REPO, pr.pr.number)
    assert review.state == "COMMENTED" and "does not allow approval" in review.body
    result = list(sim.sessions.values())[0].tool_results[-1]
    assert not result.is_error and "does not allow approval" in result.text


async def test_a_second_publish_in_the_same_run_is_refused(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.agents.sim
    pr = PullRequestRepo(state, git_repo)
    publish = {"summary": "Once.", "comments": COMMENTS[:1]}
    sim.default_script = review_script(COMMENTS[:1])
    sim.default_script.turns[0].insert(-3, custom_tool_use("publish_review", publish))
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    results = [r for r in list(sim.sessions.values())[0].tool_results if r.name == "publish_review"]
    assert [r.is_error for r in results] == [False, True]
    assert "already published" in results[1].text
    assert len(state.reviews_of(REPO, pr.pr.number)) == 1


async def test_skips_follow_the_repo_config_with_one_check_run_saying_why(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.agents.sim
    pr = PullRequestRepo(state, git_repo, title="WIP: compute totals")
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    (check,) = review_check_runs(state, pr.head)
    assert check.conclusion == "skipped" and "ignore_titles" in check.output["title"]
    assert sim.sessions == {} and state.reviews_of(REPO, pr.pr.number) == []


async def test_a_disabled_review_makes_no_check_run_at_all(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.agents.sim
    pr = PullRequestRepo(state, git_repo)
    pr.set_config("review:\n  enabled: false\n")
    mark = len(state.api_calls())
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    assert review_check_runs(state, pr.head) == [] and sim.sessions == {}
    assert [c.path for c in github_calls(state, mark)] == [f"/repos/{REPO}/contents/.github/prmedic.yml"]


async def test_labels_bots_and_ignored_paths_skip_the_review(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.agents.sim
    pr = PullRequestRepo(state, git_repo, head={"package-lock.json": "{}\n", "vendor/lib.js": "x()\n"})
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    (check,) = review_check_runs(state, pr.head)
    assert check.conclusion == "skipped" and "all 2 changed file(s) are ignored" in check.output["title"]
    await app_stack.deliver("pull_request", pr.event("reopened", labels=[{"name": "no-review"}]))
    await app_stack.run_jobs()
    await app_stack.deliver("pull_request", pr.event("reopened", user={"login": "dependabot[bot]", "type": "Bot"}))
    await app_stack.run_jobs()
    titles = sorted(c.output["title"] for c in review_check_runs(state, pr.head))
    assert any("no-review" in t for t in titles) and any("is a bot" in t for t in titles)
    assert sim.sessions == {}


async def test_with_a_fresh_database_earlier_findings_are_read_back_from_github(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.agents.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = review_script(COMMENTS[:1], summary="First pass.")
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    (summary_review,) = state.reviews_of(REPO, pr.pr.number)
    app_stack.store._conn.execute("DELETE FROM pull_reviews")  # the store forgot (a fresh database)

    pr.push({"src/util.py": "def helper(x):\n    return x * 2\n"})
    sim.default_script = review_script(COMMENTS[:1], summary="Second pass.")
    await app_stack.deliver("pull_request", pr.event("synchronize"))
    await app_stack.run_jobs()
    assert state.count("GET", r"/pulls/\d+/comments$") == 1
    assert len(state.reviews_of(REPO, pr.pr.number)) == 1  # nothing new to post: no second review
    assert len(state.review_comments_of(REPO, pr.pr.number)) == 1
    assert "Second pass" in state.reviews[summary_review.id].body


async def test_a_push_that_changes_no_reviewed_file_carries_the_review_over(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.agents.sim
    pr = PullRequestRepo(state, git_repo)
    pr.set_config("review:\n  fail_on: major\n")
    sim.default_script = review_script(COMMENTS[:1])
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    pr.push({"package-lock.json": "{}\n"})
    await app_stack.deliver("pull_request", pr.event("synchronize"))
    await app_stack.run_jobs()
    assert len(sim.sessions) == 1
    (check,) = review_check_runs(state, pr.head)
    assert check.conclusion == "failure" and "earlier review stands" in check.output["title"]


async def test_github_and_anthropic_failing_for_a_moment_cost_nothing_but_time(app_stack, git_repo, monkeypatch):
    from app.github import GitHubClient

    async def no_wait(self, seconds: float) -> None:
        return None

    monkeypatch.setattr(GitHubClient, "sleep", no_wait)
    state, sim = app_stack.state, app_stack.agents.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = review_script(COMMENTS[:1])
    state.inject_fault("GET", r"/pulls/\d+/files$", 502)
    state.inject_secondary_rate_limit("POST", r"/pulls/\d+/reviews$", retry_after=1)
    sim.fail_next_session_creates(2, status=529)
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    (job,) = await app_stack.store.list_jobs(kind="review")
    assert job.state is JobState.done and job.attempts == 1, job.last_error
    assert len(state.reviews_of(REPO, pr.pr.number)) == 1
    assert len(state.review_comments_of(REPO, pr.pr.number)) == 1
    assert len(sim.sessions) == 1


async def test_a_github_outage_fails_the_attempt_and_the_job_is_retried(app_stack, git_repo, monkeypatch):
    from app.github import GitHubClient

    async def no_wait(self, seconds: float) -> None:
        return None

    monkeypatch.setattr(GitHubClient, "sleep", no_wait)
    monkeypatch.setattr(app_stack.settings, "job_retry_base_seconds", 0)
    state, sim = app_stack.state, app_stack.agents.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = review_script(COMMENTS[:1])
    # the fixture lets one GitHub call wait 2 s in all: two 503s use up one attempt of the job
    state.inject_fault("GET", r"/contents/\.github/prmedic\.yml$", 503, times=2)
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    (job,) = await app_stack.store.list_jobs(kind="review")
    assert job.state is JobState.done and job.attempts == 2
    assert "503" in (job.last_error or "") or "Service Unavailable" in (job.last_error or "")
    assert len(state.reviews_of(REPO, pr.pr.number)) == 1


async def test_an_agent_archived_by_hand_is_replaced_and_the_review_still_runs(app_stack, git_repo):
    import json

    state, sim, client = app_stack.state, app_stack.agents.sim, app_stack.agents.client
    pr = PullRequestRepo(state, git_repo)
    pr.set_config("review:\n  depth: deep\n")  # both reviews by the coordinator's team, no router
    sim.default_script = review_script(COMMENTS[:1])
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    coordinator = json.loads(await app_stack.store.get_meta("agent:coordinator"))["id"]
    await client.beta.agents.archive(coordinator)  # someone tidies up the Console; this process does not know

    pr.push({"src/util.py": "def helper(x):\n    return x * 2\n"})
    pr.set_config("review:\n  depth: deep\n")  # a push re-imports the git repository: configure again
    sim.default_script = review_script([], summary="Second pass.")
    await app_stack.deliver("pull_request", pr.event("synchronize"))
    await app_stack.run_jobs()
    jobs = await app_stack.store.list_jobs(kind="review")
    assert [j.state for j in jobs] == [JobState.done, JobState.done], [j.last_error for j in jobs]
    replacement = json.loads(await app_stack.store.get_meta("agent:coordinator"))["id"]
    assert replacement != coordinator and len(sim.sessions) == 2
    assert [str(v) for v in sim.violations] == [f"POST /v1/sessions: 400 invalid_request_error: agent {coordinator} is archived"]
    sim.expect_violations = True  # that one refusal is the point of the test


async def test_a_push_that_only_drops_a_reviewed_file_gets_reviewed_not_carried_over(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.agents.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = review_script(COMMENTS[:1])
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    pr.push({"docs/guide.md": None}, "Drop the guide")
    sim.default_script = review_script([], summary="Only the guide went away.")
    await app_stack.deliver("pull_request", pr.event("synchronize"))
    await app_stack.run_jobs()
    assert len(sim.sessions) == 2
    assert "docs/guide.md" in task_of(sim)
