"""The SQLite backend's other tables: installations, meta, agent sessions and their tool calls,
pull request reviews, fix attempts and proposals."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import orjson

from app.store.base import StoreUnavailable
from app.store.models import FixProposal, Installation, PullReviewState, SessionRecord, ToolCallRecord
from app.store.sqlite.connection import SQLiteBase
from app.store.sqlite.schema import installation_from_row, session_from_row, tool_call_from_row


class RecordTables(SQLiteBase):
    # -- installations and meta ---------------------------------------------
    async def get_installation(self, installation_id: int) -> Installation | None:
        def get() -> Installation | None:
            row = self._conn.execute(
                "SELECT * FROM installations WHERE installation_id = ?", (installation_id,)
            ).fetchone()
            return installation_from_row(row) if row else None

        return await self._run(get)

    async def list_installations(self) -> list[Installation]:
        def select() -> list[Installation]:
            rows = self._conn.execute("SELECT * FROM installations ORDER BY installation_id").fetchall()
            return [installation_from_row(r) for r in rows]

        return await self._run(select)

    async def get_meta(self, key: str) -> str | None:
        def get() -> str | None:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return row[0] if row else None

        return await self._run(get)

    async def set_meta(self, key: str, value: str) -> None:
        await self._run(
            lambda: self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        )

    # -- agent sessions -------------------------------------------------------
    async def record_session(
        self, job_id: int, session_id: str, *, agent_id: str | None = None, agent_version: int | None = None
    ) -> SessionRecord:
        def insert(db: sqlite3.Connection) -> SessionRecord:
            now = time.time()
            db.execute(
                "INSERT INTO agent_sessions (session_id, job_id, agent_id, agent_version, state, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'open', ?, ?) ON CONFLICT (session_id) DO NOTHING",
                (session_id, job_id, agent_id, agent_version, now, now),
            )
            row = db.execute("SELECT * FROM agent_sessions WHERE session_id = ?", (session_id,)).fetchone()
            return session_from_row(row)

        return await self._run(self._transaction, insert)

    async def get_open_session(self, job_id: int) -> SessionRecord | None:
        def get() -> SessionRecord | None:
            row = self._conn.execute(
                "SELECT * FROM agent_sessions WHERE job_id = ? AND state = 'open' ORDER BY created_at DESC LIMIT 1",
                (job_id,),
            ).fetchone()
            return session_from_row(row) if row else None

        return await self._run(get)

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
        await self._run(
            lambda: self._conn.execute(
                "UPDATE agent_sessions SET state = 'closed', stop_reason = coalesce(?, stop_reason),"
                " error = coalesce(?, error), usage = coalesce(?, usage),"
                " list_cost_cents = coalesce(?, list_cost_cents), budget_reached = coalesce(?, budget_reached),"
                " updated_at = ? WHERE session_id = ?",
                (
                    stop_reason, error, orjson.dumps(usage) if usage is not None else None, list_cost_cents,
                    None if budget_reached is None else int(budget_reached), time.time(), session_id,
                ),
            )
        )

    async def list_sessions(self, job_id: int) -> list[SessionRecord]:
        def select() -> list[SessionRecord]:
            rows = self._conn.execute(
                "SELECT * FROM agent_sessions WHERE job_id = ? ORDER BY created_at", (job_id,)
            ).fetchall()
            return [session_from_row(r) for r in rows]

        return await self._run(select)

    async def claim_tool_call(self, session_id: str, event_id: str, name: str) -> tuple[ToolCallRecord, bool]:
        def claim(db: sqlite3.Connection) -> tuple[ToolCallRecord, bool]:
            cursor = db.execute(
                "INSERT INTO tool_calls (event_id, session_id, name, state, started_at) VALUES (?, ?, ?, 'started', ?)"
                " ON CONFLICT (event_id) DO NOTHING",
                (event_id, session_id, name, time.time()),
            )
            row = db.execute("SELECT * FROM tool_calls WHERE event_id = ?", (event_id,)).fetchone()
            return tool_call_from_row(row), cursor.rowcount == 1

        return await self._run(self._transaction, claim)

    async def answer_tool_call(self, event_id: str, result: str, is_error: bool) -> ToolCallRecord:
        def answer(db: sqlite3.Connection) -> ToolCallRecord:
            db.execute(
                "UPDATE tool_calls SET state = 'answered', result = ?, is_error = ?, answered_at = ?"
                " WHERE event_id = ? AND state = 'started'",
                (result, int(is_error), time.time(), event_id),
            )
            row = db.execute("SELECT * FROM tool_calls WHERE event_id = ?", (event_id,)).fetchone()
            if row is None:
                raise StoreUnavailable(f"tool call {event_id} was never claimed")
            return tool_call_from_row(row)

        return await self._run(self._transaction, answer)

    async def get_tool_call(self, event_id: str) -> ToolCallRecord | None:
        def get() -> ToolCallRecord | None:
            row = self._conn.execute("SELECT * FROM tool_calls WHERE event_id = ?", (event_id,)).fetchone()
            return tool_call_from_row(row) if row else None

        return await self._run(get)

    async def list_tool_calls(self, session_id: str) -> list[ToolCallRecord]:
        def select() -> list[ToolCallRecord]:
            rows = self._conn.execute(
                "SELECT * FROM tool_calls WHERE session_id = ? ORDER BY started_at, rowid", (session_id,)
            ).fetchall()
            return [tool_call_from_row(r) for r in rows]

        return await self._run(select)

    # -- pull request reviews -------------------------------------------------
    async def get_pull_review(self, repo: str, pr_number: int) -> PullReviewState | None:
        def get() -> PullReviewState | None:
            row = self._conn.execute("SELECT state FROM pull_reviews WHERE repo = ? AND pr_number = ?",
                                     (repo.lower(), pr_number)).fetchone()
            return PullReviewState.model_validate_json(row[0]) if row else None

        return await self._run(get)

    async def save_pull_review(self, state: PullReviewState) -> None:
        state = state.model_copy(update={"updated_at": time.time()})
        await self._run(lambda: self._conn.execute(
            "INSERT INTO pull_reviews (repo, pr_number, state, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (repo, pr_number) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            (state.repo.lower(), state.pr_number, state.model_dump_json(), state.updated_at)))

    # -- fixes ----------------------------------------------------------------
    async def claim_fix_attempt(self, repo: str, pr_number: int, root_sha: str, job_id: int,
                                limit: int) -> tuple[bool, int]:
        key = (repo.lower(), pr_number, root_sha)

        def claim(db: sqlite3.Connection) -> tuple[bool, int]:
            count = db.execute("SELECT count(*) FROM fix_attempts WHERE repo = ? AND pr_number = ? AND root_sha = ?",
                               key).fetchone()[0]
            if db.execute("SELECT 1 FROM fix_attempts WHERE repo = ? AND pr_number = ? AND root_sha = ?"
                          " AND job_id = ?", (*key, job_id)).fetchone():
                return True, count
            if count >= limit:
                return False, count
            db.execute("INSERT INTO fix_attempts (repo, pr_number, root_sha, job_id, created_at)"
                       " VALUES (?, ?, ?, ?, ?)", (*key, job_id, time.time()))
            return True, count + 1

        return await self._run(self._transaction, claim)

    async def record_fix_proposal(self, proposal: FixProposal) -> FixProposal:
        def insert(db: sqlite3.Connection) -> FixProposal:
            now = time.time()
            p = proposal
            cursor = db.execute(
                "INSERT INTO fix_proposals (repo, pr_number, root_sha, base_sha, fix_sha, branch, delivery, url,"
                " job_id, outcome, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (p.repo.lower(), p.pr_number, p.root_sha, p.base_sha, p.fix_sha, p.branch, p.delivery, p.url,
                 p.job_id, p.outcome, now))
            return p.model_copy(update={"id": cursor.lastrowid, "created_at": now})

        return await self._run(self._transaction, insert)

    async def find_fix_proposal(self, repo: str, *, fix_sha: str | None = None, branch: str | None = None,
                                pr_number: int | None = None, outcome: str | None = None) -> FixProposal | None:
        narrow, narrowed = "", []
        for column, value in (("pr_number", pr_number), ("outcome", outcome)):
            if value is not None:
                narrow += f" AND {column} = ?"
                narrowed.append(value)
        lookups = [(c, v) for c, v in (("fix_sha", fix_sha), ("branch", branch)) if v is not None] or [(None, None)]

        def find() -> FixProposal | None:
            for column, value in lookups:
                by = f" AND {column} = ?" if column else ""
                row = self._conn.execute(
                    f"SELECT * FROM fix_proposals WHERE repo = ?{by}{narrow} ORDER BY id DESC LIMIT 1",
                    (repo.lower(), *([value] if column else []), *narrowed)).fetchone()
                if row:
                    return FixProposal.model_validate(dict(row))
            return None

        return await self._run(find)

    async def get_fix_proposal(self, proposal_id: int) -> FixProposal | None:
        def get() -> FixProposal | None:
            row = self._conn.execute("SELECT * FROM fix_proposals WHERE id = ?", (proposal_id,)).fetchone()
            return FixProposal.model_validate(dict(row)) if row else None

        return await self._run(get)

    async def decide_fix_proposal(self, proposal_id: int, outcome: str, *, delivery: str | None = None,
                                  url: str | None = None) -> bool:
        resolved = None if outcome == "pending" else time.time()
        return await self._run(lambda: self._conn.execute(
            "UPDATE fix_proposals SET outcome = ?, delivery = coalesce(?, delivery), url = coalesce(?, url),"
            " resolved_at = ? WHERE id = ? AND outcome = 'awaiting_approval'",
            (outcome, delivery, url, resolved, proposal_id)).rowcount == 1)

    async def resolve_fix_proposal(self, proposal_id: int, outcome: str) -> bool:
        return await self._run(lambda: self._conn.execute(
            "UPDATE fix_proposals SET outcome = ?, resolved_at = ? WHERE id = ? AND outcome = 'pending'",
            (outcome, time.time(), proposal_id)).rowcount == 1)

    async def fix_outcome_counts(self) -> dict[str, int]:
        return await self._run(lambda: {r[0]: r[1] for r in self._conn.execute(
            "SELECT outcome, count(*) FROM fix_proposals GROUP BY outcome").fetchall()})
