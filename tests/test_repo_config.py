"""`.github/prmedic.yml`: defaults, exact errors, and reading it from the default branch."""

from __future__ import annotations

import pytest

from app.github import GitHubApp
from app.repo_config import RepoConfig, fetch_repo_config, parse_repo_config


def test_no_file_means_defaults_without_errors():
    loaded = parse_repo_config(None)
    assert loaded.config == RepoConfig() and loaded.errors == [] and not loaded.found
    assert loaded.config.fix.max_attempts == 2 and loaded.config.fix.delivery == "pull_request"
    assert not loaded.config.fix.allow_workflow_changes


def test_a_valid_file_is_read():
    loaded = parse_repo_config("""
review:
  min_severity: major
  fail_on: blocker
  path_instructions:
    - path: "src/api/**"
      instructions: Every handler must check authorization.
fix:
  delivery: push
environment: python
budget: {review_usd: 2.5}
""")
    assert loaded.errors == []
    config = loaded.config
    assert (config.review.min_severity, config.review.fail_on, config.fix.delivery) == ("major", "blocker", "push")
    assert config.review.path_instructions[0].path == "src/api/**"
    assert config.budget.review_usd == 2.5 and config.environment == "python"


@pytest.mark.parametrize(("text", "expected"), [
    ("review: [unclosed", "is not valid YAML at line 1"),
    ("- a\n- b\n", "must be a mapping"),
    ("reveiw:\n  enabled: false\n", "`reveiw`: is not a known setting"),
    ("fix:\n  delivery: force-push\n", "`fix.delivery`: Input should be 'pull_request' or 'push'"),
    ("review:\n  max_comments: 500\n", "`review.max_comments`: Input should be less than or equal to 50"),
    ("review:\n  ignore_titles: ['(']\n", "`review.ignore_titles`: '(' is not a valid regular expression"),
])
def test_an_invalid_file_keeps_the_defaults_and_names_the_problem(text, expected):
    loaded = parse_repo_config(text)
    assert loaded.config == RepoConfig()
    assert loaded.found
    assert any(expected in error for error in loaded.errors), loaded.errors


async def test_the_config_is_read_from_the_default_branch(github_server, app_private_key):
    state = github_server.state
    repo = "octo-org/hello-world"
    state.commit_files(repo, {".github/prmedic.yml": "review:\n  min_severity: blocker\n"})
    state.set_branch(repo, "feature", state.resolve(repo, "main"))
    state.commit_files(repo, {".github/prmedic.yml": "review:\n  min_severity: nit\n"}, branch="feature")
    app = GitHubApp(app_id=state.app_id, private_key=app_private_key, base_url=github_server.url)
    try:
        gh = await app.installation_client(1)
        loaded = await fetch_repo_config(gh, repo, "main")
        assert loaded.config.review.min_severity == "blocker"
        state.commit_files(repo, {".github/prmedic.yml": None})
        assert (await fetch_repo_config(gh, repo, "main")).config == RepoConfig()
    finally:
        await app.close()


def test_the_readme_documents_every_setting_with_its_default():
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("## Repository config"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    loaded = parse_repo_config(block)
    assert loaded.errors == []
    documented = loaded.config.model_dump()
    documented["review"]["path_instructions"] = []
    assert documented == RepoConfig().model_dump()
