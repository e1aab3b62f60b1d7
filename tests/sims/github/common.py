"""Constants, small helpers and the error answers shared by the GitHub simulator's modules."""

from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Any


DOCS_URL = "https://docs.github.com/rest"
HTML_BASE = "https://github.com"
ZERO_SHA = "0" * 40
PERM_LEVEL = {"none": 0, "read": 1, "write": 2, "admin": 3}
DEFAULT_APP_PERMISSIONS = {
    "actions": "read",
    "checks": "write",
    "contents": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
}
DEFAULT_APP_EVENTS = ["check_run", "check_suite", "issue_comment", "pull_request",
                      "pull_request_review", "pull_request_review_comment", "workflow_job",
                      "workflow_run"]
REACTIONS = ["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"]
MAX_PR_FILES = 3000
MAX_PR_COMMITS = 250
MAX_COMMENT_BODY = 65536


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(int(ts), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(s: str) -> tuple[int, int]:
    """ISO 8601 → (unix seconds, utc offset in minutes)."""
    d = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    off = d.utcoffset() or dt.timedelta(0)
    return int(d.timestamp()), int(off.total_seconds() // 60)


def node_id(kind: str, ident: Any) -> str:
    return kind + "_" + base64.b64encode(f"{kind}:{ident}".encode()).decode().rstrip("=")


def b64_wrapped(data: bytes) -> str:
    enc = base64.b64encode(data).decode()
    return "".join(enc[i:i + 60] + "\n" for i in range(0, len(enc), 60))


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:8000]


def _split_lines(text: str) -> list[str]:
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


class HTTPError(Exception):
    """Raised by handlers: becomes a GitHub-style JSON error answer."""

    def __init__(self, status: int, message: str, errors: list | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}


def error_body(status: int, message: str, errors: list | None = None) -> dict:
    body: dict[str, Any] = {"message": message}
    if errors is not None:
        body["errors"] = errors
    body["documentation_url"] = DOCS_URL
    body["status"] = str(status)
    return body


def not_found() -> HTTPError:
    return HTTPError(404, "Not Found")


def validation_failed(resource: str, field_: str | None = None, code: str = "custom",
                      message: str | None = None) -> HTTPError:
    err: dict[str, Any] = {"resource": resource, "code": code}
    if field_:
        err["field"] = field_
    if message:
        err["message"] = message
    return HTTPError(422, "Validation Failed", [err])


def unprocessable(*messages: str) -> HTTPError:
    return HTTPError(422, "Unprocessable Entity", list(messages))
