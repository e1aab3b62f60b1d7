"""Operating the database (issue 16): `/healthz` says which database answers and at what schema
version, and `prmedic doctor` checks it (reachable, schema version against the code's, and on
PostgreSQL the grants a schema upgrade needs), on both backends, never showing a password."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid

import pytest
from conftest import (
    delivery_headers,
    example,
    installed,
    postgres_admin,
    postgres_database_url,
)

from app import server
from app.doctor import (
    PostgresGrants,
    check_database,
    grant_problems,
    run_doctor,
    schema_words,
    shown_database_url,
)
from app.metrics import Metrics
from app.server import create_app
from app.settings import Settings
from app.store import StoreUnavailable, open_store

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture
def scratch_database():
    """Names of PostgreSQL databases made for one test (`make()` → its URL), dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"prmedic_ops_{uuid.uuid4().hex[:10]}"
        postgres_admin(f'CREATE DATABASE "{name}"')
        made.append(name)
        return postgres_database_url(name)

    yield make
    for name in made:
        postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ops.db'}"
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
async def served(aiohttp_client, settings, database_url):
    """The server on a store of each backend: (test client, store)."""
    store = open_store(database_url)
    await store.open()
    client = await aiohttp_client(create_app(settings, store, Metrics()))
    yield client, store
    await store.close()


async def doctor_lines(settings: Settings) -> list[str]:
    lines: list[str] = []
    await check_database(settings, lambda passed, what, detail="": lines.append(
        f"{'✓' if passed else '✗'} {what}{': ' + detail if detail else ''}"))
    return lines


def with_database(settings: Settings, url: str) -> Settings:
    return settings.model_copy(update={"database_url": url})


def sql(url: str, *statements: str) -> None:
    """Run statements on the database at `url` (outside any store)."""
    postgres_admin(*statements, server_url=url)


# -- /healthz ------------------------------------------------------------------------------------


async def test_healthz_names_the_backend_its_schema_version_and_that_it_answered(served, database_url):
    client, store = served
    backend = database_url.split(":", 1)[0]
    raw = json.dumps(installed(example("pull_request", "opened"))).encode()
    assert (await client.post("/api/github/webhooks", data=raw, headers=delivery_headers("pull_request", raw))).status == 202
    answer = await client.get("/healthz")
    health = await answer.json()
    assert answer.status == 200
    assert {k: health[k] for k in ("status", "store", "queue_depth", "running")} == {
        "status": "ok", "store": "ok", "queue_depth": 1, "running": 0}
    database = health["database"]
    assert database["backend"] == backend and database["reachable"] is True
    assert database["schema_version"] == store.describe()["schema_version"] >= 1
    if backend == "postgresql":
        assert database["pool_size"] == 10 and database["listening"] is True


async def test_healthz_shows_no_address_path_or_user_of_the_database(served, database_url):
    client, _ = served
    text = await (await client.get("/healthz")).text()
    for secret in ("127.0.0.1", "postgres@", "ops.db", "prmedic_test_"):
        assert secret not in text


async def test_an_unreachable_database_makes_healthz_answer_503_with_the_reason(served, database_url):
    client, store = served
    await store.close()
    answer = await client.get("/healthz")
    health = await answer.json()
    assert answer.status == 503 and health["status"] == "unhealthy"
    assert health["database"]["reachable"] is False and health["database"]["error"] == health["store"]
    assert health["database"]["backend"] == database_url.split(":", 1)[0]


def test_the_reason_healthz_gives_leaves_the_database_url_out():
    failure = StoreUnavailable("cannot connect to PostgreSQL at postgresql://prmedic@db.internal:5432/prmedic: "
                               "connection refused")
    assert server.unhealthy_reason(failure) == "cannot connect to PostgreSQL at the database: connection refused"
    assert server.unhealthy_reason(StoreUnavailable("the store is not open")) == "the store is not open"


