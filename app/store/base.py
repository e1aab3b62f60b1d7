"""The store interface: every backend (SQLite, PostgreSQL) implements it.

A backend imports this module and `app.store.models`, never the package's face (`app.store`),
which imports the backends (docs/architecture.md, "The store")."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from app.store.models import (
    Delivery,
    Installation,
    InstallationChange,
    FixProposal,
    Job,
    JobState,
    NewJob,
    PullReviewState,
    RecordResult,
    SessionRecord,
    ToolCallRecord,
)


log = logging.getLogger("prmedic.store")

StopListener = Callable[[Mapping[int, JobState]], None]


class StoreUnavailable(Exception):
    """The store could not be reached or written; the caller must not acknowledge."""


class SchemaTooNew(StoreUnavailable):
    """The database was upgraded by a newer prmedic: this one must not write to it."""

    def __init__(self, found: int, known: int) -> None:
        self.found, self.known = found, known
        super().__init__(f"the database's schema is version {found}, but this prmedic knows versions up to {known}: "
                         "a newer prmedic upgraded it; run that version (or newer) against this database")


# Meta keys that belong to one job end in `:job:<id>` (`check_run:job:12`): `prune` deletes them with the job.
JOB_META_MARK = ":job:"


class Store(abc.ABC):
    def __init__(self) -> None:
        # Set whenever jobs are recorded, so an in-process worker wakes at once.
        self.jobs_recorded = asyncio.Event()
        self._stop_listeners: list[StopListener] = []

    def on_jobs_stopped(self, listener: StopListener) -> Callable[[], None]:
        """Call `listener({job_id: state})` whenever running jobs are superseded or cancelled through
        this store object, so a worker of this process stops them at once; returns the unsubscriber.
        (Other processes learn it from their poll: `held_states`.)"""
        self._stop_listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._stop_listeners:
                self._stop_listeners.remove(listener)

        return unsubscribe

    def announce_stopped(self, stopped: Mapping[int, JobState]) -> None:
        """Tell this process's workers that these running jobs were stopped (superseded, cancelled).
        The store calls it on every such change it makes; a session runner that finds its job
        stopped before its worker heard of it (a change made by another process) calls it too."""
        if not stopped:
            return
        for listener in list(self._stop_listeners):
            try:
                listener(stopped)
            except Exception:  # noqa: BLE001 - one listener's bug must not fail the commit's caller
                log.exception("a stop listener failed")

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable if the store cannot answer."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """What this store is, for /healthz and `prmedic doctor`: backend, schema version, pool (no secrets)."""

    @abc.abstractmethod
    def exclusive(self, name: str) -> contextlib.AbstractAsyncContextManager[None]:
        """A lock named `name` held across every process on this store (one-time work such as syncing the
        agents: two replicas starting at once run it one after the other, never together)."""

    @abc.abstractmethod
    async def prune(self, older_than_seconds: float) -> dict[str, int]:
        """Delete what is older than the age and no longer needed: finished jobs with their sessions, tool
        calls, fix attempts and per-job meta rows (`JOB_META_MARK`), and deliveries no unfinished job came
        from. Never touches a queued or running job. Returns table → rows deleted."""

    # -- intake -------------------------------------------------------------
    @abc.abstractmethod
    async def record_delivery(
        self,
        delivery: Delivery,
        jobs: Sequence[NewJob] = (),
        installations: Sequence[InstallationChange] = (),
        *,
        max_attempts: int = 3,
    ) -> RecordResult:
        """Commit the delivery, its jobs and installation changes durably, once per delivery id.

        A new job supersedes, at once, the unfinished jobs with its supersede key, except a running
        one on the same head when its kind is `one_per_head` (the new job waits for it instead).
        """

    # -- worker -------------------------------------------------------------
    @abc.abstractmethod
    async def claim_jobs(self, owner: str, limit: int, lease_seconds: float) -> list[Job]:
        """Lease up to `limit` runnable jobs: queued and due, or running with an expired lease.

        The supersede rule of `record_delivery` holds here too: a job with a newer sibling that
        supersedes it is never handed out, and a `one_per_head` job is not handed out while an
        older sibling on the same head is running. Claiming counts an attempt.
        """

    @abc.abstractmethod
    async def renew_lease(self, job_id: int, owner: str, lease_seconds: float) -> JobState | None:
        """Extend the lease; return the job's state, or None if `owner` no longer holds it."""

    @abc.abstractmethod
    async def finish_job(
        self,
        job_id: int,
        owner: str,
        state: JobState,
        *,
        error: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> bool:
        """Record the outcome if `owner` still holds the lease; return whether it did."""

    @abc.abstractmethod
    async def retry_job(self, job_id: int, owner: str, error: str, run_after: float) -> bool: ...

    @abc.abstractmethod
    async def release_job(self, job_id: int, owner: str) -> bool:
        """Give a running job back without spending its attempt (a graceful shutdown): the next
        worker takes it up at once and resumes its session."""

    @abc.abstractmethod
    async def held_states(self, job_ids: Sequence[int], owner: str) -> dict[int, JobState | None]:
        """The state of each job, or None where `owner` no longer holds its lease (a cheap read)."""

    @abc.abstractmethod
    async def expire_lease(self, job_id: int, owner: str) -> bool:
        """End `owner`'s lease now (it is known to be dead), so the job is taken up at once."""

    @abc.abstractmethod
    async def request_cancel(self, job_id: int, state: JobState = JobState.cancelled) -> bool:
        """Mark an unfinished job cancelled (or superseded); a worker of this process stops it at once,
        one of another process at its next poll."""

    # -- reading ------------------------------------------------------------
    @abc.abstractmethod
    async def get_job(self, job_id: int) -> Job | None: ...

    @abc.abstractmethod
    async def list_jobs(
        self, *, limit: int = 50, states: Sequence[JobState] | None = None, repo: str | None = None,
        pr_number: int | None = None, kind: str | None = None,
    ) -> list[Job]: ...

    @abc.abstractmethod
    async def count_jobs_by_state(self) -> dict[tuple[str, str], int]:
        """(kind, state) → number of jobs."""

    @abc.abstractmethod
    async def get_installation(self, installation_id: int) -> Installation | None: ...

    @abc.abstractmethod
    async def list_installations(self) -> list[Installation]: ...

    @abc.abstractmethod
    async def get_meta(self, key: str) -> str | None: ...

    @abc.abstractmethod
    async def set_meta(self, key: str, value: str) -> None: ...

    # -- agent sessions (app/sessions) ----------------------------------------
    @abc.abstractmethod
    async def record_session(
        self, job_id: int, session_id: str, *, agent_id: str | None = None, agent_version: int | None = None
    ) -> SessionRecord:
        """Remember that `session_id` runs `job_id` (durably, before the task is sent)."""

    @abc.abstractmethod
    async def get_open_session(self, job_id: int) -> SessionRecord | None:
        """The job's session that has not been closed yet, if any (a restarted worker resumes it)."""

    @abc.abstractmethod
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
        """Mark the session ended: a retry of its job creates a new one."""

    @abc.abstractmethod
    async def list_sessions(self, job_id: int) -> list[SessionRecord]: ...

    @abc.abstractmethod
    async def claim_tool_call(self, session_id: str, event_id: str, name: str) -> tuple[ToolCallRecord, bool]:
        """Claim a custom tool call before running it: (record, True) if this call claimed it,
        (the existing record, False) if it was claimed before (maybe by a process that died)."""

    @abc.abstractmethod
    async def answer_tool_call(self, event_id: str, result: str, is_error: bool) -> ToolCallRecord:
        """Store the result of a claimed tool call (before it is sent to the session)."""

    @abc.abstractmethod
    async def get_tool_call(self, event_id: str) -> ToolCallRecord | None: ...

    @abc.abstractmethod
    async def list_tool_calls(self, session_id: str) -> list[ToolCallRecord]: ...

    # -- pull request reviews (app/pipelines/review) --------------------------------
    @abc.abstractmethod
    async def get_pull_review(self, repo: str, pr_number: int) -> PullReviewState | None:
        """What prmedic remembers of its reviews of this pull request, if anything."""

    @abc.abstractmethod
    async def save_pull_review(self, state: PullReviewState) -> None:
        """Replace the remembered state of `state.repo`#`state.pr_number` (durably)."""

    # -- fixes (app/pipelines/fix) ------------------------------------------------
    @abc.abstractmethod
    async def claim_fix_attempt(self, repo: str, pr_number: int, root_sha: str, job_id: int,
                                limit: int) -> tuple[bool, int]:
        """Count `job_id` as an attempt on (repo, pr, root_sha) unless `limit` attempts were made:
        (allowed, attempts so far including this one). A job claiming again is allowed, not recounted."""

    @abc.abstractmethod
    async def record_fix_proposal(self, proposal: FixProposal) -> FixProposal:
        """Store a delivered fix (its id and created_at are assigned)."""

    @abc.abstractmethod
    async def find_fix_proposal(self, repo: str, *, fix_sha: str | None = None, branch: str | None = None,
                                pr_number: int | None = None, outcome: str | None = None) -> FixProposal | None:
        """The newest fix that made commit `fix_sha` (or, failing that, was pushed to `branch`); with
        neither, the newest of the repository. `pr_number` and `outcome` narrow every look-up (the
        newest fix of a PR awaiting approval: `pr_number=7, outcome="awaiting_approval"`)."""

    @abc.abstractmethod
    async def get_fix_proposal(self, proposal_id: int) -> FixProposal | None:
        """The fix recorded under `proposal_id`, or None."""

    @abc.abstractmethod
    async def decide_fix_proposal(self, proposal_id: int, outcome: str, *, delivery: str | None = None,
                                  url: str | None = None) -> bool:
        """Record a person's decision on a fix awaiting approval, once: compare-and-set from
        `awaiting_approval` to `outcome` (with `delivery` and `url` when given; `resolved_at` is set
        unless the outcome is `pending`, a fix now delivered whose CI is still to come). False when
        the fix was not awaiting approval (decided before, or never waiting)."""

    @abc.abstractmethod
    async def resolve_fix_proposal(self, proposal_id: int, outcome: str) -> bool:
        """Record a pending fix's CI outcome (succeeded / failed); False if it was resolved before."""

    @abc.abstractmethod
    async def fix_outcome_counts(self) -> dict[str, int]:
        """outcome → number of fixes."""
