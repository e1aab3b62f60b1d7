"""The request pipeline and the aiohttp application.

Each request is matched to a route, checked against the OpenAPI description, authenticated,
rate-limited and answered (or answered with an injected fault); whatever GitHub would refuse is
also recorded in ``state.violations``.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any
from urllib.parse import unquote

import jwt
from aiohttp import web

from . import routes  # noqa: F401 - importing the package registers the handlers
from .common import HTTPError, PERM_LEVEL, error_body, not_found
from .manifests import add_manifest_routes
from .records import Fault, RequestRecord, Violation
from .render import Render
from .routing import Ctx, Route, find_route
from .spec import _unknown_query, _validate, load_spec
from .state import GitHubState


def _authenticate(ctx: Ctx, route_: Route) -> None:
    s = ctx.state
    if route_.auth == "none":  # the manifest flow's code exchange: the code is the credential
        return
    header = ctx.request.headers.get("Authorization", "")
    scheme, _, cred = header.partition(" ")
    scheme = scheme.lower()
    cred = cred.strip()
    if route_.auth == "jwt":
        if scheme != "bearer" or not cred:
            raise HTTPError(401, "A JSON web token could not be decoded")
        if s.app_public_key is None:
            raise RuntimeError("GitHubState has no app key: pass app_private_key/app_public_key")
        try:
            claims = jwt.decode(cred, s.app_public_key, algorithms=["RS256"],
                                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                                         "verify_aud": False, "require": ["iat", "exp", "iss"]})
        except jwt.PyJWTError:
            raise HTTPError(401, "A JSON web token could not be decoded")
        now = s.now()
        if str(claims["iss"]) not in (str(s.app_id), s.client_id):
            raise HTTPError(401, "'Issuer' claim ('iss') must be an Integer")
        if not isinstance(claims["iat"], (int, float)) or claims["iat"] > now + 60:
            raise HTTPError(401, "'Issued at' claim ('iat') must be an Integer representing a time in the past.")
        if not isinstance(claims["exp"], (int, float)) or claims["exp"] <= now:
            raise HTTPError(401, "'Expiration time' claim ('exp') must be a numeric value representing the "
                                 "future time at which the assertion expires.")
        if claims["exp"] - claims["iat"] > 600 or claims["exp"] > now + 660:
            raise HTTPError(401, "'Expiration time' claim ('exp') is too far in the future")
        return
    if scheme not in ("token", "bearer") or not cred:
        raise HTTPError(401, "Requires authentication")
    tok = s.tokens.get(cred)
    if tok is None or tok.expires_at <= s.now():
        raise HTTPError(401, "Bad credentials")
    ctx.token = tok
    if route_.auth == "token":
        return
    owner, name = ctx.params["owner"], ctx.params["repo"]
    repo = s.repos.get(f"{owner}/{name}".lower())
    inst = s.installations.get(tok.installation_id)
    covered = False
    if repo is not None and inst is not None:
        inst_keys = {r.key for r in s.installation_repos(inst)}
        covered = repo.key in inst_keys and (tok.repositories is None or repo.key in tok.repositories)
    if repo is None or (not covered and repo.private):
        raise not_found()
    ctx.repo = repo
    if not covered:
        if route_.method != "GET":
            raise HTTPError(403, "Resource not accessible by integration")
        return  # public repositories are readable by any token
    if route_.perms:
        ok = any(PERM_LEVEL.get(tok.permissions.get(p, "none"), 0) >= PERM_LEVEL[lvl] for p, lvl in route_.perms)
        if not ok and not all(p == "metadata" for p, _ in route_.perms):
            raise HTTPError(403, "Resource not accessible by integration")


def _rate_bucket(ctx: Ctx, route_: Route | None) -> tuple[str, list[float], int]:
    s = ctx.state
    header = ctx.request.headers.get("Authorization", "")
    cred = header.partition(" ")[2].strip()
    if route_ is not None and route_.auth == "jwt":
        key, limit = "app", s.rate_limit
    elif cred in s.tokens:
        key, limit = f"installation:{s.tokens[cred].installation_id}", s.rate_limit
    else:
        key, limit = "anonymous", 60
    bucket = s.rate_buckets.setdefault(key, [0, s.now() + 3600])
    if s.now() >= bucket[1]:
        bucket[0], bucket[1] = 0, s.now() + 3600
    return key, bucket, limit


def _rate_headers(bucket: list[float], limit: int) -> dict[str, str]:
    return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(max(0, limit - int(bucket[0]))),
            "x-ratelimit-reset": str(int(bucket[1])), "x-ratelimit-used": str(int(bucket[0])),
            "x-ratelimit-resource": "core"}


def _respond(status: int, body: Any, headers: dict[str, str]) -> web.Response:
    hdrs = {"X-GitHub-Media-Type": "github.v3; format=json", "X-GitHub-Api-Version-Selected": "2022-11-28",
            "X-GitHub-Request-Id": secrets.token_hex(8).upper()}
    hdrs.update(headers)
    if body is None:
        return web.Response(status=status, headers=hdrs)
    if isinstance(body, (bytes, str)):
        ct = hdrs.pop("Content-Type", "text/plain; charset=utf-8")
        resp = web.Response(status=status, body=body.encode() if isinstance(body, str) else body, headers=hdrs)
        resp.content_type = ct.split(";")[0]
        return resp
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=hdrs)


STATE_KEY = web.AppKey("github_state", GitHubState)


async def _handle(request: web.Request) -> web.StreamResponse:
    s: GitHubState = request.app[STATE_KEY]
    raw_body = await request.read()
    path = request.rel_url.raw_path
    base_url = f"{request.scheme}://{request.host}"
    query = dict(request.query)
    body: Any = None
    json_error = False
    if raw_body.strip():
        try:
            body = json.loads(raw_body)
        except ValueError:
            json_error = True
    rec = RequestRecord(request.method, unquote(path), query, body)
    s.requests.append(rec)

    # The log archive a logs redirect points at: no API rules apply.
    m = re.fullmatch(r"/_sim/actions/jobs/(\d+)/logs", path)
    if m and request.method == "GET":
        rec.auth = "token" if request.headers.get("Authorization") else None  # a leaked token shows here
        job = s.jobs.get(int(m.group(1)))
        if job is None or s._log_nonces.get(query.get("sig", "")) != job.id or job.log_text is None:
            rec.status = 404
            return web.Response(status=404, text="Not Found")
        rec.status = 200
        return web.Response(status=200, text=job.log_text, content_type="text/plain")

    route_, params, path_known = find_route(request.method, path)
    ctx = Ctx(request, s, Render(s, base_url), params, query, body, base_url=base_url)
    key, bucket, limit = _rate_bucket(ctx, route_)
    rec.auth = "jwt" if route_ is not None and route_.auth == "jwt" else (
        "token" if request.headers.get("Authorization") else None)

    def finish(status: int, out: Any, headers: dict | None = None) -> web.Response:
        rec.status = status
        h = _rate_headers(bucket, limit)
        h.update(headers or {})
        return _respond(status, out, h)

    def violation(kind: str, detail: str) -> None:
        s.violations.append(Violation(request.method, unquote(path), kind, detail, body))

    # 1. Validate against GitHub's description (violations are recorded even if a fault fires).
    invalid: tuple[int, str, list] | None = None
    if route_ is None:
        violation("unknown-route", f"{request.method} {path} is not an operation in the simulator's "
                                   f"OpenAPI description" + (" (wrong method)" if path_known else ""))
        invalid = (404, "Not Found", None)
    elif json_error:
        violation("invalid-json", "request body is not JSON")
        invalid = (400, "Problems parsing JSON", None)
    else:
        if not request.headers.get("User-Agent"):
            violation("no-user-agent", "GitHub refuses requests without a User-Agent header")
            invalid = (403, "Request forbidden by administrative rules. Please make sure your request has a "
                            "User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api"
                            "#user-agent-required). Check https://developer.github.com for other possible causes.",
                       None)
        else:
            res = _validate(route_, params, request, raw_body, body)
            if res is not None:
                violation("invalid-request", f"{res[1]} {res[2]}")
                invalid = res
            extra = _unknown_query(route_, query.keys())
            if extra:
                violation("unknown-query-parameter", ", ".join(extra))

    # 2. Injected faults.
    def fault_answer(f: Fault) -> web.Response:
        fbody = f.body if f.body is not None else error_body(f.status, {
            502: "Server Error", 500: "Server Error", 503: "Service Unavailable", 429: "Too Many Requests",
            403: "Forbidden", 404: "Not Found", 422: "Validation Failed"}.get(f.status, "Error"))
        return finish(f.status, fbody, f.headers)

    after: Fault | None = None
    for f in s.faults:
        if f.matches(request.method, unquote(path)):
            f.times -= 1
            f.hits += 1
            if f.landed:
                after = f
                break
            bucket[0] += 1
            return fault_answer(f)

    if invalid is not None:
        status, message, errors = invalid
        return finish(status, error_body(status, message, errors))

    # 3. Primary rate limit.
    if bucket[0] >= limit:
        rec.status = 403
        return finish(403, error_body(403, f"API rate limit exceeded for {key}."))
    bucket[0] += 1

    # 4. Authentication, authorisation, then the handler.
    try:
        _authenticate(ctx, route_)
        result = route_.handler(ctx)
    except HTTPError as e:
        s.refusals.append(Violation(request.method, unquote(path), f"http-{e.status}",
                                    e.message + (f" {e.errors}" if e.errors else ""), body))
        return finish(e.status, error_body(e.status, e.message, e.errors), e.headers)
    status, out = result[0], result[1]
    headers = result[2] if len(result) > 2 else {}
    if after is not None:
        return fault_answer(after)
    return finish(status, out, headers)


def make_github_app(state: GitHubState) -> web.Application:
    """An aiohttp application serving ``state`` as GitHub's REST API."""
    load_spec()
    app = web.Application(client_max_size=256 * 1024 * 1024)
    app[STATE_KEY] = state
    add_manifest_routes(app, state)  # github.com's pages of the manifest flow, before the API's catch-all
    app.router.add_route("*", "/{tail:.*}", _handle)
    return app


def make_app_jwt(private_key: str | bytes, app_id: int | str, *, now: float | None = None,
                 ttl: int = 540, backdate: int = 60) -> str:
    """An App JWT the way GitHub documents it (for tests that talk to the simulator directly)."""
    now = int(now if now is not None else time.time())
    return jwt.encode({"iat": now - backdate, "exp": now + ttl, "iss": str(app_id)}, private_key, algorithm="RS256")
