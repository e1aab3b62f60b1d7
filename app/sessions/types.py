"""What a session is given and what it gives back: its settings, its spec (the job, the agent and
the task) and its outcome (docs/architecture.md, "Sessions")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.agents.tool_policy import ToolPolicy
from app.errors import PermanentError
from app.sessions.cost import JobCost, session_cost
from app.store import Job


@dataclass
class SessionSettings:
    max_sessions: int = 500
    max_duration_seconds: float = 3600.0
    # How often the repository token is re-read; the session resource is updated when it changed.
    token_refresh_seconds: float = 300.0
    github_web_url: str = "https://github.com"
    create_attempts: int = 6
    create_backoff_seconds: float = 1.0
    create_backoff_cap: float = 30.0
    reconnect_initial_seconds: float = 0.5
    reconnect_max_seconds: float = 10.0
    # Give up (transiently: the job is retried and resumes) after this many reconnects in a row
    # that delivered no new event.
    max_reconnects_without_progress: int = 40
    stream_read_timeout: float = 120.0
    request_timeout: float = 60.0
    interrupt_timeout: float = 10.0
    dedup_window: int = 256
    request_keepalive: int = 16
    # Which tools' confirmations are allowed (`user.tool_confirmation`); every other is denied.
    tool_policy: ToolPolicy = field(default_factory=ToolPolicy)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> "SessionSettings":
        values: dict[str, Any] = {}
        for name, attr in (("max_sessions", "max_sessions"),
                           ("max_duration_seconds", "session_max_duration_seconds"),
                           ("token_refresh_seconds", "session_token_refresh_seconds"),
                           ("github_web_url", "github_web_url")):
            if getattr(settings, attr, None) is not None:
                values[name] = getattr(settings, attr)
        values["tool_policy"] = ToolPolicy.from_settings(settings)
        values.update(overrides)
        return cls(**values)


@dataclass
class SessionSpec:
    """What one session is for: the job, the agent to run and the task to give it."""

    job_id: int
    repo: str  # owner/name
    head_sha: str
    task: str
    agent_id: str
    environment_id: str
    agent_version: int | None = None
    budget_cents: int | None = None
    installation_id: int | None = None
    pr_number: int | None = None
    kind: str = "review"
    job_attempt: int = 1
    title: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # The coordinator's system prompt with the repository's own instructions appended
    # (`render_system_prompt`); None keeps the synced prompt.
    system_override: str | None = None
    # False: no repository is mounted and no token is minted (the router reads only its task).
    mount_repository: bool = True
    # A shorter limit than the runtime's `max_duration_seconds` for this one session.
    max_duration_seconds: float | None = None
    # MCP servers (app/agents/mcp.py): the lead's tools in full plus their toolsets (the override
    # replaces the agent's list), the servers (`url` type) and the vaults with their credentials.
    agent_tools: list[dict[str, Any]] | None = None
    mcp_servers: list[dict[str, Any]] = field(default_factory=list)
    vault_ids: list[str] = field(default_factory=list)
    # A session a tool of the job's running session starts and waits for (a fix's verifier): it
    # never resumes the job's open session (that is the caller's) and takes no second slot of the
    # runtime's cap (the caller holds one while its tool runs; waiting for another could deadlock).
    inner: bool = False

    @classmethod
    def for_job(cls, job: Job, *, task: str, agent_id: str, environment_id: str,
                agent_version: int | None = None, budget_cents: int | None = None, **kw: Any) -> "SessionSpec":
        if not job.head_sha:
            raise PermanentError(f"job {job.id} has no head commit to check out")
        return cls(job_id=job.id, repo=job.repo, head_sha=job.head_sha, task=task, agent_id=agent_id,
                   environment_id=environment_id, agent_version=agent_version, budget_cents=budget_cents,
                   installation_id=job.installation_id, pr_number=job.pr_number, kind=job.kind.value,
                   job_attempt=job.attempts or 1, **kw)


@dataclass
class SessionOutcome:
    session_id: str
    stop_reason: str  # end_turn | budget_reached | terminated
    budget_reached: bool = False
    usage: dict[str, Any] | None = None
    list_cost_cents: int | None = None
    tool_calls: int = 0
    resumed: bool = False
    final_message: str | None = None
    duration_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    token_rotations: int = 0
    # Each thread's agent model and usage, read when the session ended (None: not known).
    threads_usage: list[tuple[str, dict[str, Any] | None]] | None = None
    # Tool confirmations answered in the session, by result (`allow`, `deny`).
    confirmations: dict[str, int] = field(default_factory=dict)

    @property
    def cost(self) -> JobCost:
        """The session's cost at list price: tokens by model and runtime."""
        cost = session_cost(self.usage, self.threads_usage)
        if cost.platform_tokens_usd is None and self.list_cost_cents is not None:
            cost.platform_tokens_usd = self.list_cost_cents / 100
        return cost

    def as_result(self) -> dict[str, Any]:
        """For the job's result (JSON)."""
        return {
            "session_id": self.session_id, "stop_reason": self.stop_reason, "budget_reached": self.budget_reached,
            "usage": self.usage, "list_cost_cents": self.list_cost_cents,
            "list_cost_usd": None if self.list_cost_cents is None else round(self.list_cost_cents / 100, 2),
            "tool_calls": self.tool_calls, "resumed": self.resumed, "duration_seconds": round(self.duration_seconds, 1),
            "session_errors": self.errors, "cost": self.cost.as_dict(),
            "tool_confirmations": {"allowed": self.confirmations.get("allow", 0),
                                   "denied": self.confirmations.get("deny", 0)},
        }

