"""GitHub access: gidgethub's aiohttp client with retries, App auth and a token cache."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import cachetools
import http

from gidgethub import GitHubBroken, HTTPException, RateLimitExceeded, apps
from gidgethub import aiohttp as gh_aiohttp

from app.errors import network_problem
from app.metrics import Metrics

log = logging.getLogger("prmedic.github")

USER_AGENT = "prmedic"
# Tokens live one hour; hand out a cached one only while it has this much life left.
TOKEN_MIN_REMAINING = dt.timedelta(minutes=10)
TOKEN_CACHE_TTL = 59 * 60
SECONDARY_RATE_LIMIT_DEFAULT_WAIT = 60.0


def retry_delay(exc: HTTPException, attempt: int, *, now: float | None = None) -> tuple[str, float] | None:
    """Why and how long to wait before retrying after `exc`, or None when it must not be retried.

    - 5xx: exponential backoff (1, 2, 4, … s, with jitter);
    - primary rate limit (403/429 with x-ratelimit-remaining: 0): until x-ratelimit-reset;
    - secondary rate limit (403/429 with Retry-After, or GitHub's "secondary rate limit" message):
      Retry-After seconds, else a minute, as GitHub's documentation asks.
    """
    now = time.time() if now is None else now
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    status = int(exc.status_code)
    if isinstance(exc, GitHubBroken) or status >= 500:
        return "server_error", min(2 ** (attempt - 1), 30) * random.uniform(0.8, 1.0)
    if status not in (403, 429):
        return None
    if "retry-after" in headers:
        try:
            return "secondary_rate_limit", max(float(headers["retry-after"]), 0.0)
        except ValueError:
            return "secondary_rate_limit", SECONDARY_RATE_LIMIT_DEFAULT_WAIT
    if isinstance(exc, RateLimitExceeded) or headers.get("x-ratelimit-remaining") == "0":
        try:
            reset = float(headers["x-ratelimit-reset"])
        except (KeyError, ValueError):
            return "primary_rate_limit", SECONDARY_RATE_LIMIT_DEFAULT_WAIT
        return "primary_rate_limit", max(reset - now, 0.0) + 1.0
    if "secondary rate limit" in str(exc).lower() or status == 429:
        return "secondary_rate_limit", SECONDARY_RATE_LIMIT_DEFAULT_WAIT
    return None


class GitHubClient(gh_aiohttp.GitHubAPI):
    """gidgethub's client, retrying 5xx, rate limits and dropped connections within a total wait cap."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        max_retry_wait: float = 120.0,
        max_attempts: int = 6,
        metrics: Metrics | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("requester", USER_AGENT)
        super().__init__(session, **kwargs)
        self.max_retry_wait = max_retry_wait
        self.max_attempts = max_attempts
        self.metrics = metrics
        self.waited = 0.0

    # A POST that may have reached GitHub (timeout, dropped answer, 5xx) is not repeated here:
    # creating twice is worse than failing once. Rate limits and refused connections are safe, and so
    # is minting an installation token (`safe_to_repeat`).
    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await super()._request(method, url, headers, body)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError) as exc:
                delay = min(2 ** (attempt - 1), 10)
                maybe_done = not safe_to_repeat(method, url) and not isinstance(exc, aiohttp.ClientConnectorError)
                if maybe_done or attempt >= self.max_attempts or self.waited + delay > self.max_retry_wait:
                    problem = network_problem(exc, urllib.parse.urlsplit(url).hostname)
                    raise GitHubBroken(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                       str(problem) if problem else f"cannot reach GitHub: {exc}") from exc
                self._count("connection_error")
                log.warning("GitHub %s %s: connection failed (%s); retrying in %.1fs", method, _path(url),
                            network_problem(exc) or exc, delay)
                self.waited += delay
                await self.sleep(delay)

    async def handle_rate_limit_error(
        self, *, method: str, url: str, exception: HTTPException, attempt: int
    ) -> bool:
        decision = retry_delay(exception, attempt)
        if decision is None:
            return False
        reason, delay = decision
        if reason == "server_error" and not safe_to_repeat(method, url):
            # GitHub often answers 502 after it has created the review, PR or comment: a blind
            # retry would post it twice. The job's own retry re-runs the idempotent pipeline instead.
            return False
        if attempt >= self.max_attempts or self.waited + delay > self.max_retry_wait:
            log.warning("GitHub %s %s: %s; not retrying (attempt %d, waited %.0fs of %.0fs)",
                        method, _path(url), reason, attempt, self.waited, self.max_retry_wait)
            return False
        self._count(reason)
        log.warning("GitHub %s %s: %s (%s); retrying in %.1fs", method, _path(url), reason,
                    int(exception.status_code), delay)
        self.waited += delay
        await self.sleep(delay)
        return True

    def _count(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.github_retries.labels(reason).inc()


def _path(url: str) -> str:
    return url.split("?", 1)[0]


# POSTs without an effect worth guarding: a second token is as good as the first.
_REPEATABLE_POSTS = re.compile(r"/app/installations/\d+/access_tokens$")


def safe_to_repeat(method: str, url: str) -> bool:
    """Whether a request that may have reached GitHub can be sent again (all but effectful POSTs)."""
    return method.upper() != "POST" or _REPEATABLE_POSTS.search(_path(url)) is not None


def _parse_expiry(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


class GitHubApp:
    """Acts as the App (JWT) and as its installations (cached installation tokens)."""

    def __init__(
        self,
        *,
        app_id: int,
        private_key: str,
        base_url: str,
        session: aiohttp.ClientSession | None = None,
        max_retry_wait: float = 120.0,
        metrics: Metrics | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
    ) -> None:
        self.app_id = str(app_id)
        self.clock = clock
        self.private_key = private_key
        self.base_url = base_url
        self._session = session
        self._owns_session = session is None
        self.max_retry_wait = max_retry_wait
        self.metrics = metrics
        self._tokens: cachetools.TTLCache[tuple, dict[str, Any]] = cachetools.TTLCache(maxsize=4096, ttl=TOKEN_CACHE_TTL)
        self._locks: dict[tuple, asyncio.Lock] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # trust_env: HTTPS_PROXY / NO_PROXY apply, as they do for the anthropic SDK.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60, connect=10), trust_env=True)
        return self._session

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self, **auth: Any) -> GitHubClient:
        return GitHubClient(self.session, base_url=self.base_url, max_retry_wait=self.max_retry_wait,
                            metrics=self.metrics, **auth)

    def app_client(self) -> GitHubClient:
        """Authenticated as the App itself (gidgethub makes and refreshes the JWT)."""
        return self._client(app_id=self.app_id, private_key=self.private_key)

    async def installation_token(
        self,
        installation_id: int,
        *,
        repositories: list[str] | None = None,
        permissions: Mapping[str, str] | None = None,
    ) -> str:
        """An installation token, from the cache while it has at least ten minutes left.

        `repositories` (names without owner) and `permissions` narrow the token, as for the
        read-only token a session gets.
        """
        key = (installation_id, tuple(sorted(repositories or ())), tuple(sorted((permissions or {}).items())))
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(key)
            if cached and cached["expires"] - self.clock() > TOKEN_MIN_REMAINING:
                return cached["token"]
            body: dict[str, Any] = {}
            if repositories:
                body["repositories"] = list(repositories)
            if permissions:
                body["permissions"] = dict(permissions)
            jwt = apps.get_jwt(app_id=self.app_id, private_key=self.private_key)
            answer = await self._client().post(
                "/app/installations/{installation_id}/access_tokens",
                {"installation_id": installation_id}, data=body, jwt=jwt,
            )
            self._tokens[key] = {"token": answer["token"], "expires": _parse_expiry(answer["expires_at"])}
            return answer["token"]

    async def repository_read_token(self, installation_id: int, repo_full_name: str) -> str:
        """The token a session gets: this one repository, contents read-only."""
        return await self.installation_token(
            installation_id, repositories=[repo_full_name.split("/", 1)[1]], permissions={"contents": "read"}
        )

    async def installation_client(self, installation_id: int) -> GitHubClient:
        token = await self.installation_token(installation_id)
        return self._client(oauth_token=token)

    def forget_token(self, installation_id: int) -> None:
        for key in [k for k in self._tokens if k[0] == installation_id]:
            self._tokens.pop(key, None)
