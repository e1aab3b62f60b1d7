"""Request plumbing: the strict middleware, injected faults, error and JSON answers, query and pagination helpers."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any, Callable, Iterable

from aiohttp import web

from ..common import ApiError, BETA, Call, RequestRecord, SimulatorBug, _JSON, _REC, _bad, _parse_dt, new_id
from ..validation import check_response


class TransportMixin:
    """Middleware and helpers every route handler uses."""

    # -- middleware ----------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        raw = await request.read() if request.body_exists else b""
        body: Any = None
        bad_json = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        query = {k: request.query.getall(k) for k in request.query.keys()}
        rec = RequestRecord(request.method, request.path, query, dict(request.headers), body)
        self.requests.append(rec)
        self.calls.append(Call(request.method, request.path, body))
        request[_JSON] = body
        request[_REC] = rec
        try:
            self._check_headers(request)
            if bad_json:
                raise _bad("request body is not valid JSON")
            fault = self._take_fault(request)
            if fault is not None:
                raise fault
            resp = await handler(request)
        except ApiError as e:
            if e.violation:
                self.violate(f"{request.method} {request.path}: {e.status} {e.type}: {e.message}")
            resp = self._error_response(e)
        except web.HTTPNotFound:
            self.violate(f"{request.method} {request.path}: no such route in the Managed Agents API")
            resp = self._error_response(ApiError(404, "not_found_error", f"Not found: {request.method} {request.path}"))
        except web.HTTPMethodNotAllowed:
            self.violate(f"{request.method} {request.path}: method not allowed")
            resp = self._error_response(ApiError(405, "invalid_request_error", f"Method not allowed: {request.method} {request.path}"))
        except SimulatorBug as e:
            self.violate(f"SIMULATOR BUG on {request.method} {request.path}: {e}")
            resp = self._error_response(ApiError(500, "api_error", str(e), violation=False))
        rec.status = resp.status
        return resp

    def _check_headers(self, request: web.Request) -> None:
        h = request.headers
        key = h.get("x-api-key")
        auth = h.get("authorization", "")
        if not key and not (auth.lower().startswith("bearer ") and auth[7:].strip()):
            raise ApiError(401, "authentication_error", "x-api-key header is required")
        betas = [b.strip() for b in h.get("anthropic-beta", "").split(",") if b.strip()]
        if BETA not in betas:
            raise _bad(f"this endpoint is in beta: send `anthropic-beta: {BETA}` (got {h.get('anthropic-beta')!r})")
        if not h.get("anthropic-version"):
            raise _bad("anthropic-version header is required")

    def _take_fault(self, request: web.Request) -> ApiError | None:
        for f in self._faults:
            if f.times > 0 and f.method == request.method and f.path == request.path:
                f.times -= 1
                headers = {}
                if f.retry_after is not None:
                    headers["retry-after-ms"] = str(int(round(f.retry_after * 1000)))
                    headers["retry-after"] = str(max(1, int(-(-f.retry_after // 1))))
                if f.status == 429:
                    return ApiError(429, "rate_limit_error", "Number of concurrent sessions exceeds your rate limit.", violation=False, headers=headers)
                if f.status == 529:
                    return ApiError(529, "overloaded_error", "Overloaded", violation=False, headers=headers)
                return ApiError(f.status, "api_error", "Internal server error", violation=False, headers=headers)
        return None

    def _error_response(self, e: ApiError) -> web.Response:
        err: dict[str, Any] = {"type": e.type, "message": e.message}
        if e.error_code:
            err["details"] = {"error_code": e.error_code}
        rid = new_id("req")
        return web.json_response(
            {"type": "error", "error": err, "request_id": rid},
            status=e.status,
            headers={"request-id": rid, **e.headers},
        )

    def _json(self, data: Any, tp: Any = None, status: int = 200) -> web.Response:
        if tp is not None:
            check_response(tp, data)
        return web.json_response(data, status=status, headers={"request-id": new_id("req")})

    def _page(self, items: list[dict], item_type: Any, next_page: str | None, *, prev_page: Any = ...) -> web.Response:
        for it in items:
            check_response(item_type, it)
        data: dict[str, Any] = {"data": items, "next_page": next_page}
        if prev_page is not ...:
            data["prev_page"] = prev_page
        return self._json(data)

    # -- query helpers -------------------------------------------------------------
    def _query(self, request: web.Request, allowed: Iterable[str]) -> dict[str, list[str]]:
        allowed = set(allowed) | {"beta"}
        q = request[_REC].query
        unknown = [k for k in q if k not in allowed]
        if unknown:
            raise _bad(f"unknown query parameter(s): {', '.join(unknown)}")
        return q

    @staticmethod
    def _one(q: dict[str, list[str]], key: str) -> str | None:
        v = q.get(key)
        return v[-1] if v else None

    def _limit(self, q: dict, default: int, maximum: int) -> int:
        raw = self._one(q, "limit")
        if raw is None:
            return default
        try:
            n = int(raw)
        except ValueError:
            raise _bad(f"limit: must be an integer, got {raw!r}")
        if n < 1 or n > maximum:
            raise _bad(f"limit: must be between 1 and {maximum}, got {n}")
        return n

    def _bool(self, q: dict, key: str) -> bool:
        raw = self._one(q, key)
        if raw is None:
            return False
        if raw not in ("true", "false"):
            raise _bad(f"{key}: must be true or false, got {raw!r}")
        return raw == "true"

    @staticmethod
    def _encode_cursor(pos: int) -> str:
        return "page_" + base64.urlsafe_b64encode(json.dumps({"p": pos}).encode()).decode().rstrip("=")

    def _decode_cursor(self, q: dict) -> int | None:
        raw = self._one(q, "page")
        if raw is None:
            return None
        try:
            if not raw.startswith("page_"):
                raise ValueError
            pad = "=" * (-len(raw[5:]) % 4)
            return int(json.loads(base64.urlsafe_b64decode(raw[5:] + pad))["p"])
        except Exception:
            raise _bad(f"page: invalid cursor {raw!r}")

    def _time_filters(self, q: dict, prefix: str = "created_at") -> list[Callable[[datetime], bool]]:
        out = []
        ops = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}
        for op, fn in ops.items():
            raw = self._one(q, f"{prefix}[{op}]")
            if raw is None:
                continue
            try:
                bound = _parse_dt(raw)
            except ValueError:
                raise _bad(f"{prefix}[{op}]: not an RFC 3339 timestamp: {raw!r}")
            out.append(lambda t, fn=fn, bound=bound: fn(t, bound))
        return out

    def _paginate_offset(self, q: dict, items: list[dict], item_type: Any, *, default: int, maximum: int, bidirectional: bool = False) -> web.Response:
        limit = self._limit(q, default, maximum)
        start = self._decode_cursor(q) or 0
        chunk = items[start : start + limit]
        nxt = self._encode_cursor(start + limit) if start + limit < len(items) else None
        if bidirectional:
            prev = self._encode_cursor(max(0, start - limit)) if start > 0 else None
            return self._page(chunk, item_type, nxt, prev_page=prev)
        return self._page(chunk, item_type, nxt)
