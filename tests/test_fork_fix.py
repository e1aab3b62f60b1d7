"""Self-healing on a pull request from a fork, driven with GitHub's own event shape: for a fork's
commit GitHub sends `check_run` and `workflow_run` events whose `pull_requests` list is empty, and
`GET /repos/{owner}/{repo}/commits/{sha}/pulls` on the base repository lists nothing either. The fix
job still finds the pull request, and offers the fix as review suggestions: nothing is pushed."""

from __future__ import annotations

import aiohttp
from conftest import example
from test_fix_pipeline import GOOD, NAME, REPO, Project, fix_script, propose

FORK = f"alice/{NAME}"


def as_for_a_fork(payload: dict, project: Project) -> dict:
    """The event pointed at the project's base repository, with no pull request listed (GitHub's shape
    for a fork's commit) and nothing injected in its place."""
    payload["installation"] = {"id": 1, "node_id": "MDIz"}
    payload["repository"].update(full_name=REPO, name=NAME, default_branch="main")
    return payload


def check_run_event(project: Project, job_id: int) -> dict:
    payload = as_for_a_fork(example("check_run", "completed"), project)
    run = payload["check_run"]
    run.update(id=job_id, head_sha=project.head, conclusion="failure", name="test", pull_requests=[])
    run["check_suite"].update(head_branch="feature", head_sha=project.head, pull_requests=[])
    return payload


def workflow_run_event(project: Project, run_id: int) -> dict:
    payload = as_for_a_fork(example("workflow_run", "completed", index=2), project)
    run = payload["workflow_run"]
    run.update(id=run_id, conclusion="failure", head_sha=project.head, head_branch="feature", event="pull_request",
               pull_requests=[])
    run["head_repository"].update(full_name=FORK, name=NAME)
    return payload


def assert_fix_offered_as_suggestions(app_stack) -> None:
    state = app_stack.github_state
    assert state.calls("POST", r"/git/") == [] and state.calls("PATCH", r"/git/refs") == []
    assert state.repo(FORK).branch_sha("feature") == state.pull(REPO, 7).head_sha
    assert len(state.pulls) == 1  # no fix PR
    [review] = state.reviews_of(REPO, 7)
    assert "cannot push to a fork" in review.body
    [suggestion] = state.review_comments_of(REPO, 7)
    assert (suggestion.path, suggestion.line) == ("src/calc.py", 2)
    assert suggestion.body == "```suggestion\n    return a + b\n```"


async def test_the_base_repository_lists_no_pull_request_for_a_forks_commit(app_stack, git_repo):
    """As on GitHub, where the fallback through this endpoint finds nothing for a fork."""
    project = Project(app_stack, git_repo, fork=True)
    server = app_stack.github
    headers = {"Authorization": f"token {server.token()}", "Accept": "application/vnd.github+json"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(f"{server.url}/repos/{REPO}/commits/{project.head}/pulls") as answer:
            assert answer.status == 200 and await answer.json() == []
        async with http.get(f"{server.url}/repos/{REPO}/pulls/7") as answer:
            assert (await answer.json())["head"]["repo"]["full_name"] == FORK


async def test_a_failed_check_run_on_a_fork_pr_without_pull_requests_gets_suggestions(app_stack, git_repo):
    project = Project(app_stack, git_repo, fork=True)
    project.failing_job(4401)
    app_stack.sim.default_script = fix_script(propose(project.patch({"src/calc.py": GOOD})))

    assert (await app_stack.deliver("check_run", check_run_event(project, 4401))).status == 202
    await app_stack.run_jobs()

    [job] = await app_stack.store.list_jobs()
    assert job.pr_number is None and job.payload["pull_requests"] == []
    assert job.result["pr_number"] == 7 and job.result["delivery"] == "offered"
    assert_fix_offered_as_suggestions(app_stack)


async def test_a_failed_workflow_run_on_a_fork_pr_without_pull_requests_gets_suggestions(app_stack, git_repo):
    project = Project(app_stack, git_repo, fork=True)
    project.failing_job(4402, run_id=556)
    app_stack.sim.default_script = fix_script(propose(project.patch({"src/calc.py": GOOD})))

    assert (await app_stack.deliver("workflow_run", workflow_run_event(project, 556))).status == 202
    await app_stack.run_jobs()

    [job] = await app_stack.store.list_jobs()
    assert job.pr_number is None and job.payload["pull_requests"] == []
    assert job.result["pr_number"] == 7 and job.result["delivery"] == "offered"
    [session] = app_stack.sim.sessions.values()  # a fork's fix is offered, never verified: one session
    assert "job_id=4402" in session.user_messages[0]["content"][0]["text"]
    assert_fix_offered_as_suggestions(app_stack)
