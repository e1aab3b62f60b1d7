"""Lost work never looks like success: a review session that ends without a published review, and a
fix session that proposes nothing, say so on their check run (and a fix job on the PR), publishing
whatever valid part of a refused `publish_review` call there was."""

from __future__ import annotations

from review_helpers import HEAD_FILES, REPO, PullRequestRepo, review_script
from test_fix_pipeline import REPO as FIX_REPO
from test_fix_pipeline import Project, fix_script

from app.pipelines.fix.delivery import FIX_MARKER
from app.pipelines.review.publish import SUMMARY_MARKER
from app.store import JobState

try:
    from sims.managed_agents import (Script, agent_message, budget_reached, custom_tool_use, end_turn_only,
                                     model_request, normal_review_run, stop_refusal)
except ImportError:  # pragma: no cover
    from tests.sims.managed_agents import (Script, agent_message, budget_reached, custom_tool_use, end_turn_only,
                                           model_request, normal_review_run, stop_refusal)

GOOD = {"path": "src/app.py", "line": 41, "severity": "major",
        "body": "`items[1:]` skips the first item, so every total is short by it."}
BAD_LINE = {"path": "src/app.py", "line": 0, "severity": "minor", "body": "Line zero does not exist."}
BAD_SEVERITY = {"path": "src/app.py", "line": 25, "severity": "critical", "body": "Not a severity we know."}
HEAD_APP = HEAD_FILES["src/app.py"]
REFUSED = {"summary": "`total()` drops the first item.", "comments": [GOOD, BAD_LINE, BAD_SEVERITY]}


def review_checks(state, sha):
    return [c for c in state.check_runs_for(REPO, sha) if c.name == "prmedic review"]


def refused_then_gives_up(publish: dict, final: str = "I could not get the review accepted.") -> Script:
    """A coordinator whose one publish_review call is refused and who ends its turn without another."""
    return normal_review_run(custom_calls=[("publish_review", publish)], final_text=final)