async def test_a_database_that_does_not_answer_in_time_is_unhealthy_and_says_so(settings, tmp_path, aiohttp_client,
                                                                             monkeypatch):
    store = open_store(f"sqlite:///{tmp_path / 'slow.db'}")
    await store.open()
    never = asyncio.Event()

    async def hangs() -> None:
        await never.wait()

    monkeypatch.setattr(store, "ping", hangs)
    monkeypatch.setattr(server, "HEALTH_TIMEOUT_SECONDS", 0.05)
    client = await aiohttp_client(create_app(settings, store, Metrics()))
    try:
        answer = await client.get("/healthz")
        health = await answer.json()
    finally:
        await store.close()
    assert answer.status == 503 and health["store"] == "the database did not answer within 0.05 s"
    assert health["database"] == {"backend": "sqlite", "schema_version": store.describe()["schema_version"],
                                  "reachable": False, "error": "the database did not answer within 0.05 s"}


# -- prmedic doctor: what it says ---------------------------------------------------------------


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://prmedic:s3cr%40t@db.internal:5432/prmedic", "postgresql://prmedic:***@db.internal:5432/prmedic"),
    ("postgres://u:p@h/db?sslmode=require&password=x", "postgres://u:***@h/db?sslmode=require&password=***"),
    ("postgresql://prmedic@db.internal/prmedic", "postgresql://prmedic@db.internal/prmedic"),
    ("sqlite:///./prmedic.db", "sqlite:///./prmedic.db"),
])
def test_the_doctor_never_shows_a_database_password(url, shown):
    assert shown_database_url(url) == shown


def test_schema_versions_are_judged_against_the_ones_this_prmedic_knows():
    assert schema_words(3, 3) == (True, "schema version 3, this prmedic's")
    assert schema_words(2, 3) == (True, "schema version 2: this prmedic upgrades it to 3 when it starts")
    assert schema_words(None, 3) == (True, "no prmedic tables yet: they are created (version 3) when prmedic starts")
    fits, words = schema_words(4, 3)
    assert not fits and "newer than this prmedic knows (3)" in words and "run that version" in words


def grants(**changes) -> PostgresGrants:
    return PostgresGrants(**{"user": "app", "schema": "public", "can_create": True, "not_owned": (),
                             "schema_version": 1, "max_connections": 100, **changes})


def test_grant_problems_name_what_is_missing_and_the_statement_that_grants_it():
    assert grant_problems(grants()) == []
    [create] = grant_problems(grants(can_create=False))
    assert "app may not create tables in schema public" in create and "GRANT CREATE ON SCHEMA public TO app" in create
    [owner] = grant_problems(grants(not_owned=("jobs", "meta")))
    assert "does not own jobs, meta" in owner and "OWNER TO app" in owner
    [nowhere] = grant_problems(grants(schema=None))
    assert "names no schema that exists" in nowhere


# -- prmedic doctor against real databases ----------------------------------------------------------


async def test_the_doctor_checks_a_sqlite_store_and_its_schema_version(settings, tmp_path):
    lines = await doctor_lines(with_database(settings, f"sqlite:///{tmp_path / 'doc.db'}"))
    [line] = lines
    assert line.startswith(f"✓ database: SQLite at sqlite:///{tmp_path / 'doc.db'}, reachable, schema version ")
    assert "this prmedic's; 0 job(s) queued" in line


async def test_the_doctor_refuses_a_sqlite_store_a_newer_prmedic_upgraded(settings, tmp_path):
    path = tmp_path / "newer.db"
    store = open_store(f"sqlite:///{path}")
    await store.open()
    known = store.describe()["schema_version"]
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)", (known + 1,))
    [line] = await doctor_lines(with_database(settings, f"sqlite:///{path}"))
    assert line.startswith("✗ database: ") and f"schema version {known + 1} is newer than this prmedic knows ({known})" in line


async def test_the_doctor_checks_a_current_postgresql_database_and_the_users_grants(settings, fresh_postgres_url):
    store = open_store(fresh_postgres_url)
    await store.open()
    known = store.describe()["schema_version"]
    await store.close()
    database, grants_line, job_store = await doctor_lines(with_database(settings, fresh_postgres_url))
    assert database.startswith(f"✓ database: PostgreSQL at {fresh_postgres_url}, reachable as postgres, "
                               f"schema version {known}, this prmedic's")
    assert "server allows" in database and "each replica uses up to 10 + 1" in database
    assert grants_line == "✓ database permissions: postgres may create and alter prmedic's tables in schema public"
    assert job_store == "✓ job store: opened, 0 job(s) queued"


