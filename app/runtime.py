"""Wiring: the services one process runs (`prmedic serve`, `prmedic worker`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import anthropic
from aiohttp import web

from app.errors import describe
from app.github import GitHubApp
from app.metrics import Metrics
from app.pipelines import JobContext, Pipeline
from app.pipelines.checks import close_abandoned_check_run
from app.pipelines.commands import make_command_pipeline
from app.pipelines.fix.pipeline import fix_pipeline, run_fix
from app.pipelines.review.pipeline import review_pipeline
from app.server import create_app
from app.sessions import SessionRuntime, SessionSettings
from app.settings import Settings
from app.store import Job, Store, open_store
from app.worker import Worker

log = logging.getLogger("prmedic")

# The pipelines this version ships, by job kind. A kind missing here is marked `no_pipeline`, visibly.
PIPELINES: dict[str, Pipeline] = {"fix": fix_pipeline, "review": review_pipeline,
                                  "command": make_command_pipeline(review_pipeline, run_fix)}


@dataclass
class Services:
    settings: Settings
    store: Store
    github: GitHubApp
    metrics: Metrics
    bot_login: str | None

    sessions: SessionRuntime | None = None
    anthropic: anthropic.AsyncAnthropic | None = None

    def job_context(self, job: Job) -> JobContext:
        return JobContext(job=job, store=self.store, github=self.github, settings=self.settings,
                          sessions=self.sessions, anthropic=self.anthropic, metrics=self.metrics,
                          bot_login=self.bot_login)

    def worker(self, pipelines: Mapping[str, Pipeline] | None = None) -> Worker:
        s = self.settings
        return Worker(
            self.store,
            PIPELINES if pipelines is None else pipelines,
            concurrency=s.worker_concurrency,
            lease_seconds=s.job_lease_seconds,
            retry_base_seconds=s.job_retry_base_seconds,
            poll_seconds=s.worker_poll_seconds,
            metrics=self.metrics,
            context_factory=self.job_context,
            bot_login=self.bot_login,
            on_give_up=close_abandoned_check_run,
        )


@contextlib.asynccontextmanager
async def services(settings: Settings) -> AsyncIterator[Services]:
    store = open_store(settings.database_url)
    await store.open()
    metrics = Metrics()
    github = GitHubApp(app_id=settings.app_id, private_key=settings.private_key_pem,
                       base_url=settings.github_api_url, max_retry_wait=settings.github_max_retry_wait_seconds,
                       metrics=metrics)
    slug = settings.app_slug or await store.get_meta("app_slug")
    svc = Services(settings, store, github, metrics, f"{slug}[bot]" if slug else None)
    if os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN"):
        svc.anthropic = anthropic.AsyncAnthropic()
        svc.sessions = SessionRuntime(svc.anthropic, store, settings=SessionSettings.from_settings(settings),
                                      github_app=github)
    else:
        log.warning("ANTHROPIC_API_KEY is not set: jobs that need agents will fail until it is")
    try:
        yield svc
    finally:
        if svc.sessions is not None:
            await svc.sessions.aclose()
        if svc.anthropic is not None:
            await svc.anthropic.close()
        await github.close()
        await store.close()


def freeze_startup_objects() -> None:
    """Keep the objects of start-up (modules, SDK types) out of every later garbage collection.

    Without this, each full collection walks hundreds of thousands of import-time objects
    and stalls the event loop for tens of milliseconds: the webhook p99 doubles.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 50)


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def learn_app_slug(svc: Services) -> None:
    """Find the App's bot login once (GET /app), so its own events are ignored even unconfigured."""
    if svc.bot_login:
        return
    try:
        app_info = await svc.github.app_client().getitem("/app")
    except Exception as exc:  # noqa: BLE001 - a best effort; `prmedic doctor` reports it properly
        log.warning("could not read the App's slug from GitHub (%s); set PRMEDIC_APP_SLUG", describe(exc))
        return
    await svc.store.set_meta("app_slug", app_info["slug"])
    svc.bot_login = f"{app_info['slug']}[bot]"


async def serve(settings: Settings, *, with_worker: bool = True, pipelines: Mapping[str, Pipeline] | None = None,
                ready: asyncio.Event | None = None) -> None:
    async with services(settings) as svc:
        app = create_app(settings, svc.store, svc.metrics, identity=svc)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port, backlog=1024)
        await site.start()
        log.info("prmedic listening on http://%s:%d (worker %s)", settings.host, settings.port,
                 "on" if with_worker else "off")
        worker_task = None
        if with_worker:
            worker = svc.worker(pipelines)
            worker_task = asyncio.create_task(worker.run())
            asyncio.create_task(learn_app_slug(svc))
        freeze_startup_objects()
        if ready is not None:
            ready.set()
        try:
            await _wait_for_signal()
        finally:
            # The worker first: it stops claiming and gives its jobs back for the next process at once.
            log.info("shutting down")
            if worker_task is not None:
                await worker.stop()
                await worker_task
            await runner.cleanup()


async def work(settings: Settings, *, pipelines: Mapping[str, Pipeline] | None = None) -> None:
    async with services(settings) as svc:
        worker = svc.worker(pipelines)
        task = asyncio.create_task(worker.run())
        asyncio.create_task(learn_app_slug(svc))
        try:
            await _wait_for_signal()
        finally:
            await worker.stop()
            await task
