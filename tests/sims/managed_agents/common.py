"""Constants, ids, the clock, request records and the API error shared by the simulator's modules."""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from aiohttp import web


BETA = "managed-agents-2026-04-01"

if hasattr(web, "RequestKey"):
    _JSON: Any = web.RequestKey("managed_agents_sim_json", object)
    _REC: Any = web.RequestKey("managed_agents_sim_record", object)
else:  # pragma: no cover - older aiohttp
    _JSON, _REC = "managed_agents_sim_json", "managed_agents_sim_record"

BUILTIN_TOOLS = ("bash", "edit", "read", "write", "glob", "grep", "web_fetch", "web_search")
CUSTOM_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
AMOUNT_RE = re.compile(r"^[1-9][0-9]*$")
GITHUB_URL_RE = re.compile(r"^https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?(\.git)?/?$")

# Event types that, emitted inside a sub-agent thread, are also copied to the session's
# (primary) event log and stream. Everything else a sub-agent does stays in its thread log
# (``GET /v1/sessions/{sid}/threads/{tid}/events``) unless ``sim.flatten_threads`` is set.
CROSSPOSTED_TYPES = frozenset(
    {
        "agent.custom_tool_use",
        "session.thread_status_running",
        "session.thread_status_idle",
        "session.thread_status_rescheduled",
        "session.thread_status_terminated",
        "session.error",
    }
)

# USD per million tokens (input, output), by model family. Cache reads cost 0.1x input,
# cache writes 1.25x input. Override with ``sim.pricing``.
DEFAULT_PRICING = {"opus": (5, 25), "sonnet": (3, 15), "haiku": (1, 5), "fable": (3, 15)}


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------

_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    return f"{prefix}_011{''.join(secrets.choice(_ALNUM) for _ in range(21))}"


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_dt(value: str) -> datetime:
    dt = datetime.fromisoformat(value.strip().replace(" ", "+"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt


class _Clock:
    """Strictly increasing UTC timestamps (so ``created_at[gt]`` filters are exact)."""

    def __init__(self) -> None:
        self._last: datetime | None = None

    def now(self) -> datetime:
        t = datetime.now(timezone.utc)
        if self._last is not None and t <= self._last:
            t = self._last + timedelta(microseconds=1)
        self._last = t
        return t

    def iso(self) -> str:
        return _iso(self.now())


def _text_content(text: str) -> list[dict]:
    return [{"type": "text", "text": text}]


def _content_text(content: Any) -> str:
    if not content:
        return ""
    parts = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text":
            parts.append(block.get("text", ""))
    return "\n".join(parts)


class Call(NamedTuple):
    """One request the simulator received: ``method, path, body = call``."""

    method: str
    path: str
    body: Any


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int | None = None


class ApiError(Exception):
    """Answered as ``{"type":"error","error":{...}}``; ``violation`` => recorded in sim.violations."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        violation: bool = True,
        error_code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.violation = violation
        self.error_code = error_code
        self.headers = headers or {}


def _bad(message: str, *, error_code: str | None = None, violation: bool = True) -> ApiError:
    return ApiError(400, "invalid_request_error", message, error_code=error_code, violation=violation)


def _not_found(what: str, ident: str) -> ApiError:
    # A 404 for an unknown id is legitimate client behaviour (e.g. probing after a restart).
    return ApiError(404, "not_found_error", f"{what} {ident!r} not found", violation=False)


class SimulatorBug(AssertionError):
    pass


@dataclass
class _Fault:
    method: str
    path: str
    status: int
    times: int
    retry_after: float | None


@dataclass
class _DropRule:
    after_events: int
    times: int
    mode: str
