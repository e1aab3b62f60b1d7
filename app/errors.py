"""How job failures are classified: transient ones are retried with backoff, others fail the job."""

from __future__ import annotations

import asyncio

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


def describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:2000]
