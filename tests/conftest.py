"""Shared fixtures: settings, store, signed deliveries, GitHub's webhook examples, the server."""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import hmac
import itertools
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from sims.github_fixtures import (  # noqa: F401 - fixtures
    app_private_key,
    git_repo,
    github_openapi_spec,
    github_server,
    github_state,
)
from sims.managed_agents_fixtures import managed_agents, managed_agents_env  # noqa: F401 - fixtures

from app.metrics import Metrics
from app.server import create_app
from app.settings import Settings
from app.store import open_store

FIXTURES = Path(__file__).parent / "fixtures"
WEBHOOK_SECRET = "test-webhook-secret"
APP_ID = 12345
APP_SLUG = "prmedic"


@functools.cache
def webhook_examples() -> dict[str, list[dict]]:
    """GitHub's own webhook payload examples (@octokit/webhooks-examples), by event name."""
    data = json.loads((FIXTURES / "webhook-examples.json").read_text())
    return {entry["name"]: entry["examples"] for entry in data}


def example(event: str, action: str | None = None, index: int = 0) -> dict:
    """A deep copy of the index-th example of `event` with `action`."""
    matches = [e for e in webhook_examples()[event] if action is None or e.get("action") == action]
    return copy.deepcopy(matches[index])


def installed(payload: dict, installation_id: int = 4242) -> dict:
    """`payload` as GitHub delivers it to an App: with the installation the App acts through
    (some of GitHub's examples come from repository webhooks and have none)."""
    payload["installation"] = {"id": installation_id, "node_id": "MDIzOkludGVncmF0aW9uNDI0Mg=="}
    return payload


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery_headers(event: str, body: bytes, *, delivery_id: str | None = None, secret: str = WEBHOOK_SECRET) -> dict:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret),
        "User-Agent": "GitHub-Hookshot/test",
    }


# -- PostgreSQL: a throw-away database per test run -----------------------------------------------

