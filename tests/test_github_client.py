"""The GitHub client against the simulator: App auth, the token cache, retries and rate limits."""

from __future__ import annotations

import datetime as dt

import pytest
from gidgethub import BadRequest, GitHubBroken, RateLimitExceeded

from app.doctor import REQUIRED_PERMISSIONS, run_doctor
from app.github import GitHubApp, GitHubClient
from app.settings import Settings

REPO = "octo-org/hello-world"


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """Retries wait through GitHubClient.sleep: record the waits instead of sleeping."""
    waits: list[float] = []

    async def record(self, seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(GitHubClient, "sleep", record)
    return waits


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
async def github_app(github_server, app_private_key):
    clock = Clock()
    app = GitHubApp(app_id=github_server.state.app_id, private_key=app_private_key, base_url=github_server.url,
                    max_retry_wait=120, clock=clock)
    app.test_clock = clock
    yield app
    await app.close()


async def test_the_app_authenticates_with_a_jwt(github_app):
    info = await github_app.app_client().getitem("/app")
    assert info["slug"] == "prmedic"


async def test_installation_tokens_are_cached_per_installation_repositories_and_permissions(github_app, github_server):
    state = github_server.state
    first = await github_app.installation_token(1)
    assert await github_app.installation_token(1) == first
    narrow = await github_app.repository_read_token(1, REPO)
    assert narrow != first
    assert await github_app.repository_read_token(1, REPO) == narrow
    assert len(state.tokens_issued) == 2
    minted = state.tokens_issued[-1]
    assert minted.permissions == {"contents": "read", "metadata": "read"}
    assert minted.repositories == {REPO}


async def test_a_token_is_refreshed_before_it_expires(github_app, github_server):
    first = await github_app.installation_token(1)
    github_app.test_clock.now += dt.timedelta(minutes=45)
    assert await github_app.installation_token(1) == first
    github_app.test_clock.now += dt.timedelta(minutes=6)  # 9 minutes left: too little to hand out
    assert await github_app.installation_token(1) != first
    assert len(github_server.state.tokens_issued) == 2


async def test_the_read_only_token_cannot_write(github_app, github_server):
    token = await github_app.repository_read_token(1, REPO)
    client = github_app._client(oauth_token=token)
    await client.getitem(f"/repos/{REPO}")
    with pytest.raises(BadRequest) as refused:
        await client.post(f"/repos/{REPO}/git/blobs", data={"content": "x", "encoding": "utf-8"})
    assert refused.value.status_code in (403, 404)


async def test_a_502_is_retried_with_backoff(github_app, github_server, sleeps):
    github_server.state.inject_fault("GET", rf"/repos/{REPO}$", 502, times=2)
    client = await github_app.installation_client(1)
    repo = await client.getitem(f"/repos/{REPO}")
    assert repo["full_name"] == REPO
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1 and 1 <= sleeps[1] <= 2


async def test_a_secondary_rate_limit_waits_for_retry_after(github_app, github_server, sleeps):
    github_server.state.inject_secondary_rate_limit("POST", r"/issues/\d+/comments$", retry_after=7)
    github_server.state.add_issue(REPO, 1)
    client = await github_app.installation_client(1)
    comment = await client.post(f"/repos/{REPO}/issues/1/comments", data={"body": "hello"})
    assert comment["body"] == "hello"
    assert sleeps == [7.0]
    assert github_server.state.count("POST", r"/issues/1/comments$") == 2


async def test_429_with_retry_after_is_retried(github_app, github_server, sleeps):
    github_server.state.inject_too_many_requests("GET", rf"/repos/{REPO}$", retry_after=3)
    client = await github_app.installation_client(1)
    await client.getitem(f"/repos/{REPO}")
    assert sleeps == [3.0]


async def test_the_primary_rate_limit_waits_until_reset(github_app, github_server, sleeps):
    github_server.state.inject_primary_rate_limit("GET", rf"/repos/{REPO}$", reset_in=30)
    client = await github_app.installation_client(1)
    await client.getitem(f"/repos/{REPO}")
    assert len(sleeps) == 1 and 25 <= sleeps[0] <= 32


async def test_waiting_past_the_cap_is_refused(github_app, github_server, sleeps):
    github_server.state.inject_primary_rate_limit("GET", rf"/repos/{REPO}$", reset_in=3600)
    client = await github_app.installation_client(1)
    with pytest.raises(RateLimitExceeded):
        await client.getitem(f"/repos/{REPO}")
    assert sleeps == []


async def test_persistent_5xx_gives_up_with_the_error(github_app, github_server, sleeps):
    github_server.state.inject_fault("GET", rf"/repos/{REPO}$", 503, times=50)
    client = await github_app.installation_client(1)
    with pytest.raises(GitHubBroken):
        await client.getitem(f"/repos/{REPO}")
    assert len(sleeps) == client.max_attempts - 1


async def test_client_errors_are_not_retried(github_app, github_server, sleeps):
    client = await github_app.installation_client(1)
    with pytest.raises(BadRequest) as missing:
        await client.getitem("/repos/octo-org/no-such-repo")
    assert missing.value.status_code == 404
    assert sleeps == []


async def test_an_unreachable_github_is_a_transient_error(app_private_key, sleeps):
    app = GitHubApp(app_id=1, private_key=app_private_key, base_url="http://127.0.0.1:9")
    try:
        with pytest.raises(GitHubBroken, match=r"^cannot reach 127\.0\.0\.1:9: connection refused$"):
            await app.app_client().getitem("/app")
    finally:
        await app.close()
    assert len(sleeps) >= 2


async def test_doctor_checks_github_and_anthropic(settings_env, github_server, managed_agents, monkeypatch):
    monkeypatch.setenv("PRMEDIC_GITHUB_API_URL", github_server.url)
    for name, value in managed_agents.env.items():
        monkeypatch.setenv(name, value)
    lines: list[str] = []
    assert await run_doctor(Settings(), lines.append), lines
    assert any(line.startswith("✓ GitHub App: ") and "prmedic" in line for line in lines)
    assert any(line.startswith("✓ Anthropic") for line in lines)


async def test_doctor_says_what_is_wrong(settings_env, github_server, monkeypatch):
    from sims.github_fixtures import generate_private_key

    other_key = generate_private_key()
    monkeypatch.setenv("PRMEDIC_PRIVATE_KEY", other_key)
    monkeypatch.delenv("PRMEDIC_PRIVATE_KEY_PATH")
    monkeypatch.setenv("PRMEDIC_GITHUB_API_URL", github_server.url)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    github_server.state.expect_violations = True
    lines: list[str] = []
    assert not await run_doctor(Settings(), lines.append)
    assert any(line.startswith("✗ GitHub App") and "private key" in line for line in lines), lines
    assert any(line.startswith("✗ Anthropic") and "ANTHROPIC_API_KEY" in line for line in lines)


def test_the_app_manifest_asks_for_what_doctor_requires():
    from pathlib import Path

    import yaml

    manifest = yaml.safe_load((Path(__file__).parent.parent / "deploy" / "app.yml").read_text())
    assert manifest["default_permissions"] == REQUIRED_PERMISSIONS


async def test_the_anthropic_key_can_live_in_dotenv_with_the_other_settings(
    settings_env, github_server, managed_agents, monkeypatch, tmp_path, capsys
):
    import asyncio

    from app.cli import main

    lines = [f"{name}={value}" for name, value in {**settings_env, **managed_agents.env,
                                                  "PRMEDIC_GITHUB_API_URL": github_server.url}.items()]
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    for name in [*settings_env, *managed_agents.env]:
        monkeypatch.setenv(name, "placeholder")  # so that undo restores the real environment
        monkeypatch.delenv(name)
    assert await asyncio.to_thread(main, ["doctor"]) == 0
    out = capsys.readouterr().out
    assert "✓ Anthropic" in out and "✓ GitHub App" in out


async def test_a_post_answered_502_is_not_repeated_blindly(github_app, github_server, sleeps):
    state = github_server.state
    state.add_issue(REPO, 1)
    state.inject_fault("POST", r"/issues/1/comments$", 502)
    client = await github_app.installation_client(1)
    with pytest.raises(GitHubBroken):
        await client.post(f"/repos/{REPO}/issues/1/comments", data={"body": "once"})
    assert state.count("POST", r"/issues/1/comments$") == 1 and sleeps == []


async def test_ci_log_downloads_follow_the_clients_retry_policy(github_app, github_server, sleeps):
    from app.pipelines.fix.ci_logs import download_job_log
    from app.tools import ToolError

    state = github_server.state
    sha = state.resolve(REPO, "main")
    state.add_actions_job(REPO, 77, 7, "test", "failure", "line one\nE   assert 0 == 4\n", sha)
    state.inject_fault("GET", r"/actions/jobs/77/logs$", 502)
    state.inject_too_many_requests("GET", r"/actions/jobs/77/logs$", retry_after=4)
    client = await github_app.installation_client(1)
    assert "assert 0 == 4" in await download_job_log(client, REPO, 77)
    assert len(sleeps) == 2 and sleeps[1] == 4.0
    with pytest.raises(ToolError, match="not available"):
        await download_job_log(client, REPO, 78)
