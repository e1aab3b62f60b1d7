"""The route table and what a handler receives.

Handlers register themselves with :func:`route` when their module under ``routes/`` is imported;
the first route whose template and method match a request wins, so import order matters.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import unquote, urlencode

from aiohttp import web

from .common import HTTPError, not_found

if TYPE_CHECKING:
    from .records import IssuedToken, PullRequest, Repo
    from .render import Render
    from .state import GitHubState


# Path parameters that may contain slashes (GitHub's "x-multi-segment").
MULTI_SEGMENT = {"path", "ref", "basehead"}


@dataclass
class Route:
    method: str
    template: str
    handler: Callable
    auth: str  # "jwt", "token" (installation token, no repo), "repo" (installation token + repo)
    perms: list[tuple[str, str]] | None  # alternatives: any one (permission, level) suffices
    regex: re.Pattern = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        def sub(m: re.Match) -> str:
            name = m.group(1)
            return f"(?P<{name}>.+)" if name in MULTI_SEGMENT else f"(?P<{name}>[^/]+)"

        self.regex = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", sub, re.escape(self.template)) + "$")


@dataclass
class Ctx:
    request: web.Request
    state: GitHubState
    render: Render
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    repo: Repo | None = None
    token: IssuedToken | None = None
    base_url: str = ""


ROUTES: list[Route] = []


def route(method: str, template: str, *, auth: str = "repo", perms: list[tuple[str, str]] | None = None):
    def deco(fn: Callable) -> Callable:
        ROUTES.append(Route(method, template, fn, auth, perms))
        return fn

    return deco


def find_route(method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """(route, params, path_known). path_known: some route has that path with another method."""
    path_known = False
    for r in ROUTES:
        m = r.regex.match(path)
        if m:
            if r.method == method:
                return r, {k: unquote(v) for k, v in m.groupdict().items()}, True
            path_known = True
    return None, {}, path_known


def paginate(ctx: Ctx, items: list, *, default: int = 30, max_per_page: int = 100) -> tuple[list, dict]:
    try:
        per_page = int(ctx.query.get("per_page", default))
    except ValueError:
        per_page = default
    per_page = default if per_page < 1 else min(per_page, max_per_page)
    try:
        page = max(int(ctx.query.get("page", 1)), 1)
    except ValueError:
        page = 1
    last = max(1, math.ceil(len(items) / per_page))
    chunk = items[(page - 1) * per_page: page * per_page]
    links = []

    def link(p: int, rel: str) -> str:
        q = dict(ctx.query)
        q["per_page"] = str(per_page)
        q["page"] = str(p)
        return f'<{ctx.base_url}{ctx.request.rel_url.raw_path}?{urlencode(q)}>; rel="{rel}"'

    if page > 1:
        links.append(link(page - 1, "prev"))
    if page < last:
        links.append(link(page + 1, "next"))
        links.append(link(last, "last"))
    if page > 1:
        links.append(link(1, "first"))
    return chunk, ({"Link": ", ".join(links)} if links else {})


def _pr_or_404(ctx: Ctx, number: str) -> PullRequest:
    pr = ctx.state.pulls.get((ctx.repo.key, int(number)))
    if pr is None:
        raise not_found()
    ctx.state.sync_pull(pr)
    return pr


def _commit_or(ctx: Ctx, sha: str, status: int = 404, message: str = "Not Found") -> str:
    if ctx.repo.store.kind(sha) != "commit":
        raise HTTPError(status, message)
    return sha
