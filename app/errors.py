"""How job failures are classified: transient ones are retried with backoff, others fail the job."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import aiohttp
import anthropic
from gidgethub import GitHubBroken, RateLimitExceeded

from app.store.base import StoreUnavailable


class TransientError(Exception):
    """Worth another attempt later (a dependency was down, rate-limited or timed out)."""


class PermanentError(Exception):
    """Retrying cannot help; the message says what is wrong."""


TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    TransientError,
    GitHubBroken,
    RateLimitExceeded,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    StoreUnavailable,
    anthropic.APIConnectionError,
    anthropic.InternalServerError,
    anthropic.RateLimitError,
)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_TYPES)


def will_retry(attempts: int, max_attempts: int, exc: BaseException) -> bool:
    """The retry rule: a job that failed with `exc` on attempt `attempts` is tried again when the
    failure is transient and attempts are left. The worker acts on it; a pipeline asks it to know
    whether to finish its check run now or leave it to the next attempt."""
    return is_transient(exc) and attempts < max_attempts


def describe(exc: BaseException) -> str:
    """One line for logs, `prmedic jobs` and check runs: network failures in words, others as `Type: message`."""
    problem = network_problem(exc)
    if problem is not None:
        return str(problem)
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:2000]


NetworkCause = Literal["dns", "refused", "timeout", "tls", "proxy", "closed", "unreachable", "other"]

_UNREACHABLE = {errno.ENETUNREACH: "the network is unreachable", errno.EHOSTUNREACH: "no route to the host"}


@dataclass(frozen=True)
class NetworkProblem:
    """Why a connection failed, in words: `cannot reach api.github.com: name does not resolve`."""

    cause: NetworkCause
    detail: str
    host: str | None = None

    def __str__(self) -> str:
        return f"cannot reach {self.host or 'the server'}: {self.detail}"


def network_problem(exc: BaseException, host: str | None = None) -> NetworkProblem | None:
    """What went wrong on the network in `exc` (aiohttp, the anthropic SDK, sockets), or None if it
    is not a network failure. A GitHubBroken raised from a connection failure counts as one."""
    top = exc
    if not _is_network(top):
        cause = exc.__cause__
        if not (isinstance(exc, GitHubBroken) and (isinstance(cause, TimeoutError) or _is_network(cause))):
            return None
        top, host = cause, host or "GitHub"
    chain = list(_chain(top))
    host = _host(chain) or host
    for e in chain:
        if isinstance(e, aiohttp.ClientProxyConnectionError):
            return NetworkProblem("proxy", "the proxy cannot be reached", host)
    # aiohttp's own TLS errors subclass ssl.SSLError without its fields; the one they wrap has them.
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError) and not isinstance(e, aiohttp.ClientError):
            return NetworkProblem("tls", f"its TLS certificate is not trusted ({e.verify_message})", host)
        if isinstance(e, ssl.SSLError) and not isinstance(e, aiohttp.ClientError):
            reason = (e.reason or e.strerror or "").replace("_", " ").lower()
            return NetworkProblem("tls", f"the TLS handshake failed ({reason or e})", host)
    for e in chain:
        if isinstance(e, aiohttp.ClientConnectorDNSError | socket.gaierror):
            gai = next((c for c in chain if isinstance(c, socket.gaierror)), None)
            if gai is not None and gai.errno == socket.EAI_AGAIN:
                return NetworkProblem("dns", "name does not resolve (the DNS server did not answer)", host)
            return NetworkProblem("dns", "name does not resolve", host)
    for e in chain:
        if isinstance(e, ConnectionRefusedError):
            return NetworkProblem("refused", "connection refused", host)
        if isinstance(e, anthropic.APITimeoutError | TimeoutError):
            return NetworkProblem("timeout", "no answer in time (timed out)", host)
        if isinstance(e, ConnectionResetError | ConnectionAbortedError | aiohttp.ServerDisconnectedError):
            return NetworkProblem("closed", "the connection was closed before an answer came", host)
        if isinstance(e, OSError) and e.errno in _UNREACHABLE:
            return NetworkProblem("unreachable", _UNREACHABLE[e.errno], host)
    innermost = chain[-1]
    detail = (innermost.strerror if isinstance(innermost, OSError) else None) or str(innermost)
    return NetworkProblem("other", detail or innermost.__class__.__name__, host)


def _is_network(exc: BaseException) -> bool:
    # A bare TimeoutError says nothing about the network (asyncio.wait_for raises it too).
    if isinstance(exc, aiohttp.ClientConnectionError | anthropic.APIConnectionError | socket.gaierror
                  | ssl.SSLError | ConnectionError):
        return True
    return isinstance(exc, OSError) and exc.errno in _UNREACHABLE


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _host(chain: list[BaseException]) -> str | None:
    for e in chain:
        if isinstance(e, aiohttp.ClientConnectorError):
            return _address(e)
        if isinstance(e, anthropic.APIConnectionError):
            url = e.request.url
            return f"{url.host}:{url.port}" if url.port else url.host
    return None


def _address(e: aiohttp.ClientConnectorError) -> str:
    return e.host if e.port in (None, 80, 443) else f"{e.host}:{e.port}"
