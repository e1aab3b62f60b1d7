"""One job, inline: the engine of `prmedic run` (and of a GitHub Action run).

settings → the services a worker has (a store, GitHub, the agent sessions), without a server, a
worker or a queue (`open_parts`) → the pull request read and the job made as routing would make
it (`prepare_job`) → the job recorded and leased in the store, run through its pipeline from
`app.runtime.PIPELINES` with the same custom tools and rules, and finished (`run_job`) →
`RunResult` (conclusion, links, cost, exit status).

The store is a throw-away SQLite file (deleted after the run) unless PRMEDIC_DATABASE_URL names
one: then the run is on record there (`prmedic jobs`), and a later run of the same pull request
reviews incrementally. A run's job has one attempt (no retry: run it again), so a worker sharing
that store never takes it up, not even after a crash; its lease is renewed while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anthropic

from app.errors import describe
from app.metrics import Metrics
from app.oneshot.answers import FakeWrites
from app.oneshot.commands import CLI_SOURCE, command_payload, terminal_command_pipeline
from app.oneshot.display import Display
from app.oneshot.github import (TOKEN_INSTALLATION, AppGitHub, RunGitHub, TokenGitHub, WriteLog, find_installation,
                                mountable, read_or_explain, token_login)
from app.oneshot.reference import RunRequest
from app.oneshot.report import ToolInputs
from app.oneshot.result import RunResult, UsageError, run_result
from app.oneshot.settings import RunSettings
from app.pipelines import JobContext, Pipeline
from app.pipelines.checks import close_abandoned_check_run
from app.pipelines.fix.pipeline import run_fix
from app.routing.fields import pull_request_fields, repository_fields
from app.runtime import PIPELINES, opened_store
from app.sessions import SessionRuntime, SessionSettings
from app.store import Delivery, Job, JobKind, JobState, NewJob, Store

SHARED_STORE_BUSY = ("the store at PRMEDIC_DATABASE_URL has jobs waiting for a worker (or its worker took this "
                     "run's job): run `prmedic run` on a store of its own (unset PRMEDIC_DATABASE_URL), or let that "
                     "worker catch up")
STOP_GRACE = 20.0  # seconds a stopped run waits for its pipeline to close its check run and session


@dataclass
class Parts:
    """What one run works with: a worker's services, for one job."""

    settings: RunSettings  # with this run's GitHub API and web URLs
    store: Store
    github: RunGitHub
    writes: WriteLog
    display: Display
    metrics: Metrics
    inputs: ToolInputs
    anthropic: anthropic.AsyncAnthropic | None = None
    sessions: SessionRuntime | None = None
    bot_login: str | None = None
    pipelines: Mapping[str, Pipeline] = field(default_factory=lambda: PIPELINES)

    @property
    def dry_run(self) -> bool:
        return self.writes.dry_run

    @property
    def credential(self) -> str:
        return "token" if isinstance(self.github, TokenGitHub) else "App"

    def job_context(self, job: Job) -> JobContext:
        # `github` and `settings` offer what the pipelines use of `GitHubApp` and `Settings`.
        return JobContext(job=job, store=self.store, github=self.github, settings=self.settings,  # type: ignore
                          sessions=self.sessions, anthropic=self.anthropic, metrics=self.metrics,
                          bot_login=self.bot_login, simulated_writes=self.dry_run, can_wait_for_approval=False)

    def pipeline_for(self, job: Job) -> Pipeline:
        """The job kind's pipeline; a command `prmedic run` made (no comment) answers on the terminal."""
        if job.kind is JobKind.command and job.payload.get("source") == CLI_SOURCE:
            return terminal_command_pipeline(self.pipelines["review"], run_fix, self.display)
        return self.pipelines[job.kind.value]


@contextlib.asynccontextmanager
async def _store(settings: RunSettings) -> AsyncIterator[Store]:
    """`PRMEDIC_DATABASE_URL`'s store, else a throw-away one deleted after the run."""
    with contextlib.ExitStack() as stack:
        url = settings.database_url
        if url is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="prmedic-run-", ignore_cleanup_errors=True))
            url = f"sqlite:///{os.path.join(folder, 'prmedic.db')}"
        async with opened_store(url) as store:
            yield store


@contextlib.asynccontextmanager
async def open_parts(settings: RunSettings, *, dry_run: bool, display: Display, api_url: str | None = None,
                     web_url: str | None = None, client: anthropic.AsyncAnthropic | None = None,
                     pipelines: Mapping[str, Pipeline] | None = None) -> AsyncIterator[Parts]:
    """The run's services (closed, and a throw-away store deleted, on the way out). `client`: an
    Anthropic client of the caller's (else one from the environment: ANTHROPIC_API_KEY)."""
    auth = settings.auth
    settings = settings.model_copy(update={"github_api_url": (api_url or settings.github_api_url).rstrip("/"),
                                           "github_web_url": (web_url or settings.github_web_url).rstrip("/")})
    metrics = Metrics()
    writes = WriteLog(dry_run=dry_run, token_run=auth == "token", note=display.note,
                      fake=FakeWrites(web_url=settings.github_web_url, api_url=settings.github_api_url))
    github: RunGitHub
    if auth == "app":
        github = AppGitHub(writes=writes, app_id=settings.app_id, private_key=settings.private_key_pem,
                           base_url=settings.github_api_url, max_retry_wait=settings.github_max_retry_wait_seconds,
                           metrics=metrics)
    else:
        assert settings.github_token is not None
        github = TokenGitHub(settings.github_token.get_secret_value().strip(), base_url=settings.github_api_url,
                             writes=writes, max_retry_wait=settings.github_max_retry_wait_seconds, metrics=metrics)
    inputs = ToolInputs()
    own_client = client is None
    client = client or anthropic.AsyncAnthropic()

    def on_event(session_id: str, ev: Any) -> None:
        inputs.see(ev)
        display.event(session_id, ev)

    async with _store(settings) as store:
        sessions = SessionRuntime(client, store, settings=SessionSettings.from_settings(settings), github_app=github,
                                  on_event=on_event)
        parts = Parts(settings, store, github, writes, display, metrics, inputs, client, sessions,
                      pipelines=pipelines or PIPELINES)
        try:
            yield parts
        finally:
            await sessions.aclose()
            if own_client:
                await client.close()
            await github.close()


