"""The webhook server: verify, route, record durably, answer (docs/architecture.md, "The flow").
Nothing slow here."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from types import SimpleNamespace
from typing import Any

import orjson
from aiohttp import web
from gidgethub import ValidationFailure, sansio

from app.logs import delivery_id_var
from app.metrics import Metrics
from app.routing import Intake, route
from app.routing.envelope import PayloadError, decode_payload
from app.settings import Settings
from app.store import Delivery, Store, StoreUnavailable

log = logging.getLogger("prmedic.server")

WEBHOOK_PATH = "/api/github/webhooks"
MAX_BODY_BYTES = 25 * 1024 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"
ACCEPTED_TYPES = ("application/json", FORM_TYPE)

STORE_KEY = web.AppKey("store", Store)
METRICS_KEY = web.AppKey("metrics", Metrics)
SETTINGS_KEY = web.AppKey("settings", Settings)


def _answer(http_status: int, **body: Any) -> web.Response:
    return web.Response(status=http_status, body=orjson.dumps(body), content_type="application/json")


def parse_body(content_type: str, body: bytes) -> dict[str, Any]:
    """The routed fields of the payload, from a JSON body or GitHub's form encoding (`payload=<json>`)."""
    if content_type == FORM_TYPE:
        try:
            body = urllib.parse.parse_qs(body.decode("utf-8"), strict_parsing=True)["payload"][0].encode("utf-8")
        except (ValueError, KeyError):  # UnicodeDecodeError is a ValueError
            raise PayloadError("the form body has no `payload` field holding the JSON payload") from None
    return decode_payload(body)


def _valid_header(value: str | None, max_length: int) -> bool:
    # aiohttp passes bytes that are not UTF-8 through as surrogates, which SQLite and the metrics refuse.
    return bool(value) and len(value) <= max_length and value.isascii() and value.isprintable()


def _event_label(event: str, action: str | None) -> str:
    return f"{event}.{action}" if action else event