POSTGRES_SERVER_URL = os.environ.get("PRMEDIC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def run_in_thread(make_coroutine):
    """Run a coroutine to completion on a loop of its own, in a thread: fixtures that are set up while a
    test's loop runs can still talk to PostgreSQL."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()


def postgres_admin(*statements: str, server_url: str = POSTGRES_SERVER_URL) -> None:
    """Run statements (CREATE/DROP DATABASE) on the server's maintenance database."""
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(server_url, timeout=5)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    run_in_thread(run)


def postgres_database_url(name: str, server_url: str = POSTGRES_SERVER_URL) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def postgres_url():
    """The URL of an empty PostgreSQL database made for this test run (`prmedic_test_<random>`, dropped
    at the end) on the server PRMEDIC_TEST_POSTGRES_URL names (default: the local one, user postgres).
    Without a server the PostgreSQL tests skip, saying why, except under CI (CI=true), where they fail."""
    import asyncpg

    name = f"prmedic_test_{uuid.uuid4().hex[:12]}"
    try:
        postgres_admin(f'CREATE DATABASE "{name}"')
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        where = urlsplit(POSTGRES_SERVER_URL)
        reason = (f"no PostgreSQL server answers at {where.hostname}:{where.port or 5432} ({exc}); start one, or "
                  "point PRMEDIC_TEST_POSTGRES_URL at one")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield postgres_database_url(name)
    finally:
        postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def fresh_postgres_url(postgres_url) -> str:
    """`postgres_url` with every table emptied (the schema and its version stay): one test's rows never
    reach the next."""
    import asyncpg

    conn = await asyncpg.connect(postgres_url, timeout=5)
    try:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")]
        if tables:
            quoted = ", ".join(f'"{table}"' for table in tables)
            await conn.execute(f"TRUNCATE {quoted} RESTART IDENTITY")
    finally:
        await conn.close()
    return postgres_url


@pytest.fixture
def settings_env(tmp_path, app_private_key, monkeypatch) -> dict[str, str]:
    """A complete, valid set of PRMEDIC_* variables, also placed in os.environ."""
    key_path = tmp_path / "app.pem"
    key_path.write_text(app_private_key)
    env = {
        "PRMEDIC_APP_ID": str(APP_ID),
        "PRMEDIC_APP_SLUG": APP_SLUG,
        "PRMEDIC_PRIVATE_KEY_PATH": str(key_path),
        "PRMEDIC_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PRMEDIC_DATABASE_URL": f"sqlite:///{tmp_path / 'prmedic.db'}",
        "PRMEDIC_GITHUB_API_URL": "http://127.0.0.1:9/unused",
        "PRMEDIC_JOB_RETRY_BASE_SECONDS": "0",
        "PRMEDIC_WORKER_POLL_SECONDS": "0.05",
    }
    for name in [n for n in __import__("os").environ if n.startswith("PRMEDIC_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return env


@pytest.fixture
def settings(settings_env) -> Settings:
    return Settings()


@pytest.fixture
async def store(settings):
    store = open_store(settings.database_url)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def webhook_client(aiohttp_client, settings, store):
    """A test client for the real server app, on the test store."""
    return await aiohttp_client(create_app(settings, store, Metrics()))


class Deliverer:
    """Posts signed deliveries to the server, as GitHub does."""

    _ids = itertools.count(1)

    def __init__(self, client):
        self.client = client

    async def __call__(self, event: str, payload: dict | bytes, *, delivery_id: str | None = None,
                      headers: dict | None = None):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        all_headers = delivery_headers(event, body, delivery_id=delivery_id or f"test-{next(self._ids)}-{uuid.uuid4()}")
        all_headers.update(headers or {})
        return await self.client.post("/api/github/webhooks", data=body, headers=all_headers)


@pytest.fixture
def deliver(webhook_client) -> Deliverer:
    return Deliverer(webhook_client)


# -- the whole app against both simulators ----------------------------------------------------


class AppStack:
    """prmedic as `prmedic serve` wires it (server, store, worker, pipelines), against the GitHub and
    Managed Agents simulators: `deliver(event, payload)` posts a signed delivery to the real server,
    `run_jobs()` runs the worker with the shipped pipelines (`app.runtime.PIPELINES`) until nothing is left to do."""

    def __init__(self, services, deliver: Deliverer, github, agents) -> None:
        self.services = services
        self.settings = services.settings
        self.store = services.store
        self.deliver = deliver
        self.github = github  # sims.github_fixtures.GitHubServer (.state, .url)
        self.agents = agents  # sims.managed_agents_fixtures.ManagedAgentsHarness (.sim)

    @property
    def state(self):
        return self.github.state

    github_state = state

    @property
    def sim(self):
        return self.agents.sim

    def worker(self, pipelines=None):
        return self.services.worker(pipelines)

    async def run_jobs(self, timeout: float = 30.0, pipelines=None) -> None:
        await self.worker(pipelines).run_until_idle(timeout)


@pytest.fixture
async def app_stack(settings_env, monkeypatch, store, github_server, managed_agents, aiohttp_client):
    """The whole app on the test store, with 2-second job leases (a superseded job stops within a
    second). Deliveries through `app_stack.deliver` or the `deliver` fixture land in the same store."""
    from app.agents.derived import forget_derived
    from app.agents.sync import forget_synced
    from app.github import GitHubApp
    from app.runtime import Services
    from app.sessions import SessionRuntime, SessionSettings

    monkeypatch.setenv("PRMEDIC_GITHUB_API_URL", github_server.url)
    monkeypatch.setenv("PRMEDIC_JOB_LEASE_SECONDS", "2")
    app_settings = Settings()
    metrics = Metrics()
    github = GitHubApp(app_id=app_settings.app_id, private_key=app_settings.private_key_pem,
                       base_url=github_server.url, max_retry_wait=2, metrics=metrics)
    runtime = SessionRuntime(managed_agents.client, store, github_app=github, settings=SessionSettings.from_settings(
        app_settings, reconnect_initial_seconds=0.01, reconnect_max_seconds=0.05, create_backoff_seconds=0.01,
        create_backoff_cap=0.05, interrupt_timeout=2.0))
    services = Services(app_settings, store, github, metrics, f"{APP_SLUG}[bot]", sessions=runtime,
                        anthropic=managed_agents.client)
    client = await aiohttp_client(create_app(app_settings, store, metrics, identity=services))
    forget_synced()
    forget_derived()
    try:
        yield AppStack(services, Deliverer(client), github_server, managed_agents)
    finally:
        await runtime.aclose()
        await github.close()
        forget_synced()
        forget_derived()


@pytest.fixture(autouse=True)
def _fresh_permission_cache():
    """Each test asks GitHub for a commenter's permission afresh (the cache lives a minute)."""
    from app.pipelines.commands import permissions

    permissions.clear_cache()
    yield
    permissions.clear_cache()


@pytest.fixture
def pr(app_stack, git_repo):
    """An open PR by octocat in the GitHub simulator; `maintainer` may write, `reader` may read."""
    from review_helpers import REPO, PullRequestRepo

    pr = PullRequestRepo(app_stack.state, git_repo)
    app_stack.state.set_permission(REPO, "maintainer", "write")
    app_stack.state.set_permission(REPO, "reader", "read")
    return pr
