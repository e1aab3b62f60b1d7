"""GitHub failing as it does in production — 502s (also after the write landed), secondary and
primary rate limits, ~10 % of all calls at random — and what a job does about it: every check run
it opens ends completed, never `in_progress`; a review still ends in one review; token minting is
retried; job retries are spread over minutes."""

from __future__ import annotations

import pytest
from review_helpers import REPO, PullRequestRepo
from test_fix_pipeline import Project, fix_script, propose
from test_fix_pipeline import REPO as FIX_REPO

from app.github.client import safe_to_repeat
from app.pipelines.checks import give_up_reason
from app.settings import Settings
from app.store import JobState
from app.worker import MAX_RETRY_DELAY, retry_backoff

try:
    from sims.managed_agents import (Script, custom_tool_use, if_tool_error, model_request, normal_review_run,
                                     session_error, terminate, terminated)
except ImportError:  # pragma: no cover
    from tests.sims.managed_agents import (Script, custom_tool_use, if_tool_error, model_request, normal_review_run,
                                           session_error, terminate, terminated)

FINDING = {"path": "src/app.py", "line": 41, "severity": "major",
           "body": "`items[1:]` skips the first item, so every total is short by it."}
PUBLISH = {"summary": "`total()` drops the first item.", "comments": [FINDING]}


@pytest.fixture
def no_waiting(monkeypatch):
    """GitHub retries and rate-limit waits happen, without the test sleeping through them."""
    from app.github import GitHubClient

    waits: list[float] = []

    async def record(self, seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(GitHubClient, "sleep", record)
    return waits


@pytest.fixture
def eight_attempts(settings_env, monkeypatch):
    """Requested before `app_stack`: jobs get 8 attempts (retried at once, PRMEDIC_JOB_RETRY_BASE_SECONDS=0)."""
    monkeypatch.setenv("PRMEDIC_JOB_MAX_ATTEMPTS", "8")


@pytest.fixture
def one_attempt(settings_env, monkeypatch):
    """Requested before `app_stack`: jobs get one attempt."""
    monkeypatch.setenv("PRMEDIC_JOB_MAX_ATTEMPTS", "1")


def review_checks(state, sha):
    return [c for c in state.check_runs_for(REPO, sha) if c.name == "prmedic review"]


def github_goes_down(state, *faults) -> Script:
    """A session that, while it runs, makes GitHub start failing (`faults`: inject_fault arguments),
    then ends early (a transient failure: the job is retried)."""

    async def down(_ctx) -> None:
        for args, kwargs in faults:
            state.inject_fault(*args, **kwargs)

    return Script(model_request(500, 50), down, session_error("unknown_error", retry_status="terminal"), terminate())


# -- item 8: a job that gives up completes its check run --------------------------------------------

async def test_a_review_given_up_after_502s_completes_its_check_run_saying_why(app_stack, git_repo, no_waiting):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    # attempt 1 opens the check run and its session ends early; from then on the config read answers
    # 502 (attempts 2 and 3 fail before they know the check run), and completing the check run meets
    # a 502 and a rate limit of its own
    sim.default_script = github_goes_down(
        state, (("GET", r"/contents/\.github/prmedic\.yml$", 502), {"times": 1000}),
        (("PATCH", r"/check-runs/\d+$", 502), {}),
        (("GET", r"/check-runs/\d+$", 403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "0"}), {}))
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()

    (job,) = await app_stack.store.list_jobs(kind="review")
    assert job.state is JobState.failed and job.attempts == 3
    (check,) = review_checks(state, pr.head)
    assert check.status == "completed" and check.conclusion == "neutral"
    assert check.output["title"] == "prmedic could not finish: GitHub kept answering 502"
    assert "after 3 attempt(s)" in check.output["summary"]
    assert "close and reopen the pull request" in check.output["summary"]  # the re-run hint
    assert state.count("PATCH", r"/check-runs/\d+$") == 2  # the 502, then the retry that completed it


async def test_a_check_run_created_although_github_answered_502_is_the_one_used(app_stack, git_repo, no_waiting):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = normal_review_run(custom_calls=[("publish_review", PUBLISH)])
    state.inject_fault("POST", r"/check-runs$", 502, landed=True)
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()

    (job,) = await app_stack.store.list_jobs(kind="review")
    assert job.state is JobState.done and job.attempts == 1, job.last_error
    (check,) = review_checks(state, pr.head)
    assert check.status == "completed" and check.conclusion == "neutral"
    assert state.count("POST", r"/check-runs$") == 1


async def test_a_check_run_whose_create_landed_is_completed_when_the_job_gives_up(one_attempt, app_stack, git_repo,
                                                                                 no_waiting):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    # the create lands but answers 502, and looking for it fails too: the job gives up without ever
    # learning the check run's id
    state.inject_fault("POST", r"/check-runs$", 502, landed=True)
    state.inject_fault("GET", r"/commits/[0-9a-f]+/check-runs$", 502, times=2)
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()

    (job,) = await app_stack.store.list_jobs(kind="review")
    assert job.state is JobState.failed and sim.sessions == {}
    (check,) = review_checks(state, pr.head)
    assert check.status == "completed" and check.conclusion == "neutral"
    assert check.output["title"] == "prmedic could not finish: GitHub kept answering 502"