class WebhookHandler:
    def __init__(self, settings: Settings, store: Store, metrics: Metrics, identity: Any) -> None:
        self.secret = settings.webhook_secret.get_secret_value()
        self.settings = settings
        self.store = store
        self.metrics = metrics
        # Anything with a `bot_login` attribute: the runtime fills it in once it learns the App's slug.
        self.identity = identity
        self._counters: dict[tuple[str, str], Any] = {}

    def _count(self, event: str, status: str) -> Any:
        counter = self._counters.get((event, status))
        if counter is None:
            counter = self._counters[(event, status)] = self.metrics.webhooks.labels(event, status)
        return counter

    def reject(self, event: str, status: int, error: str) -> web.Response:
        self._count(event, str(status)).inc()
        log.info("webhook refused: %s", error, extra={"status": status, "event": event})
        return _answer(status, error=error)

    async def __call__(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return self.reject("unverified", 413, f"body is over {MAX_BODY_BYTES} bytes")
        # A wrong content type or a missing signature is refused before the body is read.
        refused = self._refuse_early(request.content_type, request.headers)
        if refused is not None:
            return refused
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self.reject("unverified", 413, f"body is over {MAX_BODY_BYTES} bytes")
        return await self.deliver(request.content_type, request.headers, body)

    def _refuse_early(self, content_type: str, headers: Mapping[str, str]) -> web.Response | None:
        if content_type not in ACCEPTED_TYPES:
            return self.reject("unverified", 415,
                               f"content type {content_type!r} is not accepted: send {' or '.join(ACCEPTED_TYPES)}")
        if not headers.get("X-Hub-Signature-256"):
            return self.reject("unverified", 401, "X-Hub-Signature-256 is missing")
        return None

    async def deliver(self, content_type: str, headers: Mapping[str, str], body: bytes) -> web.Response:
        """One delivery, verified, routed and recorded: from the HTTP route, or from the webhook proxy
        (app/setup/proxy.py), which must pass through exactly the same checks. `headers` is looked up
        case-insensitively (a `CIMultiDict` or the request's headers)."""
        if len(body) > MAX_BODY_BYTES:
            return self.reject("unverified", 413, f"body is over {MAX_BODY_BYTES} bytes")
        refused = self._refuse_early(content_type, headers)
        if refused is not None:
            return refused
        event_name = headers.get("X-GitHub-Event")
        delivery_id = headers.get("X-GitHub-Delivery")
        try:
            sansio.validate_event(body, signature=headers["X-Hub-Signature-256"], secret=self.secret)
        except ValidationFailure:
            return self.reject("unverified", 401, "signature does not match the webhook secret")
        if not _valid_header(event_name, 100) or not _valid_header(delivery_id, 200):
            return self.reject("unverified", 400, "X-GitHub-Event or X-GitHub-Delivery is missing or invalid")
        token = delivery_id_var.set(delivery_id)
        try:
            return await self._accept(event_name, delivery_id, content_type, body)
        finally:
            delivery_id_var.reset(token)

    async def _accept(self, event_name: str, delivery_id: str, content_type: str, body: bytes) -> web.Response:
        try:
            data = parse_body(content_type, body)
        except PayloadError as exc:
            return self.reject(event_name, 400, f"body is not a valid webhook payload: {exc}"[:300])
        if event_name == "ping":
            self._count(event_name, "200").inc()
            return _answer(200, status="pong")
        intake = Intake(app_id=self.settings.app_id, bot_login=self.identity.bot_login)
        try:
            await route(sansio.Event(data, event=event_name, delivery_id=delivery_id), intake)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            return self.reject(event_name, 400, f"payload lacks a field this event needs: {exc!s}"[:300])
        if not intake.records_anything:
            self._count(event_name, "200").inc()
            reason = "; ".join(intake.ignored)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("ignored %s: %s", _event_label(event_name, data.get("action")), reason,
                          extra={"event": event_name, "action": data.get("action"), "reason": reason})
            return _answer(200, status="ignored", reason=reason)
        delivery = Delivery.model_construct(delivery_id=delivery_id, event=event_name, action=data.get("action"),
                            received_at=time.time())
        try:
            result = await self.store.record_delivery(
                delivery, intake.jobs, intake.installations, max_attempts=self.settings.job_max_attempts
            )
        except StoreUnavailable as exc:
            log.error("could not record delivery: %s", exc)
            return self.reject(event_name, 503, "the job store is unavailable; redeliver later")
        if result.duplicate:
            self._count(event_name, "200").inc()
            if log.isEnabledFor(logging.DEBUG):
                log.debug("ignored %s: delivery already recorded", _event_label(event_name, delivery.action),
                          extra={"event": event_name, "action": delivery.action, "reason": "duplicate delivery"})
            return _answer(200, status="duplicate")
        for job in intake.jobs:
            self.metrics.jobs_created.labels(job.kind.value).inc()
        if log.isEnabledFor(logging.INFO):
            repository = (data.get("repository") or {}).get("full_name")
            log.info("accepted %s for %s: jobs %s", _event_label(event_name, delivery.action),
                     repository or f"installation {(data.get('installation') or {}).get('id')}",
                     result.job_ids, extra={"event": event_name, "action": delivery.action,
                                            "repository": repository, "job_ids": result.job_ids})
        if result.job_ids:
            self._count(event_name, "202").inc()
            # GitHub shows this body in the App's delivery log: the job ids help operators.
            return _answer(202, status="accepted", jobs=result.job_ids)
        self._count(event_name, "200").inc()
        return _answer(200, status="recorded")


WEBHOOKS_KEY = web.AppKey("webhooks", WebhookHandler)


# Within a probe's timeout (deploy/kubernetes: 5 s), so a database that does not answer reads as such.
HEALTH_TIMEOUT_SECONDS = 3.0
# What /healthz shows of `Store.describe()`: never a path, host or user (the route is unauthenticated).
HEALTH_DATABASE_FIELDS = ("backend", "schema_version", "pool_size", "pool_in_use", "listening")


def unhealthy_reason(exc: BaseException) -> str:
    """Why the store failed, for the unauthenticated /healthz: a database URL in it (host, user) left out."""
    return re.sub(r"\b(?:postgres(?:ql)?|sqlite)://\S*?(?=[:,;)]?(?:\s|$))", "the database", str(exc))


def database_health(store: Store, error: str | None = None) -> dict[str, Any]:
    """The database part of /healthz: which backend, whether it answered, its schema version."""
    described = store.describe()
    shown = {name: described[name] for name in HEALTH_DATABASE_FIELDS if described.get(name) is not None}
    return {**shown, "reachable": error is None, **({"error": error} if error else {})}


async def healthz(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            await store.ping()
            counts = await store.count_jobs_by_state()
    except StoreUnavailable as exc:
        reason = unhealthy_reason(exc)
        return _answer(503, status="unhealthy", store=reason, database=database_health(store, reason))
    except TimeoutError:
        reason = f"the database did not answer within {HEALTH_TIMEOUT_SECONDS:g} s"
        return _answer(503, status="unhealthy", store=reason, database=database_health(store, reason))
    queued = sum(n for (_, state), n in counts.items() if state == "queued")
    running = sum(n for (_, state), n in counts.items() if state == "running")
    return _answer(200, status="ok", store="ok", queue_depth=queued, running=running, database=database_health(store))


async def metrics_endpoint(request: web.Request) -> web.Response:
    metrics = request.app[METRICS_KEY]
    try:
        counts = await request.app[STORE_KEY].count_jobs_by_state()
    except StoreUnavailable:
        counts = {}
    metrics.jobs_by_state.clear()
    for (kind, state), n in counts.items():
        metrics.jobs_by_state.labels(kind, state).set(n)
    try:
        metrics.set_fix_outcomes(await request.app[STORE_KEY].fix_outcome_counts())
    except StoreUnavailable:
        pass
    return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})


def create_app(settings: Settings, store: Store, metrics: Metrics | None = None,
               identity: Any = None) -> web.Application:
    """The HTTP application; opening the store and running the worker belong to the caller."""
    metrics = metrics or Metrics()
    identity = identity or SimpleNamespace(bot_login=settings.bot_login)
    webhooks = WebhookHandler(settings, store, metrics, identity)
    app = base_app(store, metrics, webhooks.__call__)
    app[SETTINGS_KEY] = settings
    app[WEBHOOKS_KEY] = webhooks
    return app


def base_app(store: Store, metrics: Metrics,
             webhooks: Callable[[web.Request], Awaitable[web.Response]]) -> web.Application:
    """The routes every mode serves: the webhook route (answered by `webhooks`), /healthz, /metrics.
    First-run setup (app/setup) adds its pages to this and fills in the webhook handler later."""
    app = web.Application(client_max_size=MAX_BODY_BYTES + 1)
    app[STORE_KEY] = store
    app[METRICS_KEY] = metrics
    app.router.add_post(WEBHOOK_PATH, webhooks)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app
