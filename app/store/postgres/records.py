"""The PostgreSQL backend's other tables: installations, meta, agent sessions and their tool calls,
pull request reviews, fix attempts and proposals.

A tool call is claimed by inserting its row (the event id is the key): of two replicas handed the same
call, one inserts it and runs the handler, the other finds it claimed.
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from app.store.base import StoreUnavailable
from app.store.models import (
    FixProposal,
    Installation,
    PullReviewState,
    SessionRecord,
    ToolCallRecord,
)
from app.store.postgres.connection import PostgresBase, lock_key
from app.store.postgres.schema import (
    dumps,
    installation_from_row,
    session_from_row,
    tool_call_from_row,
)


class RecordTables(PostgresBase):
    # -- installations and meta ---------------------------------------------
    async def get_installation(self, installation_id: int) -> Installation | None:
        row = await self._fetchrow("SELECT * FROM installations WHERE installation_id = $1", installation_id)
        return installation_from_row(row) if row else None

    async def list_installations(self) -> list[Installation]:
        return [installation_from_row(r) for r in await self._fetch("SELECT * FROM installations ORDER BY installation_id")]

    async def get_meta(self, key: str) -> str | None:
        return await self._fetchval("SELECT value FROM meta WHERE key = $1", key)

    async def set_meta(self, key: str, value: str) -> None:
        await self._fetchval("INSERT INTO meta (key, value) VALUES ($1, $2)"
                             " ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, value)

    # -- agent sessions -------------------------------------------------------
    async def record_session(
        self, job_id: int, session_id: str, *, agent_id: str | None = None, agent_version: int | None = None
    ) -> SessionRecord:
        async def insert(conn: asyncpg.Connection) -> SessionRecord:
            now = time.time()
            await conn.execute(
                "INSERT INTO agent_sessions (session_id, job_id, agent_id, agent_version, state, created_at, updated_at)"
                " VALUES ($1, $2, $3, $4, 'open', $5, $5) ON CONFLICT (session_id) DO NOTHING",
                session_id, job_id, agent_id, agent_version, now)
            return session_from_row(await conn.fetchrow("SELECT * FROM agent_sessions WHERE session_id = $1",
                                                         session_id))

        return await self._tx(insert)

    async def get_open_session(self, job_id: int) -> SessionRecord | None:
        row = await self._fetchrow("SELECT * FROM agent_sessions WHERE job_id = $1 AND state = 'open'"
                                   " ORDER BY created_at DESC LIMIT 1", job_id)
        return session_from_row(row) if row else None

    async def close_session(
        self,
        session_id: str,
        *,
        stop_reason: str | None = None,
        error: str | None = None,
        usage: dict[str, Any] | None = None,
        list_cost_cents: int | None = None,
        budget_reached: bool | None = None,
    ) -> None:
        await self._fetchval(
            "UPDATE agent_sessions SET state = 'closed', stop_reason = coalesce($1, stop_reason),"
            " error = coalesce($2, error), usage = coalesce($3::jsonb, usage),"
            " list_cost_cents = coalesce($4, list_cost_cents), budget_reached = coalesce($5, budget_reached),"
            " updated_at = $6 WHERE session_id = $7",
            stop_reason, error, dumps(usage), list_cost_cents, budget_reached, time.time(), session_id)

    async def list_sessions(self, job_id: int) -> list[SessionRecord]:
        rows = await self._fetch("SELECT * FROM agent_sessions WHERE job_id = $1 ORDER BY created_at", job_id)
        return [session_from_row(r) for r in rows]

    async def claim_tool_call(self, session_id: str, event_id: str, name: str) -> tuple[ToolCallRecord, bool]:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                "INSERT INTO tool_calls (event_id, session_id, name, state, started_at)"
                " VALUES ($1, $2, $3, 'started', $4) ON CONFLICT (event_id) DO NOTHING RETURNING *",
                event_id, session_id, name, time.time())
            if row is not None:
                return tool_call_from_row(row), True
            return tool_call_from_row(await conn.fetchrow("SELECT * FROM tool_calls WHERE event_id = $1",
                                                          event_id)), False

    async def answer_tool_call(self, event_id: str, result: str, is_error: bool) -> ToolCallRecord:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                "UPDATE tool_calls SET state = 'answered', result = $1, is_error = $2, answered_at = $3"
                " WHERE event_id = $4 AND state = 'started' RETURNING *", result, is_error, time.time(), event_id)
            row = row or await conn.fetchrow("SELECT * FROM tool_calls WHERE event_id = $1", event_id)
        if row is None:
            raise StoreUnavailable(f"tool call {event_id} was never claimed")
        return tool_call_from_row(row)

    async def get_tool_call(self, event_id: str) -> ToolCallRecord | None:
        row = await self._fetchrow("SELECT * FROM tool_calls WHERE event_id = $1", event_id)
        return tool_call_from_row(row) if row else None

    async def list_tool_calls(self, session_id: str) -> list[ToolCallRecord]:
        rows = await self._fetch("SELECT * FROM tool_calls WHERE session_id = $1 ORDER BY started_at, seq", session_id)
        return [tool_call_from_row(r) for r in rows]

    # -- pull request reviews -------------------------------------------------
    async def get_pull_review(self, repo: str, pr_number: int) -> PullReviewState | None:
        raw = await self._fetchval("SELECT state FROM pull_reviews WHERE repo = $1 AND pr_number = $2",
                                   repo.lower(), pr_number)
        return PullReviewState.model_validate_json(raw) if raw else None

    async def save_pull_review(self, state: PullReviewState) -> None:
        state = state.model_copy(update={"updated_at": time.time()})
        await self._fetchval(
            "INSERT INTO pull_reviews (repo, pr_number, state, updated_at) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (repo, pr_number) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            state.repo.lower(), state.pr_number, state.model_dump_json(), state.updated_at)

    # -- fixes ----------------------------------------------------------------
    async def claim_fix_attempt(self, repo: str, pr_number: int, root_sha: str, job_id: int,
                                limit: int) -> tuple[bool, int]:
        key = (repo.lower(), pr_number, root_sha)

        async def claim(conn: asyncpg.Connection) -> tuple[bool, int]:
            # Count and insert under one lock per root, so two replicas never both take the last attempt.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(f"fix:{key[0]}#{pr_number}@{root_sha}"))
            where = "repo = $1 AND pr_number = $2 AND root_sha = $3"
            count = await conn.fetchval(f"SELECT count(*) FROM fix_attempts WHERE {where}", *key)
            if await conn.fetchval(f"SELECT 1 FROM fix_attempts WHERE {where} AND job_id = $4", *key, job_id):
                return True, count
            if count >= limit:
                return False, count
            await conn.execute("INSERT INTO fix_attempts (repo, pr_number, root_sha, job_id, created_at)"
                               " VALUES ($1, $2, $3, $4, $5)", *key, job_id, time.time())
            return True, count + 1

        return await self._tx(claim)

    async def record_fix_proposal(self, proposal: FixProposal) -> FixProposal:
        now = time.time()
        p = proposal
        proposal_id = await self._fetchval(
            "INSERT INTO fix_proposals (repo, pr_number, root_sha, base_sha, fix_sha, branch, delivery, url,"
            " job_id, outcome, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            p.repo.lower(), p.pr_number, p.root_sha, p.base_sha, p.fix_sha, p.branch, p.delivery, p.url,
            p.job_id, p.outcome, now)
        return p.model_copy(update={"id": proposal_id, "created_at": now})

    async def find_fix_proposal(self, repo: str, *, fix_sha: str | None = None, branch: str | None = None,
                                pr_number: int | None = None, outcome: str | None = None) -> FixProposal | None:
        args: list[Any] = [repo.lower()]
        narrow = ""
        for column, value in (("pr_number", pr_number), ("outcome", outcome)):
            if value is not None:
                args.append(value)
                narrow += f" AND {column} = ${len(args)}"
        lookups = [(c, v) for c, v in (("fix_sha", fix_sha), ("branch", branch)) if v is not None] or [(None, None)]
        for column, value in lookups:
            by = f" AND {column} = ${len(args) + 1}" if column else ""
            row = await self._fetchrow(f"SELECT * FROM fix_proposals WHERE repo = $1{narrow}{by} ORDER BY id DESC LIMIT 1",
                                       *args, *([value] if column else []))
            if row:
                return FixProposal.model_validate(dict(row))
        return None

    async def get_fix_proposal(self, proposal_id: int) -> FixProposal | None:
        row = await self._fetchrow("SELECT * FROM fix_proposals WHERE id = $1", proposal_id)
        return FixProposal.model_validate(dict(row)) if row else None

    async def decide_fix_proposal(self, proposal_id: int, outcome: str, *, delivery: str | None = None,
                                  url: str | None = None) -> bool:
        resolved = None if outcome == "pending" else time.time()
        return await self._fetchval(
            "UPDATE fix_proposals SET outcome = $1, delivery = coalesce($2, delivery), url = coalesce($3, url),"
            " resolved_at = $4 WHERE id = $5 AND outcome = 'awaiting_approval' RETURNING true",
            outcome, delivery, url, resolved, proposal_id) is not None

    async def resolve_fix_proposal(self, proposal_id: int, outcome: str) -> bool:
        return await self._fetchval(
            "UPDATE fix_proposals SET outcome = $1, resolved_at = $2 WHERE id = $3 AND outcome = 'pending'"
            " RETURNING true", outcome, time.time(), proposal_id) is not None

    async def fix_outcome_counts(self) -> dict[str, int]:
        rows = await self._fetch("SELECT outcome, count(*) AS n FROM fix_proposals GROUP BY outcome")
        return {r["outcome"]: r["n"] for r in rows}
