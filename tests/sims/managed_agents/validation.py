"""Validation against the SDK's own types.

Request bodies are checked against the SDK's param ``TypedDict``s (types *and* unknown keys) plus
the documented rules; responses and events against the SDK's response models.
"""

from __future__ import annotations

import collections.abc
import re
import types
import typing
from typing import Any, Iterable

import pydantic
import typing_extensions as te

from .common import AMOUNT_RE, SimulatorBug, _bad

VAULT_ID_RE = re.compile(r"^vlt_[A-Za-z0-9]+$")


_ADAPTERS: dict[Any, pydantic.TypeAdapter] = {}


def _adapter(tp: Any) -> pydantic.TypeAdapter:
    ta = _ADAPTERS.get(tp)
    if ta is None:
        ta = _ADAPTERS[tp] = pydantic.TypeAdapter(tp)
    return ta


def _drain(value: Any) -> None:
    """Exhaust pydantic's lazy ``Iterable`` validators so nested errors surface."""
    if isinstance(value, dict):
        for v in value.values():
            _drain(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _drain(v)
    elif isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return
    elif hasattr(value, "__next__"):
        for v in list(value):
            _drain(v)


_WRAPPERS = {te.Required, te.NotRequired, typing.Required, typing.NotRequired}
if hasattr(te, "ReadOnly"):
    _WRAPPERS.add(te.ReadOnly)
_NO_EXTRA = getattr(te, "NoExtraItems", None)
_HINTS: dict[Any, dict[str, Any]] = {}


def _strip(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated or origin in _WRAPPERS:
            tp = typing.get_args(tp)[0]
            continue
        return tp


def _hints(td: Any) -> dict[str, Any]:
    h = _HINTS.get(td)
    if h is None:
        h = _HINTS[td] = {k: _strip(v) for k, v in typing.get_type_hints(td, include_extras=True).items()}
    return h


def _is_union(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin is typing.Union or origin is types.UnionType


def _literal_values(tp: Any) -> tuple | None:
    tp = _strip(tp)
    if typing.get_origin(tp) is typing.Literal:
        return typing.get_args(tp)
    return None


def _shape(tp: Any) -> str:
    tp = _strip(tp)
    if te.is_typeddict(tp):
        return "object"
    if _is_union(tp):
        shapes = {_shape(a) for a in typing.get_args(tp)}
        return "union:" + ",".join(sorted(shapes))
    origin = typing.get_origin(tp)
    if origin in (dict, collections.abc.Mapping) or tp in (dict, object, typing.Any):
        return "object"
    if origin in (list, tuple, set, collections.abc.Iterable, collections.abc.Sequence):
        return "array"
    if origin is not None and len(typing.get_args(tp)) == 1:  # SequenceNotStr[str] and friends
        return "array"
    return "scalar"


def _accepts(tp: Any, value: Any) -> bool:
    tp = _strip(tp)
    if value is None:
        return True
    if te.is_typeddict(tp):
        if not isinstance(value, dict):
            return False
        lit = _literal_values(_hints(tp).get("type", type(None)))
        return lit is None or value.get("type") in lit
    if _is_union(tp):
        return any(_accepts(a, value) for a in typing.get_args(tp))
    shape = _shape(tp)
    if isinstance(value, dict):
        return shape == "object"
    if isinstance(value, list):
        return shape == "array"
    return shape == "scalar"


def _unknown_keys(tp: Any, value: Any, path: str) -> list[str]:
    tp = _strip(tp)
    if value is None or tp in (object, typing.Any):
        return []
    if te.is_typeddict(tp):
        if not isinstance(value, dict):
            return []
        hints = _hints(tp)
        extra = getattr(tp, "__extra_items__", _NO_EXTRA)
        extra_allowed = extra is not None and extra is not _NO_EXTRA
        out: list[str] = []
        for k, v in value.items():
            if k not in hints:
                if not extra_allowed:
                    out.append(f"{path}.{k}" if path else k)
                continue
            out += _unknown_keys(hints[k], v, f"{path}.{k}" if path else k)
        return out
    if _is_union(tp):
        best: list[str] | None = None
        for member in typing.get_args(tp):
            if member is type(None) or not _accepts(member, value):
                continue
            found = _unknown_keys(member, value, path)
            if best is None or len(found) < len(best):
                best = found
        return best or []
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(value, dict) and origin in (dict, collections.abc.Mapping) and len(args) == 2:
        out = []
        for k, v in value.items():
            out += _unknown_keys(args[1], v, f"{path}.{k}")
        return out
    if isinstance(value, list) and args:
        out = []
        for i, v in enumerate(value):
            out += _unknown_keys(args[0], v, f"{path}[{i}]")
        return out
    return []


def _format_pydantic(err: pydantic.ValidationError, prefix: str = "") -> str:
    parts = []
    for e in err.errors()[:6]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if not str(x).startswith("function-"))
        parts.append(f"{prefix}{loc}: {e.get('msg')}")
    more = len(err.errors()) - 6
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


def validate_params(
    param_type: Any,
    body: Any,
    *,
    not_body: Iterable[str] = ("betas", "workspace_id"),
    path_params: dict[str, str] | None = None,
) -> dict:
    """Validate a JSON request body against an SDK param TypedDict (types, required keys, unknown keys).

    ``not_body`` keys of the TypedDict travel as headers or path parameters and must not be in
    the body; ``path_params`` supplies the (required) ones for type checking."""
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object")
    not_body = tuple(not_body) + tuple(path_params or ())
    problems = [f"{k}: is not a body field (the SDK sends it as a header or path parameter)" for k in not_body if k in body]
    try:
        _drain(_adapter(param_type).validate_python({**body, **(path_params or {})}, strict=True))
    except pydantic.ValidationError as e:
        problems.append(_format_pydantic(e))
    unknown = [k for k in _unknown_keys(param_type, {k: v for k, v in body.items() if k not in not_body}, "")]
    if unknown:
        problems.append("unknown field(s): " + ", ".join(unknown))
    if problems:
        raise _bad("; ".join(problems))
    return body


def check_response(tp: Any, data: Any) -> Any:
    try:
        _drain(_adapter(tp).validate_python(data))
    except pydantic.ValidationError as e:
        raise SimulatorBug(f"simulator produced a response the SDK type {tp!r} rejects: {_format_pydantic(e)}") from e
    return data


def _check_metadata(md: Any, where: str = "metadata") -> None:
    if md is None:
        return
    if not isinstance(md, dict):
        raise _bad(f"{where}: must be an object", error_code="invalid_metadata")
    problems = []
    if len(md) > 16:
        problems.append(f"{where}: at most 16 pairs (got {len(md)})")
    for k, v in md.items():
        if not k or len(k) > 64:
            problems.append(f"{where}: key {k[:70]!r} must be 1-64 characters")
        if isinstance(v, str) and len(v) > 512:
            problems.append(f"{where}.{k}: value longer than 512 characters")
    if problems:
        raise _bad("; ".join(problems), error_code="invalid_metadata")


def _patch_metadata(stored: dict, patch: dict | None) -> dict:
    out = dict(stored)
    for k, v in (patch or {}).items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def _check_budget(budget: Any) -> None:
    if budget is None:
        return
    amount = budget.get("max_list_cost", {}).get("amount", "")
    if not AMOUNT_RE.match(amount):
        raise _bad(
            "budget.max_list_cost.amount: must be a positive integer decimal string of minor units "
            f"without leading zeros (e.g. \"500\" for $5.00), got {amount!r}"
        )


def _check_vault_ids(vault_ids: Any) -> None:
    """Vault ids look like ``vlt_…`` and are named once each."""
    vault_ids = list(vault_ids or [])
    bad = [v for v in vault_ids if not VAULT_ID_RE.match(v)]
    if bad:
        raise _bad(f"vault_ids: not vault ids (vlt_…): {bad}")
    if len(set(vault_ids)) != len(vault_ids):
        raise _bad("vault_ids: each vault may be named once")
