"""A simulated session's state: status, event logs, threads, usage, resources."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from .common import _iso, new_id
from .steps import agent_message, model_request, stop_end_turn

if TYPE_CHECKING:
    from .script import Script, Step, ToolResult, _Pending, _Subscriber
    from .simulator import ManagedAgentsSimulator


class SimSession:
    def __init__(self, sim: "ManagedAgentsSimulator", record: dict, agent_snapshot: dict, script: Script) -> None:
        self.sim = sim
        self.id: str = record["id"]
        self.agent: dict = agent_snapshot
        self.environment_id: str = record["environment_id"]
        self.metadata: dict = record["metadata"]
        self.title: str | None = record.get("title")
        self.vault_ids: list[str] = record["vault_ids"]
        self.budget: dict | None = record.get("budget")
        self.resources: list[dict] = record["resources"]
        self.resource_tokens: dict[str, str | None] = {}
        self.created_at: str = record["created_at"]
        self.updated_at: str = record["created_at"]
        self.archived_at: str | None = None
        self.status = "idle"
        self.script = script
        self.turn_index = 0
        self.events: list[dict] = []
        self.thread_logs: dict[str, list[dict]] = {}
        self.threads: dict[str, dict] = {}
        self.thread_keys: dict[str, str] = {}
        self.thread_usage: dict[str, dict] = {}
        self.subscribers: list[_Subscriber] = []
        self.pending: dict[str, _Pending] = {}
        self.tool_results: list[ToolResult] = []
        self.confirmations: list[ToolResult] = []
        self.interrupts: list[dict] = []
        self.user_messages: list[dict] = []
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.runner: asyncio.Task | None = None
        self.turn_task: asyncio.Task | None = None
        self.stream_drops = 0
        self.budget_stopped = False
        self._last_requires_action: list[str] | None = None
        self._running_since: float | None = None
        self._active = 0.0
        self._created_mono = time.monotonic()
        self.usage = {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
        self._cost_dollars = Decimal(0)
        self.primary_thread_id = new_id("sthr")
        self.threads[self.primary_thread_id] = self._thread_record(
            self.primary_thread_id, _thread_agent(agent_snapshot), None, self.created_at
        )
        self.thread_logs[self.primary_thread_id] = []

    # -- threads -------------------------------------------------------------------
    def _thread_record(self, tid: str, agent: dict, parent: str | None, now: str) -> dict:
        self.thread_usage[tid] = {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0, "cost": Decimal(0)}
        return {
            "id": tid,
            "type": "session_thread",
            "session_id": self.id,
            "parent_thread_id": parent,
            "agent": agent,
            "status": "idle",
            "created_at": now,
            "updated_at": now,
            "archived_at": None,
        }

    def create_thread(self, agent_name: str, now: str) -> str:
        tid = new_id("sthr")
        agent = None
        for cand in _roster_snapshots(self.agent):
            if cand.get("name") == agent_name:
                agent = dict(cand)
                break
        if agent is None:
            agent = {
                "type": "inline",
                "name": agent_name,
                "description": None,
                "system": None,
                "model": self.agent["model"],
                "tools": [],
                "mcp_servers": [],
                "skills": [],
                "execution_identity": {"type": "service_account"},
            }
        self.threads[tid] = self._thread_record(tid, agent, self.primary_thread_id, now)
        self.thread_logs[tid] = []
        return tid

    def thread_agent_name(self, tid: str) -> str:
        agent = self.threads[tid]["agent"]
        return agent.get("name") or agent.get("type", "agent")

    # -- status / usage ------------------------------------------------------------
    def set_status(self, status: str, now: datetime) -> None:
        mono = time.monotonic()
        if self.status == "running" and status != "running" and self._running_since is not None:
            self._active += mono - self._running_since
            self._running_since = None
        if status == "running" and self._running_since is None:
            self._running_since = mono
        self.status = status
        self.updated_at = _iso(now)
        primary = self.threads[self.primary_thread_id]
        primary["status"] = status if status != "rescheduling" else "rescheduling"
        primary["updated_at"] = self.updated_at

    def active_seconds(self) -> float:
        extra = time.monotonic() - self._running_since if self._running_since is not None else 0.0
        return round(self._active + extra, 6)

    def add_usage(self, usage: dict, *, thread_id: str | None, cost_cents: Decimal | None) -> None:
        model = (self.threads[thread_id or self.primary_thread_id]["agent"].get("model") or {}).get("id", "")
        if cost_cents is None:
            inp, out = self.sim.price_for(model)
            dollars = (
                Decimal(usage["input_tokens"]) * inp
                + Decimal(usage["output_tokens"]) * out
                + Decimal(usage["cache_read_input_tokens"]) * inp * Decimal("0.1")
                + Decimal(usage["cache_creation_input_tokens"]) * inp * Decimal("1.25")
            ) / Decimal(1_000_000)
        else:
            dollars = cost_cents / 100
        for bag in (self.usage, self.thread_usage[thread_id or self.primary_thread_id]):
            for k in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
                bag[k] += usage[k]
        self._cost_dollars += dollars
        self.thread_usage[thread_id or self.primary_thread_id]["cost"] += dollars

    def cost_cents(self) -> Decimal:
        return (self._cost_dollars * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)

    def _usage_obj(self, bag: dict, cost_dollars: Decimal, active: float) -> dict:
        return {
            "input_tokens": bag["input_tokens"],
            "output_tokens": bag["output_tokens"],
            "cache_read_input_tokens": bag["cache_read_input_tokens"],
            "cache_creation": {"ephemeral_5m_input_tokens": bag["cache_creation_input_tokens"], "ephemeral_1h_input_tokens": 0},
            "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
            "list_cost": {"amount": str(int((cost_dollars * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))), "currency": "USD"},
            "active_seconds": active,
        }

    def usage_snapshot(self) -> dict:
        return self._usage_obj(self.usage, self._cost_dollars, self.active_seconds())

    # -- rendering -----------------------------------------------------------------
    def render(self) -> dict:
        return {
            "id": self.id,
            "type": "session",
            "status": self.status,
            "title": self.title,
            "metadata": dict(self.metadata),
            "environment_id": self.environment_id,
            "vault_ids": list(self.vault_ids),
            "deployment_id": None,
            "agent": self.agent,
            "resources": [_public_resource(r) for r in self.resources],
            "budget": self.budget,
            "outcome_evaluations": [],
            "stats": {"active_seconds": self.active_seconds(), "duration_seconds": round(time.monotonic() - self._created_mono, 6)},
            "usage": self.usage_snapshot(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "archived_at": self.archived_at,
        }

    def render_thread(self, tid: str) -> dict:
        t = dict(self.threads[tid])
        bag = self.thread_usage[tid]
        t["usage"] = self._usage_obj(bag, bag["cost"], 0.0)
        t["stats"] = {"active_seconds": None, "duration_seconds": None, "startup_seconds": None}
        return t

    # -- script progression --------------------------------------------------------
    def next_turn(self) -> list[Step]:
        if self.turn_index < len(self.script.turns):
            turn = self.script.turns[self.turn_index]
        else:
            turn = [model_request(400, 60), agent_message("Noted."), stop_end_turn()]
        self.turn_index += 1
        return turn

    @property
    def last_event(self) -> dict | None:
        return self.events[-1] if self.events else None

    def events_of(self, type_: str) -> list[dict]:
        return [e for e in self.events if e["type"] == type_]


def _public_resource(r: dict) -> dict:
    return {k: v for k, v in r.items() if not k.startswith("_")}


def _thread_agent(snapshot: dict) -> dict:
    """A SessionThreadAgent: the session agent snapshot without multiagent."""
    return {k: v for k, v in snapshot.items() if k != "multiagent"}


def _roster_snapshots(agent: dict) -> list[dict]:
    ma = agent.get("multiagent")
    if not ma:
        return []
    if ma["type"] == "coordinator":
        return [a for a in ma["agents"] if a.get("type") == "agent"]
    out = []
    for part in ("subagents", "workflows"):
        sec = ma.get(part) or {}
        if sec.get("type") == "enabled":
            out += sec.get("predefined_agents") or []
    return out
