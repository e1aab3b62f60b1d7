"""What the store keeps: deliveries, jobs, installations, agent sessions and tool calls, reviews, fixes."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, Field


class JobState(str, enum.Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    superseded = "superseded"
    cancelled = "cancelled"
    skipped = "skipped"
    no_pipeline = "no_pipeline"

    @property
    def finished(self) -> bool:
        return self not in (JobState.queued, JobState.running)


class JobKind(str, enum.Enum):
    review = "review"
    fix = "fix"
    command = "command"

    @property
    def one_per_head(self) -> bool:
        """A newer job of this kind for the head an older one is already running on waits for it
        (its pipeline then finds the head done) instead of superseding it. A fix job gathers every
        failure of its head, so there the newest job replaces a running one."""
        return self is JobKind.review


class NewJob(BaseModel):
    """A job as routing creates it from one delivery."""

    kind: JobKind
    repo: str
    installation_id: int | None = None
    pr_number: int | None = None
    head_sha: str | None = None
    # Jobs with the same key supersede each other: the newest one wins (see `JobKind.one_per_head`).
    supersede_key: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class Job(NewJob):
    id: int
    state: JobState
    attempts: int = 0
    max_attempts: int
    last_error: str | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    run_after: float = 0.0
    delivery_id: str | None = None
    result: dict[str, Any] | None = None
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None


class Delivery(BaseModel):
    delivery_id: str
    event: str
    action: str | None = None
    received_at: float


class InstallationChange(BaseModel):
    """An `installation` or `installation_repositories` event, kept in the store."""

    installation_id: int
    account: str | None = None
    account_type: str | None = None
    # None: the installation was removed (deleted).
    active: bool = True
    suspended: bool = False
    repositories_added: list[str] = Field(default_factory=list)
    repositories_removed: list[str] = Field(default_factory=list)
    # "all" or "selected"
    repository_selection: str | None = None


class Installation(BaseModel):
    installation_id: int
    account: str | None
    account_type: str | None
    active: bool
    suspended: bool
    repository_selection: str | None
    repositories: list[str]
    updated_at: float


class RecordResult(BaseModel):
    duplicate: bool
    job_ids: list[int] = Field(default_factory=list)


class SessionRecord(BaseModel):
    """A Managed Agents session run for a job (one open session per job at a time)."""

    session_id: str
    job_id: int
    agent_id: str | None = None
    agent_version: int | None = None
    # open: the session may still be attached to; closed: it ended (a retry makes a new one)
    state: str = "open"
    stop_reason: str | None = None
    error: str | None = None
    usage: dict[str, Any] | None = None
    list_cost_cents: int | None = None
    budget_reached: bool = False
    created_at: float
    updated_at: float


class ToolCallRecord(BaseModel):
    """One `agent.custom_tool_use`, claimed before its handler runs and answered at most once."""

    session_id: str
    event_id: str
    name: str
    # started: the handler was (or is being) run, no result stored yet; answered: result stored
    state: str
    result: str | None = None
    is_error: bool = False
    started_at: float
    answered_at: float | None = None


class PullReviewState(BaseModel):
    """What prmedic remembers about its reviews of one pull request (for incremental re-reviews)."""

    repo: str
    pr_number: int
    # The last head commit whose review finished (None until one does).
    head_sha: str | None = None
    job_id: int | None = None
    # The review whose body is the PR's one prmedic summary, updated on later runs.
    summary_review_id: int | None = None
    summary_review_url: str | None = None
    summary_event: str | None = None
    # The check run conclusion of the last finished review, carried to a new head that needs no review.
    conclusion: str | None = None
    # path → blob sha at `head_sha`, to tell which files changed since that review.
    file_shas: dict[str, str] = Field(default_factory=dict)
    # Fingerprints of the inline findings posted so far (never posted twice).
    fingerprints: list[str] = Field(default_factory=list)
    # One line per posted finding ("path:line [severity] first sentence"), newest last, for the brief.
    findings: list[str] = Field(default_factory=list)
    updated_at: float = 0.0


class FixProposal(BaseModel):
    """A fix prmedic delivered for a pull request, and what its CI said about it."""

    id: int = 0
    repo: str
    pr_number: int
    # The PR head the attempts count against (the first failing head, carried through follow-ups).
    root_sha: str
    base_sha: str  # the commit the patch was applied to
    fix_sha: str | None = None  # the commit prmedic made (None when offered as suggestions or a patch)
    branch: str | None = None  # where fix_sha was pushed
    delivery: str  # pull_request | push | suggestions | patch_comment | awaiting_approval (nothing delivered yet)
    url: str | None = None
    job_id: int | None = None
    # pending: its CI has not finished; succeeded / failed: it has; offered: nothing to watch (fork PRs);
    # awaiting_approval: a person decides (`fix.approval`); discarded / stale: they decided nothing lands
    outcome: str = "pending"
    created_at: float = 0.0
    resolved_at: float | None = None