async def test_a_refused_review_never_sent_again_is_published_from_its_valid_parts(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = refused_then_gives_up(REFUSED)
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()

    (answer,) = [r for r in list(sim.sessions.values())[0].tool_results if r.name == "publish_review"]
    assert answer.is_error  # the agent was told, and did not call again
    (review,) = state.reviews_of(REPO, pr.pr.number)
    assert [(c.path, c.line) for c in state.review_comments_of(REPO, pr.pr.number)] == [("src/app.py", 41)]
    assert "`total()` drops the first item." in review.body and "refused and not sent again" in review.body
    assert "`comments.1`" in review.body and "`comments.2`" in review.body  # what was left out, named

    (check,) = review_checks(state, pr.head)
    assert check.status == "completed" and check.conclusion == "neutral"
    assert check.output["title"].startswith("The agents' review was refused and never sent again")
    assert "1 finding(s) published" in check.output["title"]
    summary = check.output["summary"]
    assert "No findings" not in summary and "did not publish their review" in summary
    assert "> Invalid input for publish_review" in summary and "comments.1.line" in summary
    assert "> I could not get the review accepted." in summary
    (job,) = await app_stack.store.list_jobs(kind="review")
    assert job.state is JobState.done and job.result["unfinished"]


async def test_what_is_salvaged_still_fails_the_check_when_the_config_says_so(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    pr.set_config("review:\n  fail_on: major\n")
    sim.default_script = refused_then_gives_up(REFUSED)
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    (check,) = review_checks(state, pr.head)
    assert check.conclusion == "failure" and "refused and never sent again" in check.output["title"]


async def test_a_refusal_with_nothing_valid_ends_in_a_check_run_that_says_so(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = refused_then_gives_up({"summary": "", "comments": [BAD_LINE]})
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    assert state.reviews_of(REPO, pr.pr.number) == []
    (check,) = review_checks(state, pr.head)
    assert check.conclusion == "neutral"
    assert check.output["title"] == "The agents' review was refused and never sent again"
    assert "could not publish any of it: nothing in it was valid" in check.output["summary"]
    assert "close and reopen the pull request" in check.output["summary"]  # how to run it again


async def test_a_session_that_ends_without_publishing_claims_no_findings(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = end_turn_only("Looked at everything; all fine.")
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    (check,) = review_checks(state, pr.head)
    assert check.conclusion == "neutral"
    assert check.output["title"] == "The agents ended without publishing a review"
    assert "> Looked at everything; all fine." in check.output["summary"]
    assert "found nothing" not in check.output["summary"] and "No findings" not in check.output["summary"]

    # the head is not recorded as reviewed: reopening the pull request reviews it again
    sim.default_script = review_script([GOOD])
    await app_stack.deliver("pull_request", pr.event("reopened"))
    await app_stack.run_jobs()
    assert len(sim.sessions) == 2 and len(state.reviews_of(REPO, pr.pr.number)) == 1


async def test_a_clean_pull_request_is_published_as_clean_posts_nothing_and_passes(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = review_script([], summary="Read all 3 changed files and their callers; 41 tests pass.",
                                       tests_run=[{"command": "pytest -q", "outcome": "passed"}])
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()

    assert state.reviews_of(REPO, pr.pr.number) == []  # silence on the pull request
    (check,) = review_checks(state, pr.head)
    assert check.conclusion == "success" and check.output["title"] == "No findings worth raising"
    assert "> Read all 3 changed files and their callers; 41 tests pass." in check.output["summary"]
    assert "`pytest -q`" in check.output["summary"]
    (answer,) = [r for r in list(sim.sessions.values())[0].tool_results if r.name == "publish_review"]
    assert not answer.is_error and "nothing was posted" in answer.text

    # the head counts as reviewed; a later push with a finding posts the first (summary) review
    pr.push({"src/app.py": HEAD_APP + "extra = 1\n"})
    sim.default_script = review_script([GOOD])
    await app_stack.deliver("pull_request", pr.event("synchronize"))
    await app_stack.run_jobs()
    (review,) = state.reviews_of(REPO, pr.pr.number)
    assert review.body.startswith(SUMMARY_MARKER)


async def test_a_clean_review_with_a_failing_test_is_posted(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = review_script([], summary="No comments, but the suite fails.",
                                       tests_run=[{"command": "pytest -q", "outcome": "failed", "details": "1 failed"}])
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    (review,) = state.reviews_of(REPO, pr.pr.number)
    assert "1 failed" in review.body


async def test_a_session_stopped_at_its_budget_says_so(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = budget_reached()
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    (check,) = review_checks(state, pr.head)
    assert check.conclusion == "neutral"
    assert check.output["title"] == "The budget ran out before the agents published a review"


async def test_a_refused_review_then_a_failed_session_still_publishes_what_was_valid(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    sim.default_script = Script(model_request(1000, 100), custom_tool_use("publish_review", REFUSED),
                                stop_refusal("cyber", "Declined."))
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    (job,) = await app_stack.store.list_jobs(kind="review")
    assert job.state is JobState.failed and job.attempts == 1
    assert len(state.reviews_of(REPO, pr.pr.number)) == 1
    assert len(state.review_comments_of(REPO, pr.pr.number)) == 1
    (check,) = review_checks(state, pr.head)
    assert check.status == "completed" and check.conclusion == "neutral"
    assert check.output["title"].startswith("prmedic could not finish: the agents' review was refused and, before "
                                            "it was sent again, the model declined the task")


# -- fix jobs --------------------------------------------------------------------------------------

def fix_checks(state, sha):
    return [c for c in state.check_runs_for(FIX_REPO, sha) if c.name == "prmedic fix"]


def fix_comments(state, number: int = 7):
    return [c for c in state.issue_comments_of(FIX_REPO, number) if FIX_MARKER in c.body]


async def test_a_fix_job_that_proposes_nothing_says_so_on_its_check_run_and_the_pr(app_stack, git_repo, deliver):
    project = Project(app_stack, git_repo)
    project.failing_job(9001)
    state, sim = project.state, app_stack.sim
    sim.default_script = fix_script()  # reproduces, then ends its turn without propose_fix
    await deliver("check_run", project.check_run_event(9001))
    await app_stack.run_jobs()

    (check,) = fix_checks(state, project.head)
    assert check.conclusion == "neutral"
    assert check.output["title"] == "prmedic could not produce a fix: the agents ended without proposing a patch"
    (comment,) = fix_comments(state)
    assert "prmedic could not produce a fix: the agents ended without proposing a patch" in comment.body
    assert "attempt 1 of 2" in comment.body and "> Done." in comment.body

    # a second failure on the head: a second attempt, and the same comment, updated
    patch = project.patch({".github/workflows/ci.yml": "on: push\n"})
    sim.default_script = Script(model_request(100, 10), custom_tool_use("propose_fix", {
        "title": "Run CI on push", "patch": patch}), agent_message("Gave up."), name="refused")
    project.failing_job(9002, run_id=556, name="lint")
    await deliver("check_run", project.check_run_event(9002))
    await app_stack.run_jobs()
    (comment,) = fix_comments(state)
    assert "the agents' last patch was refused" in comment.body and "attempt 2 of 2" in comment.body
    assert ".github/workflows" in comment.body and "No attempts are left" in comment.body
    titles = sorted(c.output["title"] for c in fix_checks(state, project.head))
    assert titles[1].startswith("prmedic could not produce a fix: the agents' last patch was refused")
