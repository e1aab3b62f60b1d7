"""What `prmedic run` is asked to do, read from its words (pure): the action, the pull request
(`OWNER/REPO#N` or a pull request URL, GitHub Enterprise included) and the action's arguments."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.oneshot.result import UsageError

ACTIONS = ("review", "fix", "describe", "ask", "test")

_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})"
_NAME = r"[A-Za-z0-9._-]{1,100}"
_SHORT = re.compile(rf"^(?P<owner>{_OWNER})/(?P<name>{_NAME})#(?P<number>\d+)$")
_PATH = re.compile(rf"^/(?P<owner>{_OWNER})/(?P<name>{_NAME})/pulls?/(?P<number>\d+)(?:/.*)?$")

PUBLIC_WEB = "https://github.com"
PUBLIC_API = "https://api.github.com"


class BadReference(UsageError):
    """The words do not name a pull request or an action (the message says what would)."""


@dataclass(frozen=True)
class PullRef:
    owner: str
    name: str
    number: int
    host: str | None = None  # the web host of a URL reference; None for OWNER/REPO#N
    scheme: str = "https"

    @property
    def repo(self) -> str:
        return f"{self.owner}/{self.name}"

    def __str__(self) -> str:
        return f"{self.repo}#{self.number}"


@dataclass(frozen=True)
class RunRequest:
    action: str
    pr: PullRef
    args: str = ""


USAGE = ("name the pull request as OWNER/REPO#NUMBER (octo-org/widgets#12) or by its URL "
         "(https://github.com/octo-org/widgets/pull/12, or your GitHub Enterprise host)")


def parse_reference(text: str) -> PullRef:
    """`OWNER/REPO#N` or `https://HOST/OWNER/REPO/pull/N[/files…]`; BadReference otherwise."""
    text = text.strip()
    match = _SHORT.match(text)
    if match:
        return _ref(match, None, "https", text)
    if "://" in text:
        parts = urlsplit(text)
        path_match = _PATH.match(parts.path.rstrip("/") or "/")
        if parts.scheme in ("http", "https") and parts.netloc and path_match:
            return _ref(path_match, parts.netloc.lower(), parts.scheme, text)
    raise BadReference(f"{text!r} is not a pull request: {USAGE}")


def _ref(match: re.Match[str], host: str | None, scheme: str, text: str) -> PullRef:
    number = int(match["number"])
    if number < 1:
        raise BadReference(f"{text!r}: pull request numbers start at 1")
    name = match["name"].removesuffix(".git")
    if name in (".", ".."):
        raise BadReference(f"{text!r} is not a pull request: {USAGE}")
    return PullRef(match["owner"], name, number, host, scheme)


def parse_request(action: str, reference: str, words: list[str] | tuple[str, ...] = ()) -> RunRequest:
    """The request of `prmedic run ACTION REFERENCE [WORDS…]`; the words are the action's arguments
    (the question of `ask`, the instructions of `fix`, what `test` should cover)."""
    if action not in ACTIONS:
        raise BadReference(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
    args = " ".join(words).strip()
    if action == "ask" and not args:
        raise BadReference('`ask` needs a question: prmedic run ask OWNER/REPO#N "why is the limit 3?"')
    if action in ("review", "describe") and args:
        raise BadReference(f"`{action}` takes no words after the pull request (got {args!r})")
    return RunRequest(action, parse_reference(reference), args)


def endpoints(ref: PullRef, api_url: str, web_url: str) -> tuple[str, str]:
    """(API base URL, web base URL) for `ref`: the configured ones for `OWNER/REPO#N` and for a URL
    on the configured web host; github.com's for a github.com URL; `https://HOST/api/v3` for any
    other host (GitHub Enterprise Server)."""
    if ref.host is None or ref.host == (urlsplit(web_url).netloc or "").lower():
        return api_url.rstrip("/"), web_url.rstrip("/")
    if ref.host in ("github.com", "www.github.com"):
        return PUBLIC_API, PUBLIC_WEB
    return f"{ref.scheme}://{ref.host}/api/v3", f"{ref.scheme}://{ref.host}"
