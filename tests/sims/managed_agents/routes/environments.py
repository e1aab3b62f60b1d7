"""Environments: create, get, update, list, delete, archive."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from anthropic.types.beta import (
    BetaEnvironment, BetaEnvironmentDeleteResponse, environment_create_params, environment_update_params,
)

from ..common import _JSON, _bad, _not_found, new_id
from ..validation import _check_metadata, _patch_metadata, validate_params


class EnvironmentRoutes:
    """``/v1/environments``."""

    def _get_env_rec(self, env_id: str) -> dict:
        e = self.environments.get(env_id)
        if e is None:
            raise _not_found("environment", env_id)
        return e

    def _normalize_env_config(self, cfg: Any, prev: dict | None) -> dict:
        if cfg is None:
            if prev is not None:
                return prev
            cfg = {"type": "cloud"}
        if prev is not None and cfg["type"] != prev["type"]:
            raise _bad(f"config.type cannot change from {prev['type']!r} to {cfg['type']!r}", error_code="invalid_config_type_change")
        if cfg["type"] == "self_hosted":
            return {"type": "self_hosted"}
        if cfg.get("networking") is not None:
            n = cfg["networking"]
            if n["type"] == "limited":
                networking = {
                    "type": "limited",
                    "allowed_hosts": list(n.get("allowed_hosts") or []),
                    "allow_package_managers": bool(n.get("allow_package_managers") or False),
                    "allow_mcp_servers": bool(n.get("allow_mcp_servers") or False),
                }
            else:
                networking = {"type": "unrestricted"}
        else:
            networking = (prev or {}).get("networking") or {"type": "unrestricted"}
        if cfg.get("packages") is not None:
            p = cfg["packages"]
            packages = {"type": "packages", **{k: list(p.get(k) or []) for k in ("apt", "cargo", "gem", "go", "npm", "pip")}}
        else:
            packages = (prev or {}).get("packages") or {"type": "packages", "apt": [], "cargo": [], "gem": [], "go": [], "npm": [], "pip": []}
        has_packages = any(packages[k] for k in ("apt", "cargo", "gem", "go", "npm", "pip"))
        if networking["type"] == "limited" and has_packages and not networking["allow_package_managers"]:
            raise _bad("config: packages under limited networking require networking.allow_package_managers: true")
        return {"type": "cloud", "networking": networking, "packages": packages}

    @staticmethod
    def _check_scope(scope: Any) -> str:
        if scope == "account":
            raise _bad("scope: API organizations accept only 'organization'")
        return scope or "organization"

    async def _create_env(self, request: web.Request) -> web.Response:
        self._query(request, ())
        body = validate_params(environment_create_params.EnvironmentCreateParams, request[_JSON])
        if not body["name"]:
            raise _bad("name: must not be empty")
        _check_metadata(body.get("metadata"))
        now = self.clock.iso()
        env = {
            "id": new_id("env"),
            "type": "environment",
            "name": body["name"],
            "description": body.get("description"),
            "config": self._normalize_env_config(body.get("config"), None),
            "metadata": dict(body.get("metadata") or {}),
            "scope": self._check_scope(body.get("scope")),
            "created_at": now,
            "updated_at": now,
            "archived_at": None,
        }
        self.environments[env["id"]] = env
        return self._json(env, BetaEnvironment)

    async def _get_env(self, request: web.Request) -> web.Response:
        self._query(request, ())
        return self._json(self._get_env_rec(request.match_info["env_id"]), BetaEnvironment)

    async def _update_env(self, request: web.Request) -> web.Response:
        self._query(request, ())
        env = self._get_env_rec(request.match_info["env_id"])
        body = validate_params(environment_update_params.EnvironmentUpdateParams, request[_JSON])
        if env["archived_at"]:
            raise _bad("environment is archived", error_code="environment_archived")
        new = dict(env)
        if "name" in body:
            if not body["name"]:
                raise _bad("name: cannot be cleared")
            new["name"] = body["name"]
        if "description" in body:
            new["description"] = body["description"]
        if "config" in body and body["config"] is not None:
            new["config"] = self._normalize_env_config(body["config"], env["config"])
        if "metadata" in body:
            _check_metadata(body["metadata"])
            new["metadata"] = _patch_metadata(env["metadata"], body["metadata"])
            _check_metadata(new["metadata"])
        if "scope" in body:
            new["scope"] = self._check_scope(body["scope"])
        if new != env:
            new["updated_at"] = self.clock.iso()
        self.environments[env["id"]] = new
        return self._json(new, BetaEnvironment)

    async def _list_envs(self, request: web.Request) -> web.Response:
        q = self._query(request, ("include_archived", "limit", "page"))
        include_archived = self._bool(q, "include_archived")
        items = [e for e in self.environments.values() if include_archived or not e["archived_at"]]
        items.reverse()
        return self._paginate_offset(q, items, BetaEnvironment, default=20, maximum=100)

    async def _delete_env(self, request: web.Request) -> web.Response:
        self._query(request, ())
        env = self._get_env_rec(request.match_info["env_id"])
        del self.environments[env["id"]]
        return self._json({"id": env["id"], "type": "environment_deleted"}, BetaEnvironmentDeleteResponse)

    async def _archive_env(self, request: web.Request) -> web.Response:
        self._query(request, ())
        env = self._get_env_rec(request.match_info["env_id"])
        if not env["archived_at"]:
            env["archived_at"] = self.clock.iso()
        return self._json(env, BetaEnvironment)
