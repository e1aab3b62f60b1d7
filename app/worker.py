"""The worker: leases jobs from the store and runs their pipelines, surviving restarts.

A job is leased, not taken: while it runs, its lease is renewed; if the worker dies, the
lease expires and another worker (or this one, restarted) takes the job up again. A newer
job with the same supersede key, or a cancel request, stops a running job: at once when it
was recorded through this process's store, else at the worker's next poll. A worker that is
stopped (SIGTERM) gives its jobs back without spending their attempts, and leaves their
agent sessions running for the next worker to resume.

The worker knows pipelines only as the callables of its table; what a kind does when its job is
given up (completing the check run it left open) comes in through `on_give_up`, wired by
`app.runtime`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from app.errors import describe, is_transient, will_retry
from app.logs import job_id_var
from app.metrics import Metrics
from app.pipelines import JobContext, Pipeline
from app.store import Job, JobState, Store, StoreUnavailable

log = logging.getLogger("prmedic.worker")

MAX_RETRY_DELAY = 15 * 60

GiveUp = Callable[[JobContext, BaseException], Awaitable[Any]]


def retry_backoff(attempt: int, base: float) -> float:
    """Seconds to wait before attempt `attempt + 1`: base·2^(attempt-1), capped at 15 min, with
    "equal jitter" (between half and all of it), so that jobs failed by one outage come back spread
    out and never within seconds of each other."""
    delay = min(base * 2 ** max(attempt - 1, 0), MAX_RETRY_DELAY)
    return random.uniform(delay / 2, delay)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Worker:
    def __init__(
        self,
        store: Store,
        pipelines: Mapping[str, Pipeline],
        *,
        concurrency: int = 8,
        lease_seconds: float = 60.0,
        retry_base_seconds: float = 10.0,
        poll_seconds: float = 2.0,
        metrics: Metrics | None = None,
        context_factory: Callable[[Job], JobContext] | None = None,
        bot_login: str | None = None,
        on_give_up: GiveUp | None = None,
        retention_seconds: float = 0.0,
        retention_interval_seconds: float = 3600.0,
    ) -> None:
        """`on_give_up(ctx, exc)`: called (bounded by half a lease) before a job is marked failed.
        `retention_seconds`: while running, prune what is older from the store every
        `retention_interval_seconds` (0: keep everything)."""
        self.store = store
        self.pipelines = dict(pipelines)
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.retry_base_seconds = retry_base_seconds
        self.poll_seconds = poll_seconds
        self.metrics = metrics or Metrics()
        self.context_factory = context_factory or (lambda job: JobContext(job=job, store=store))
        self.bot_login = bot_login
        self.on_give_up = on_give_up
        self.retention_seconds = retention_seconds
        self.retention_interval_seconds = retention_interval_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.running: dict[int, asyncio.Task[None]] = {}
        self._work: dict[int, asyncio.Task[Any]] = {}  # job id → its pipeline
        self._stops: dict[int, JobState] = {}  # job id → why its pipeline was cancelled
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        log.info("worker %s started (concurrency %d)", self.owner, self.concurrency)
        unsubscribe = self.store.on_jobs_stopped(self._on_jobs_stopped)
        sweeps = asyncio.create_task(self._retention_sweeps(), name="retention") if self.retention_seconds else None
        try:
            await self.reclaim_dead_leases()
            while not self._stopping.is_set():
                await self._check_running()
                free = self.concurrency - len(self.running)
                jobs: list[Job] = []
                if free > 0:
                    self.store.jobs_recorded.clear()
                    try:
                        jobs = await self.store.claim_jobs(self.owner, free, self.lease_seconds)
                    except StoreUnavailable as exc:
                        log.error("cannot claim jobs: %s", exc)
                if self._stopping.is_set():
                    await self._release(job.id for job in jobs)
                    break
                for job in jobs:
                    self._start(job)
                if jobs and len(jobs) == free:
                    await self._wait_for_slot()
                elif not jobs:
                    await self._wait_for_work()
        finally:
            unsubscribe()
            if sweeps is not None:
                sweeps.cancel()
        log.info("worker %s stopping", self.owner)

    async def _retention_sweeps(self) -> None:
        while True:
            try:
                await self.sweep_retention()
            except Exception:  # noqa: BLE001 - a bug in pruning must not end the sweeps (nor the worker)
                log.exception("retention: the sweep failed")
            await asyncio.sleep(self.retention_interval_seconds)

    async def sweep_retention(self) -> dict[str, int]:
        """Delete what the store no longer needs past the retention age (finished jobs, their sessions,
        old deliveries); logged with what was deleted."""
        try:
            counts = await self.store.prune(self.retention_seconds)
        except StoreUnavailable as exc:
            log.warning("retention: cannot prune the store: %s", exc)
            return {}
        deleted = ", ".join(f"{n} {table}" for table, n in counts.items() if n)
        log.log(logging.INFO if deleted else logging.DEBUG, "retention: deleted %s (older than %g days)",
                deleted or "nothing", self.retention_seconds / 86400)
        return counts

    def _start(self, job: Job) -> None:
        task = asyncio.create_task(self._run_job(job), name=f"job-{job.id}")
        self.running[job.id] = task
        task.add_done_callback(lambda _t: self.running.pop(job.id, None))

    async def reclaim_dead_leases(self) -> None:
        """Jobs leased by a process of this host that no longer exists are taken up at once,
        without waiting for their leases to expire (a restarted worker resumes its sessions)."""
        host = socket.gethostname()
        try:
            running = await self.store.list_jobs(limit=10_000, states=[JobState.running])
        except StoreUnavailable as exc:
            log.warning("cannot look for dead leases: %s", exc)
            return
        for job in running:
            owner_host, _, rest = (job.lease_owner or "").partition(":")
            pid = rest.partition(":")[0]
            if owner_host == host and pid.isdigit() and not _process_alive(int(pid)):
                if await self.store.expire_lease(job.id, job.lease_owner):
                    log.info("job %d: its worker (pid %s) is gone; taking it up again", job.id, pid)

    async def _wait_for_slot(self) -> None:
        if self.running:
            await asyncio.wait(list(self.running.values()), return_when=asyncio.FIRST_COMPLETED,
                               timeout=self.poll_seconds)

    async def _wait_for_work(self) -> None:
        waiters = [asyncio.ensure_future(self.store.jobs_recorded.wait()),
                   asyncio.ensure_future(self._stopping.wait())]
        try:
            await asyncio.wait(waiters, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming and give the running jobs back (a deploy, `docker stop`): their pipelines are
        cancelled at once (a tool call under way finishes first, for up to `grace` seconds), their
        agent sessions are left running, and their leases are released without spending an attempt,
        so the next worker takes them up at once and resumes the sessions."""
        self._stopping.set()
        tasks = dict(self.running)
        for task in tasks.values():
            task.cancel()
        if tasks:
            await asyncio.wait(list(tasks.values()), timeout=grace)
        # A job whose task is still running (a tool call outlasting `grace`) is not given back: the
        # next worker would run it beside this one. Its lease expires instead.
        ended = [job_id for job_id, task in tasks.items() if task.done()]
        await self._release(ended)
        if ended:
            log.info("worker %s: gave back %d running job(s) for the next worker", self.owner, len(ended))
        if len(ended) < len(tasks):
            log.warning("worker %s: %d job(s) still busy after %.0fs; their leases will expire", self.owner,
                        len(tasks) - len(ended), grace)

    async def _release(self, job_ids: Iterable[int]) -> None:
        for job_id in job_ids:
            try:
                await self.store.release_job(job_id, self.owner)
            except StoreUnavailable as exc:
                log.warning("job %d: cannot give it back (its lease will expire instead): %s", job_id, exc)

    async def run_until_idle(self, timeout: float = 30.0) -> None:
        """Run until nothing is runnable and nothing runs (for tests and one-shot use)."""
        deadline = time.monotonic() + timeout
        unsubscribe = self.store.on_jobs_stopped(self._on_jobs_stopped)
        try:
            while time.monotonic() < deadline:
                free = self.concurrency - len(self.running)
                jobs = await self.store.claim_jobs(self.owner, free, self.lease_seconds) if free > 0 else []
                for job in jobs:
                    self._start(job)
                if not jobs and not self.running:
                    return
                if self.running:
                    await asyncio.wait(list(self.running.values()), return_when=asyncio.FIRST_COMPLETED)
        finally:
            unsubscribe()
        raise TimeoutError("jobs still running")

    # -- stopping a job that was superseded or cancelled ----------------------------
    def _on_jobs_stopped(self, stopped: Mapping[int, JobState]) -> None:
        for job_id, state in stopped.items():
            self._stop_job(job_id, state)

    def _stop_job(self, job_id: int, state: JobState) -> None:
        work = self._work.get(job_id)
        if work is None or work.done() or job_id in self._stops:
            return
        log.info("job %d: %s while running; stopping it", job_id, state.value)
        self._stops[job_id] = state
        work.cancel()

    async def _check_running(self) -> None:
        """Stop the jobs superseded or cancelled through another process (one cheap read per poll)."""
        if not self._work:
            return
        try:
            states = await self.store.held_states(list(self._work), self.owner)
        except StoreUnavailable as exc:
            log.warning("cannot check the running jobs: %s", exc)
            return
        for job_id, state in states.items():
            if state is not JobState.running:
                self._stop_job(job_id, state or JobState.cancelled)

    # -- one job --------------------------------------------------------------
    async def _run_job(self, job: Job) -> None:
        token = job_id_var.set(job.id)
        started = time.monotonic()
        outcome = "error"
        try:
            outcome = await self._attempt(job)
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception:  # noqa: BLE001 - a bug in bookkeeping must not kill the worker
            log.exception("job %d: bookkeeping failed", job.id)
        finally:
            self.metrics.job_duration.labels(job.kind.value, outcome).observe(time.monotonic() - started)
            job_id_var.reset(token)

    async def _attempt(self, job: Job) -> str:
        pipeline = self.pipelines.get(job.kind.value)
        if pipeline is None:
            error = f"no pipeline for job kind {job.kind.value!r} in this version of prmedic"
            log.warning("job %d: %s", job.id, error)
            await self._finish(job, JobState.no_pipeline, error=error)
            return "no_pipeline"
        # Fix jobs carry no sender: CI results on the bot's own commits are what follow-ups are made of.
        if self.bot_login and job.payload.get("sender") == self.bot_login:
            await self._finish(job, JobState.skipped, error="caused by this App's own bot account")
            return "skipped"
        log.info("job %d: %s %s#%s attempt %d/%d", job.id, job.kind.value, job.repo, job.pr_number,
                 job.attempts, job.max_attempts)
        work = asyncio.create_task(pipeline(self.context_factory(job)))
        self._work[job.id] = work
        heartbeat = asyncio.create_task(self._heartbeat(job, work))
        try:
            result = await work
        except asyncio.CancelledError:
            stop = self._stops.get(job.id)
            if stop is None:
                raise  # the worker itself is stopping: `stop` gives the job back
            log.info("job %d: stopped (%s)", job.id, stop.value)
            self.metrics.jobs_finished.labels(job.kind.value, stop.value).inc()
            return stop.value
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job
            return await self._failed(job, exc)
        finally:
            heartbeat.cancel()
            self._work.pop(job.id, None)
            self._stops.pop(job.id, None)
        await self._finish(job, JobState.done, result=result or {})
        return "done"

    async def _heartbeat(self, job: Job, work: asyncio.Task[Any]) -> None:
        """Renew the lease until the work ends; stop the work if the job was superseded or cancelled."""
        interval = max(self.lease_seconds / 3, 0.5)
        while not work.done():
            await asyncio.sleep(interval)
            try:
                state = await self.store.renew_lease(job.id, self.owner, self.lease_seconds)
            except StoreUnavailable as exc:
                log.warning("job %d: cannot renew lease: %s", job.id, exc)
                continue
            if state is not JobState.running:
                if state is None:
                    log.info("job %d: lease lost", job.id)
                self._stop_job(job.id, state or JobState.cancelled)
                return

    async def _failed(self, job: Job, exc: Exception) -> str:
        error = describe(exc)
        if will_retry(job.attempts, job.max_attempts, exc):
            delay = retry_backoff(job.attempts, self.retry_base_seconds)
            log.warning("job %d: transient failure (%s); retry %d in %.0fs", job.id, error, job.attempts + 1, delay)
            await self.store.retry_job(job.id, self.owner, error, time.time() + delay)
            return "retry"
        if is_transient(exc):
            error = f"gave up after {job.attempts} attempts: {error}"
        log.error("job %d failed: %s", job.id, error, exc_info=not is_transient(exc))
        # The check run the job opened is completed before the job is marked failed, so nothing the
        # job started stays `in_progress`; bounded, so the lease (no longer renewed) still holds.
        if self.on_give_up is not None:
            try:
                await asyncio.wait_for(self.on_give_up(self.context_factory(job), exc), self.lease_seconds / 2)
            except asyncio.TimeoutError:
                log.warning("job %d: completing its check run took too long; left to a re-run", job.id)
        await self._finish(job, JobState.failed, error=error)
        return "failed"

    async def _finish(self, job: Job, state: JobState, *, error: str | None = None,
                      result: dict[str, Any] | None = None) -> None:
        if await self.store.finish_job(job.id, self.owner, state, error=error, result=result):
            self.metrics.jobs_finished.labels(job.kind.value, state.value).inc()
        else:
            log.info("job %d: finished as %s, but the lease had moved on", job.id, state.value)
