"""The SQLite schema, its versions (`MIGRATIONS`, applied by `migrate`) and the row → model conversions."""

from __future__ import annotations

import sqlite3
import time

import orjson

from app.store.base import SchemaTooNew
from app.store.models import Installation, Job, SessionRecord, ToolCallRecord

# Version 1 is the schema of the stores made before versioning: its statements are idempotent, so a
# database made then is adopted as it is.
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    action      TEXT,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT NOT NULL,
    repo             TEXT NOT NULL,
    installation_id  INTEGER,
    pr_number        INTEGER,
    head_sha         TEXT,
    supersede_key    TEXT,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    last_error       TEXT,
    lease_owner      TEXT,
    lease_expires_at REAL,
    run_after        REAL NOT NULL DEFAULT 0,
    delivery_id      TEXT,
    result           TEXT,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL
);
CREATE INDEX IF NOT EXISTS jobs_runnable ON jobs (state, run_after);
CREATE INDEX IF NOT EXISTS jobs_supersede ON jobs (supersede_key, state);
CREATE TABLE IF NOT EXISTS installations (
    installation_id      INTEGER PRIMARY KEY,
    account              TEXT,
    account_type         TEXT,
    active               INTEGER NOT NULL,
    suspended            INTEGER NOT NULL,
    repository_selection TEXT,
    repositories         TEXT NOT NULL,
    updated_at           REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS agent_sessions (
    session_id      TEXT PRIMARY KEY,
    job_id          INTEGER NOT NULL,
    agent_id        TEXT,
    agent_version   INTEGER,
    state           TEXT NOT NULL DEFAULT 'open',
    stop_reason     TEXT,
    error           TEXT,
    usage           TEXT,
    list_cost_cents INTEGER,
    budget_reached  INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_sessions_job ON agent_sessions (job_id, state);
CREATE TABLE IF NOT EXISTS tool_calls (
    event_id    TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL,
    result      TEXT,
    is_error    INTEGER NOT NULL DEFAULT 0,
    started_at  REAL NOT NULL,
    answered_at REAL
);
CREATE INDEX IF NOT EXISTS tool_calls_session ON tool_calls (session_id);
CREATE TABLE IF NOT EXISTS pull_reviews (
    repo       TEXT NOT NULL,
    pr_number  INTEGER NOT NULL,
    state      TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (repo, pr_number)
);
CREATE TABLE IF NOT EXISTS fix_attempts (
    repo       TEXT NOT NULL,
    pr_number  INTEGER NOT NULL,
    root_sha   TEXT NOT NULL,
    job_id     INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (repo, pr_number, root_sha, job_id)
);
CREATE TABLE IF NOT EXISTS fix_proposals (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    repo        TEXT NOT NULL,
    pr_number   INTEGER NOT NULL,
    root_sha    TEXT NOT NULL,
    base_sha    TEXT NOT NULL,
    fix_sha     TEXT,
    branch      TEXT,
    delivery    TEXT NOT NULL,
    url         TEXT,
    job_id      INTEGER,
    outcome     TEXT NOT NULL,
    created_at  REAL NOT NULL,
    resolved_at REAL
);
CREATE INDEX IF NOT EXISTS fix_proposals_sha ON fix_proposals (repo, fix_sha);
CREATE INDEX IF NOT EXISTS fix_proposals_branch ON fix_proposals (repo, branch);
"""

# Retention (`prune`) looks jobs up by when they finished and deliveries by when they came.
SCHEMA_V2 = """
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at);
CREATE INDEX IF NOT EXISTS deliveries_received ON deliveries (received_at);
"""

# (version, script), in order; a released version is never edited, a change is a new version.
MIGRATIONS: list[tuple[int, str]] = [(1, SCHEMA_V1), (2, SCHEMA_V2)]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def migrate(db: sqlite3.Connection) -> int:
    """Bring the database to `SCHEMA_VERSION` in one transaction and return the version. `BEGIN
    IMMEDIATE` holds other processes off meanwhile; a database newer than this code raises `SchemaTooNew`."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
        found = db.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(found, SCHEMA_VERSION)
        for version, script in MIGRATIONS:
            if version > found:
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, time.time()))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return max(found, SCHEMA_VERSION)

JOB_COLUMNS = (
    "id, kind, repo, installation_id, pr_number, head_sha, supersede_key, payload, state, attempts,"
    " max_attempts, last_error, lease_owner, lease_expires_at, run_after, delivery_id, result,"
    " created_at, updated_at, started_at, finished_at"
)


def session_from_row(row: sqlite3.Row) -> SessionRecord:
    data = dict(row)
    data["usage"] = orjson.loads(data["usage"]) if data["usage"] else None
    data["budget_reached"] = bool(data["budget_reached"])
    return SessionRecord.model_validate(data)


def tool_call_from_row(row: sqlite3.Row) -> ToolCallRecord:
    data = dict(row)
    data["is_error"] = bool(data["is_error"])
    return ToolCallRecord.model_validate(data)


def job_from_row(row: sqlite3.Row) -> Job:
    data = dict(row)
    data["payload"] = orjson.loads(data["payload"])
    data["result"] = orjson.loads(data["result"]) if data["result"] else None
    return Job.model_validate(data)


def installation_from_row(row: sqlite3.Row) -> Installation:
    data = dict(row)
    data["repositories"] = orjson.loads(data["repositories"])
    data["active"] = bool(data["active"])
    data["suspended"] = bool(data["suspended"])
    return Installation.model_validate(data)