async def test_a_fix_job_given_up_completes_its_one_check_run_and_says_so_on_the_pr(app_stack, git_repo, deliver,
                                                                                    no_waiting):
    project = Project(app_stack, git_repo)
    project.failing_job(9001)
    state, sim = project.state, app_stack.sim
    sim.default_script = terminated()  # every session ends early: transient, three times
    await deliver("check_run", project.check_run_event(9001))
    await app_stack.run_jobs()

    (job,) = await app_stack.store.list_jobs(kind="fix")
    assert job.state is JobState.failed and job.attempts == 3
    (check,) = [c for c in state.check_runs_for(FIX_REPO, project.head) if c.name == "prmedic fix"]
    assert check.status == "completed" and check.conclusion == "neutral"
    assert check.output["title"].startswith("prmedic could not produce a fix: the agent session ended early")
    (comment,) = state.issue_comments_of(FIX_REPO, 7)
    assert "prmedic could not produce a fix: the agent session ended early" in comment.body


# -- item 13: a retried fix job re-uses its check run -------------------------------------------------

async def test_a_retried_fix_job_reuses_its_check_run(app_stack, git_repo, deliver, no_waiting):
    project = Project(app_stack, git_repo)
    project.failing_job(9001)
    state, sim = project.state, app_stack.sim
    from test_fix_pipeline import GOOD

    sim.queue_script(terminated(), fix_script(propose(project.patch({"src/calc.py": GOOD}))))
    await deliver("check_run", project.check_run_event(9001))
    await app_stack.run_jobs()

    (job,) = await app_stack.store.list_jobs(kind="fix")
    assert job.state is JobState.done and job.attempts == 2, job.last_error
    (check,) = [c for c in state.check_runs_for(FIX_REPO, project.head) if c.name == "prmedic fix"]
    assert check.status == "completed" and check.output["title"].startswith("Fix proposed: ")


# -- item 9: token minting is retried; job retries spread over minutes ----------------------------------

async def test_minting_an_installation_token_is_retried_after_a_502(github_server, app_private_key, no_waiting):
    from app.github import GitHubApp

    state = github_server.state
    state.inject_fault("POST", r"/app/installations/1/access_tokens$", 502)
    state.inject_fault("POST", r"/app/installations/1/access_tokens$", 504, landed=True)
    app = GitHubApp(app_id=state.app_id, private_key=app_private_key, base_url=github_server.url, max_retry_wait=120)
    try:
        token = await app.installation_token(1)
    finally:
        await app.close()
    assert token in state.tokens and state.count("POST", r"/access_tokens$") == 3
    assert len(no_waiting) == 2
    # the same rule covers an answer lost to a timeout or a dropped connection; writes stay guarded
    assert safe_to_repeat("POST", f"{github_server.url}/app/installations/1/access_tokens")
    assert not safe_to_repeat("POST", f"{github_server.url}/repos/{REPO}/issues/1/comments")


async def test_a_review_whose_first_token_and_config_calls_fail_still_completes(app_stack, git_repo, no_waiting):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = normal_review_run(custom_calls=[("publish_review", PUBLISH)])
    state.inject_fault("POST", r"/access_tokens$", 502)
    state.inject_primary_rate_limit("GET", r"/contents/\.github/prmedic\.yml$", reset_in=0)
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    (job,) = await app_stack.store.list_jobs(kind="review")
    assert job.state is JobState.done and job.attempts == 1, job.last_error
    (check,) = review_checks(state, pr.head)
    assert check.status == "completed" and len(state.reviews_of(REPO, pr.pr.number)) == 1


def test_job_retries_are_spread_over_minutes_with_jitter():
    assert Settings.model_fields["job_retry_base_seconds"].default == 30
    for attempt, ceiling in ((1, 30), (2, 60), (3, 120), (4, 240)):
        delays = [retry_backoff(attempt, 30) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # jobs failed by one outage do not come back together
    assert all(MAX_RETRY_DELAY / 2 <= retry_backoff(12, 30) <= MAX_RETRY_DELAY for _ in range(50))


def test_a_give_up_reason_reads_as_words():
    import http

    from gidgethub import GitHubBroken

    assert give_up_reason(GitHubBroken(http.HTTPStatus.BAD_GATEWAY)) == "GitHub kept answering 502"


# -- the issue's "Done when": under faults, one review and one completed check run ---------------------

@pytest.mark.parametrize("seed", [2, 3, 7])
async def test_under_github_faults_a_review_ends_in_one_review_and_one_completed_check_run(
        eight_attempts, app_stack, git_repo, no_waiting, seed):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    # a coordinator that, told GitHub failed, sends its review once more (as the tool answer asks)
    sim.default_script = normal_review_run(custom_calls=[("publish_review", PUBLISH)])
    sim.default_script.turns[0].insert(-3, if_tool_error(then=[custom_tool_use("publish_review", PUBLISH)]))
    state.inject_fault("POST", r"/pulls/\d+/reviews$", 502, landed=True)  # made, then answered 502
    state.inject_fault("POST", r"/access_tokens$", 502)
    state.inject_secondary_rate_limit("GET", r"/pulls/\d+/files$", retry_after=1)
    state.inject_primary_rate_limit("PATCH", r"/check-runs/\d+$", reset_in=0)
    state.inject_fault("*", r"", 502, times=10**6, chance=0.1, seed=seed)  # ~10 % of everything
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs(timeout=120)

    (job,) = await app_stack.store.list_jobs(kind="review")
    assert job.state is JobState.done, (job.attempts, job.last_error)
    assert len(state.reviews_of(REPO, pr.pr.number)) == 1
    assert len(state.review_comments_of(REPO, pr.pr.number)) == 1
    (check,) = review_checks(state, pr.head)
    assert check.status == "completed" and check.conclusion == "neutral"
    assert state.faults[-1].hits > 0, [(r.method, r.path, r.status) for r in state.requests]