async def _bot_login(parts: Parts) -> str | None:
    """The App's bot login (`<slug>[bot]`): from PRMEDIC_APP_SLUG, else `GET /app`; best effort."""
    if parts.settings.bot_login or not isinstance(parts.github, AppGitHub):
        return parts.settings.bot_login
    try:
        return f"{(await parts.github.app_client().getitem('/app'))['slug']}[bot]"
    except Exception:  # noqa: BLE001 - only used to recognise its own earlier comments
        return None


async def _who(parts: Parts) -> str:
    """Whom the texts name as asking: the workflow's actor, the token's user, or the App's bot."""
    login = os.environ.get("GITHUB_ACTOR")
    if not login and isinstance(parts.github, TokenGitHub):
        login = await token_login(parts.github)
    return login or parts.bot_login or "prmedic[bot]"


async def prepare_job(parts: Parts, request: RunRequest) -> NewJob:
    """Read the repository and the pull request, check the session may mount the repository with
    these credentials (before any session), and make the job as routing would."""
    ref = request.pr
    installation = TOKEN_INSTALLATION
    if isinstance(parts.github, AppGitHub):
        installation = await find_installation(parts.github, ref.repo)
        parts.bot_login = await _bot_login(parts)
    gh = await parts.github.installation_client(installation)
    repo = await read_or_explain(gh, f"/repos/{ref.repo}", f"{ref.repo}: no such repository", parts.credential)
    mountable(parts.github, repo)
    pr = pull_request_fields(await read_or_explain(gh, f"/repos/{repo['full_name']}/pulls/{ref.number}",
                                                   f"{ref}: no such pull request", parts.credential))
    repository = repository_fields(repo)
    common = dict(repo=repo["full_name"], installation_id=installation, pr_number=pr["number"],
                  head_sha=pr["head_sha"])
    if request.action == "review":
        # `force`: the config's skips (drafts, authors, labels…) are for automatic reviews, as for `/review`.
        payload = {"trigger": "manual", "force": True, "repository": repository, "pull_request": pr, "sender": None}
        return NewJob(kind=JobKind.review, payload=payload, **common)
    user = await _who(parts)
    parts.writes.fake.login = user
    payload = command_payload(request.action, request.args, repository=repository, pr_author=pr.get("author"),
                              user=user)
    return NewJob(kind=JobKind.command, payload=payload, **common)


async def _claim(store: Store, job_id: int, owner: str, lease: float) -> Job:
    """Lease the run's own job (in a shared store, another job may be due first: given back)."""
    for job in await store.claim_jobs(owner, 1, lease):
        if job.id == job_id:
            return job
        await store.release_job(job.id, owner)
    await store.request_cancel(job_id)
    raise UsageError(SHARED_STORE_BUSY)


async def _heartbeat(store: Store, job_id: int, owner: str, lease: float) -> None:
    while True:
        await asyncio.sleep(max(lease / 3, 0.5))
        with contextlib.suppress(Exception):
            await store.renew_lease(job_id, owner, lease)


async def run_job(parts: Parts, new_job: NewJob) -> RunResult:
    """Record `new_job`, lease it, run its pipeline to the end, finish it; its `RunResult`.

    Interrupted (Ctrl-C), the job is marked cancelled first, so its session is interrupted (not left
    running for a next worker) and its check run ends `cancelled`."""
    store, lease = parts.store, parts.settings.job_lease_seconds
    delivery = Delivery(delivery_id=f"prmedic-run-{uuid.uuid4().hex}", event="prmedic-run",
                        action=new_job.kind.value, received_at=time.time())
    recorded = await store.record_delivery(delivery, [new_job], max_attempts=1)
    (job_id,) = recorded.job_ids
    owner = f"{socket.gethostname()}:{os.getpid()}:run-{uuid.uuid4().hex[:8]}"
    job = await _claim(store, job_id, owner, lease)
    ctx = parts.job_context(job)
    work = asyncio.create_task(parts.pipeline_for(job)(ctx), name=f"run-job-{job_id}")
    heartbeat = asyncio.create_task(_heartbeat(store, job_id, owner, lease))
    try:
        await asyncio.wait([work])
    except asyncio.CancelledError:
        await asyncio.shield(_stop(store, job_id, work))
        raise
    finally:
        heartbeat.cancel()
    kind = job.kind.value
    try:
        result = work.result()
    except asyncio.CancelledError:
        return run_result(kind, None, job_id=job_id, cancelled=True)
    except Exception as exc:  # noqa: BLE001 - the run's outcome, in words
        error = describe(exc)
        parts.display.step(f"failed: {error}")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(close_abandoned_check_run(ctx, exc), lease / 2)
        await store.finish_job(job_id, owner, JobState.failed, error=error)
        return run_result(kind, None, job_id=job_id, error=error)
    await store.finish_job(job_id, owner, JobState.done, result=result or {})
    return run_result(kind, result, job_id=job_id)


async def _stop(store: Store, job_id: int, work: asyncio.Task[Any]) -> None:
    with contextlib.suppress(Exception):
        await store.request_cancel(job_id)
    work.cancel()
    await asyncio.wait([work], timeout=STOP_GRACE)