async def test_the_doctor_never_creates_the_tables_of_an_empty_postgresql_database(settings, scratch_database):
    url = scratch_database()
    lines = await doctor_lines(with_database(settings, url))
    assert lines[0].startswith("✓ database: PostgreSQL at") and "no prmedic tables yet" in lines[0]
    assert lines[1].startswith("✓ database permissions") and len(lines) == 2

    async def tables() -> list[str]:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            return [r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        finally:
            await conn.close()

    assert await tables() == []


async def test_the_doctor_names_the_grants_a_restricted_user_lacks(settings, scratch_database):
    url = scratch_database()
    store = open_store(url)
    await store.open()  # the tables, owned by postgres
    await store.close()
    role = f"prmedic_ops_{uuid.uuid4().hex[:8]}"
    restricted = with_database(settings, url.replace("postgresql://postgres@", f"postgresql://{role}:hidden-pw@"))
    postgres_admin(f'CREATE ROLE "{role}" LOGIN')
    try:
        unreadable = await doctor_lines(restricted)
        sql(url, f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
        readable = await doctor_lines(restricted)
        sql(url, f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{role}"')
    finally:
        postgres_admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)', f'DROP ROLE "{role}"')
    database, permissions = unreadable
    assert database.startswith(f"✗ database: PostgreSQL at postgresql://{role}:***@") and f"reachable as {role}" in database
    assert "its schema version cannot be read (permission denied for table schema_migrations)" in database
    database, permissions, job_store = readable
    assert database.startswith(f"✓ database: PostgreSQL at postgresql://{role}:***@")
    assert job_store.startswith("✗ job store: ") and "permission denied for schema public" in job_store
    assert permissions.startswith("✗ database permissions: ")
    assert f"GRANT CREATE ON SCHEMA public TO {role}" in permissions
    assert "does not own" in permissions and "jobs" in permissions and f"OWNER TO {role}" in permissions
    assert not any("hidden-pw" in line for line in unreadable + readable)


async def test_the_doctor_refuses_a_postgresql_schema_a_newer_prmedic_upgraded(settings, scratch_database):
    url = scratch_database()
    store = open_store(url)
    await store.open()
    known = store.describe()["schema_version"]
    await store.close()
    sql(url, f"INSERT INTO schema_migrations (version, applied_at) VALUES ({known + 1}, 0)")
    lines = await doctor_lines(with_database(settings, url))
    assert lines[0].startswith("✗ database: PostgreSQL at")
    assert f"schema version {known + 1} is newer than this prmedic knows ({known})" in lines[0]
    assert len(lines) == 2, "the store is not opened on a schema it does not know"


async def test_the_doctor_says_an_unreachable_postgresql_server_cannot_be_reached(settings, unused_tcp_port):
    url = f"postgresql://prmedic:hidden-pw@127.0.0.1:{unused_tcp_port}/prmedic"
    [line] = await doctor_lines(with_database(settings, url))
    assert line.startswith(f"✗ database: cannot connect to postgresql://prmedic:***@127.0.0.1:{unused_tcp_port}/prmedic (")
    assert "connection refused" in line and "pg_hba.conf" in line and "hidden-pw" not in line


async def test_the_doctors_settings_line_shows_the_database_without_its_password(settings, unused_tcp_port,
                                                                                monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    url = f"postgresql://prmedic:hidden-pw@127.0.0.1:{unused_tcp_port}/prmedic"
    lines: list[str] = []
    assert await run_doctor(with_database(settings, url), lines.append) is False
    assert lines[0].endswith(f"store postgresql://prmedic:***@127.0.0.1:{unused_tcp_port}/prmedic")
    assert not any("hidden-pw" in line for line in lines)

