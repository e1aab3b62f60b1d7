"""The container a session runs in follows the repository: `.github/prmedic.yml`'s `environment`,
else the environment for the repository's language as GitHub's payload gives it
(`repository.language`), else `default` — for reviews and for fixes, delivered to the real server."""

from __future__ import annotations

import pytest
from review_helpers import PullRequestRepo, review_script

pytestmark = pytest.mark.usefixtures("app_stack")


def session_environments(sim) -> list[str]:
    """The name of the environment each session of the Managed Agents simulator was created in."""
    return [sim.environments[s.environment_id]["name"] for s in sim.sessions.values()]


@pytest.mark.parametrize(("language", "config", "expected"), [
    ("Python", None, "python"),
    ("Jupyter Notebook", None, "python"),
    ("TypeScript", None, "node"),
    ("Go", None, "go"),
    ("Rust", None, "rust"),
    ("Python", "environment: node\n", "node"),  # the repository's config wins
    ("COBOL", None, "default"),
    (None, None, "default"),
])
async def test_a_delivered_pull_request_is_reviewed_in_the_environment_for_its_repository(
        app_stack, git_repo, language, config, expected):
    pr = PullRequestRepo(app_stack.github_state, git_repo)
    if config:
        pr.set_config(config)
    app_stack.sim.default_script = review_script([])
    event = pr.event("opened")
    event["repository"]["language"] = language

    assert (await app_stack.deliver("pull_request", event)).status == 202
    await app_stack.run_jobs()

    assert session_environments(app_stack.sim) == [expected]


@pytest.mark.parametrize(("language", "config", "expected"), [
    ("Python", None, "python"),
    ("Python", "environment: node\n", "node"),
    ("Haskell", None, "default"),
])
async def test_a_delivered_failing_check_is_fixed_in_the_environment_for_its_repository(
        app_stack, git_repo, language, config, expected):
    from test_fix_pipeline import Project, fix_script

    project = Project(app_stack, git_repo, config=config)
    project.failing_job(4300)
    app_stack.sim.default_script = fix_script()
    event = project.check_run_event(4300)
    event["repository"]["language"] = language

    assert (await app_stack.deliver("check_run", event)).status == 202
    await app_stack.run_jobs()

    assert session_environments(app_stack.sim) == [expected]
