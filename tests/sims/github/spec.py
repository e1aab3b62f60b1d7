"""The OpenAPI description (loaded once per process) and the request checks made against it.

Besides openapi-core's checks, unknown body and query keys are refused: GitHub ignores them, but a
client sending them has a bug.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import quote

from aiohttp import web

if TYPE_CHECKING:
    from .routing import Route


SPEC_PATH = Path(__file__).resolve().parents[2] / "fixtures" / "github-openapi.json"


_SPEC_CACHE: dict[str, Any] = {}


def load_spec() -> tuple[dict, Any]:
    """(raw dict, openapi_core.OpenAPI) for the trimmed description, cached per process."""
    if "spec" not in _SPEC_CACHE:
        from openapi_core import Config, OpenAPI

        raw = json.loads(SPEC_PATH.read_text())
        # The trim script validates the description; skipping that here makes loading ~instant.
        api = OpenAPI.from_dict(raw, config=Config(spec_validator_cls=None))
        _SPEC_CACHE["spec"] = (raw, api)
    return _SPEC_CACHE["spec"]


def _resolve(raw: dict, node: Any) -> Any:
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        cur: Any = raw
        for part in node["$ref"][2:].split("/"):
            cur = cur[part.replace("~1", "/").replace("~0", "~")]
        node = cur
        seen += 1
        if seen > 50:
            raise RuntimeError("reference loop")
    return node


def _unknown_keys(raw: dict, value: Any, schema: Any, where: str = "") -> list[str]:
    """Keys of ``value`` that ``schema`` does not declare (GitHub: "is not a permitted key")."""
    schema = _resolve(raw, schema)
    if not isinstance(schema, dict):
        return []
    branches = [schema]
    for comb in ("allOf", "oneOf", "anyOf"):
        branches += [_resolve(raw, s) for s in schema.get(comb, [])]
    out: list[str] = []
    if isinstance(value, dict):
        props: dict[str, Any] = {}
        open_ = False
        for b in branches:
            if not isinstance(b, dict):
                continue
            if b.get("additionalProperties") not in (None, False):
                open_ = True
            props.update(b.get("properties", {}))
        if not props:
            return []
        for k, v in value.items():
            if k in props:
                out += _unknown_keys(raw, v, props[k], f"{where}{k}.")
            elif not open_:
                out.append(f"{where}{k}")
    elif isinstance(value, list):
        for b in branches:
            if isinstance(b, dict) and "items" in b:
                for i, item in enumerate(value):
                    out += _unknown_keys(raw, item, b["items"], f"{where}{i}.")
                break
    return out


class _OARequest:
    """openapi-core's request protocol over already-read request parts."""

    def __init__(self, method: str, path: str, query: list[tuple[str, str]], headers: Iterable[tuple[str, str]],
                 body: bytes | None, content_type: str):
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        self.method = method.lower()
        self.path = path
        self.host_url = "https://api.github.com"
        self.parameters = RequestParameters(query=ImmutableMultiDict(query), header=Headers(list(headers)),
                                            cookie=ImmutableMultiDict())
        self.body = body
        self.content_type = content_type


def _schema_errors(exc: BaseException) -> list:
    out = []
    seen = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        out += list(getattr(cur, "schema_errors", None) or [])
        cur = cur.__cause__ or cur.__context__
    return out


def _validate(route_: Route, params: dict[str, str], request: web.Request, raw_body: bytes,
              body: Any) -> tuple[int, str, list] | None:
    """None if valid, else (status, message, errors)."""
    raw, api = load_spec()
    path = route_.template
    for k, v in params.items():
        path = path.replace("{" + k + "}", quote(v, safe=""))
    ct = request.headers.get("Content-Type", "application/json").split(";")[0].strip() or "application/json"
    oareq = _OARequest(route_.method, path, list(request.query.items()), request.headers.items(),
                       raw_body if raw_body else None, "application/json" if raw_body else ct)
    result = api.unmarshal_request(oareq)
    if result.errors:
        from openapi_core.templating.paths.exceptions import PathError

        first = result.errors[0]
        if isinstance(first, PathError):
            return 404, "Not Found", [str(first)]
        name = type(first).__name__
        if name == "ParameterValidationError" or "Parameter" in name:
            loc = getattr(first, "location", "")
            if loc == "path":
                return 404, "Not Found", [str(first)]
            cause = first.__cause__
            return 422, "Validation Failed", [{"resource": "Parameter", "code": "invalid",
                                               "field": getattr(first, "name", ""),
                                               "message": f"{first}: {cause}" if cause else str(first)}]
        errors = []
        for e in _schema_errors(first):
            fld = ".".join(str(p) for p in e.absolute_path)
            if e.validator == "required":
                missing = re.findall(r"'([^']+)' is a required property", e.message)
                errors.append({"resource": "Body", "code": "missing_field",
                               "field": (fld + "." if fld else "") + (missing[0] if missing else ""),
                               "message": e.message})
            else:
                errors.append({"resource": "Body", "code": "invalid", "field": fld, "message": e.message})
        if not errors:
            errors = [{"resource": "Body", "code": "invalid", "message": str(first)}]
        return 422, "Validation Failed", errors
    # Stricter than the description: body keys it does not declare.
    op = raw["paths"][route_.template][route_.method.lower()]
    if body is not None and "requestBody" in op:
        rb = _resolve(raw, op["requestBody"])
        schema = rb["content"]["application/json"]["schema"]
        unknown = _unknown_keys(raw, body, schema)
        if unknown:
            return 422, f'Invalid request.\n\n"{unknown[0]}" is not a permitted key.', \
                [f"{k} is not a permitted key" for k in unknown]
    return None


def _unknown_query(route_: Route, query: Iterable[str]) -> list[str]:
    raw, _ = load_spec()
    item = raw["paths"][route_.template]
    op = item[route_.method.lower()]
    names = {_resolve(raw, p)["name"] for p in op.get("parameters", []) + item.get("parameters", [])
             if _resolve(raw, p)["in"] == "query"}
    return [q for q in query if q not in names]
