"""Agents (with versions): create, get, update, list, archive, list versions."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from anthropic.types.beta import BetaManagedAgentsAgent, agent_create_params, agent_update_params

from ..common import ApiError, BUILTIN_TOOLS, CUSTOM_TOOL_NAME, _JSON, _bad, _not_found, _parse_dt, new_id
from ..validation import _check_metadata, _patch_metadata, validate_params


class AgentRoutes:
    """``/v1/agents`` and what normalizing an agent's model, tools, MCP servers and roster takes."""

    def _get_agent_rec(self, agent_id: str) -> dict:
        a = self.agents.get(agent_id)
        if a is None:
            raise _not_found("agent", agent_id)
        return a

    def _render_agent(self, agent_id: str, version: int | None = None) -> dict:
        a = self._get_agent_rec(agent_id)
        if version is None:
            snap = a["versions"][-1]
        else:
            if version < 1 or version > len(a["versions"]):
                raise _not_found(f"agent {agent_id} version", str(version))
            snap = a["versions"][version - 1]
        out = dict(snap)
        out["archived_at"] = a["archived_at"]
        return out

    def _normalize_model(self, model: Any, prev: dict | None) -> dict:
        if isinstance(model, str):
            cfg: dict[str, Any] = {"id": model}
        else:
            cfg = {"id": model["id"]}
            if model.get("speed") is not None:
                cfg["speed"] = model["speed"]
            if model.get("inference_geo") is not None:
                cfg["inference_geo"] = model["inference_geo"]
            if model.get("effort") is not None:
                eff = model["effort"]
                cfg["effort"] = {"type": eff} if isinstance(eff, str) else {"type": eff["type"]}
        if "effort" not in cfg:
            cfg["effort"] = (prev or {}).get("effort") or {"type": "high"}
        if not cfg["id"]:
            raise _bad("model: id must not be empty")
        return cfg

    @staticmethod
    def _policy(p: Any, default: dict) -> dict:
        return {"type": p["type"]} if p else dict(default)

    def _normalize_tools(self, tools: list[dict] | None, mcp_servers: list[dict]) -> list[dict]:
        tools = tools or []
        if len(tools) > 256:
            raise _bad("tools: at most 256 tools")
        out = []
        custom_names: set[str] = set()
        server_names = {s["name"] for s in mcp_servers}
        referenced: set[str] = set()
        toolsets = 0
        for i, t in enumerate(tools):
            kind = t["type"]
            if kind == "agent_toolset_20260401":
                toolsets += 1
                dc = t.get("default_config") or {}
                d_enabled = dc.get("enabled") if dc.get("enabled") is not None else True
                d_policy = self._policy(dc.get("permission_policy"), {"type": "always_allow"})
                given: dict[str, dict] = {}
                for c in t.get("configs") or []:
                    if c["name"] in given:
                        raise _bad(f"tools[{i}].configs: {c['name']!r} appears twice")
                    if c.get("type") is not None and c["type"] != c["name"]:
                        raise _bad(f"tools[{i}].configs: type {c['type']!r} does not match name {c['name']!r}")
                    if c.get("allowed_domains") and c.get("blocked_domains"):
                        raise _bad(f"tools[{i}].configs.{c['name']}: allowed_domains and blocked_domains are exclusive")
                    for k in ("allowed_domains", "blocked_domains"):
                        if c.get(k) is not None and len(c[k]) > 64:
                            raise _bad(f"tools[{i}].configs.{c['name']}.{k}: at most 64 domains")
                    given[c["name"]] = c
                configs = []
                for name in BUILTIN_TOOLS:
                    c = given.get(name, {})
                    cfg: dict[str, Any] = {
                        "name": name,
                        "type": name,
                        "enabled": c.get("enabled") if c.get("enabled") is not None else d_enabled,
                        "permission_policy": self._policy(c.get("permission_policy"), d_policy),
                    }
                    for k in ("allowed_domains", "blocked_domains", "max_content_tokens", "url_sources", "user_location"):
                        if c.get(k) is not None:
                            cfg[k] = c[k]
                    configs.append(cfg)
                out.append({"type": kind, "default_config": {"enabled": d_enabled, "permission_policy": d_policy}, "configs": configs})
            elif kind == "mcp_toolset":
                name = t["mcp_server_name"]
                if name not in server_names:
                    raise _bad(f"tools[{i}]: mcp_toolset references unknown MCP server {name!r}")
                referenced.add(name)
                dc = t.get("default_config") or {}
                d_enabled = dc.get("enabled") if dc.get("enabled") is not None else True
                d_policy = self._policy(dc.get("permission_policy"), {"type": "always_ask"})
                configs = [
                    {
                        "name": c["name"],
                        "enabled": c.get("enabled") if c.get("enabled") is not None else d_enabled,
                        "permission_policy": self._policy(c.get("permission_policy"), d_policy),
                    }
                    for c in t.get("configs") or []
                ]
                out.append({"type": kind, "mcp_server_name": name, "default_config": {"enabled": d_enabled, "permission_policy": d_policy}, "configs": configs})
            else:  # custom
                name = t["name"]
                if not CUSTOM_TOOL_NAME.match(name):
                    raise _bad(f"tools[{i}].name: {name!r} must be 1-128 characters of [A-Za-z0-9_-]")
                if name in custom_names:
                    raise _bad(f"tools[{i}].name: duplicate custom tool name {name!r}")
                if name in BUILTIN_TOOLS:
                    raise _bad(f"tools[{i}].name: {name!r} clashes with a built-in tool")
                custom_names.add(name)
                schema = dict(t["input_schema"])
                out.append({"type": "custom", "name": name, "description": t["description"], "input_schema": schema})
        if toolsets > 1:
            raise _bad("tools: agent_toolset_20260401 may appear at most once")
        unreferenced = server_names - referenced
        if unreferenced:
            raise _bad(f"mcp_servers: {sorted(unreferenced)} not referenced by any mcp_toolset in tools")
        return out

    def _normalize_mcp(self, servers: list[dict] | None) -> list[dict]:
        servers = servers or []
        if len(servers) > 20:
            raise _bad("mcp_servers: at most 20")
        names = [s["name"] for s in servers]
        if len(set(names)) != len(names):
            raise _bad("mcp_servers: names must be unique")
        return [{"type": "url", "name": s["name"], "url": s["url"]} for s in servers]

    def _resolve_roster_entry(self, entry: Any, *, self_id: str | None, self_version: int, where: str) -> dict:
        if isinstance(entry, str):
            entry = {"type": "agent", "id": entry}
        kind = entry.get("type")
        if kind == "self":
            return {"type": "agent", "id": self_id or "__self__", "version": self_version}
        if kind == "advisor":
            return {"type": "advisor", "model": entry["model"]}
        aid = entry["id"]
        a = self.agents.get(aid)
        if a is None:
            raise _bad(f"{where}: agent {aid!r} does not exist")
        if a["archived_at"]:
            raise _bad(f"{where}: agent {aid!r} is archived")
        version = entry.get("version") or len(a["versions"])
        if version < 1 or version > len(a["versions"]):
            raise _bad(f"{where}: agent {aid!r} has no version {version}")
        if a["versions"][version - 1].get("multiagent"):
            raise _bad(f"{where}: agent {aid!r} has multiagent set itself (depth limit 1)")
        return {"type": "agent", "id": aid, "version": version}

    def _normalize_multiagent(self, ma: Any, *, self_id: str | None, self_version: int, prev: dict | None) -> dict | None:
        if ma is None:
            return None
        if ma["type"] == "coordinator":
            entries = list(ma["agents"])
            if not 1 <= len(entries) <= 20:
                raise _bad("multiagent.agents: 1 to 20 entries")
            if sum(1 for e in entries if isinstance(e, dict) and e.get("type") == "self") > 1:
                raise _bad("multiagent.agents: {type: self} at most once")
            if sum(1 for e in entries if isinstance(e, dict) and e.get("type") == "advisor") > 1:
                raise _bad("multiagent.agents: at most one advisor")
            resolved = [self._resolve_roster_entry(e, self_id=self_id, self_version=self_version, where="multiagent.agents") for e in entries]
            ids = [r["id"] for r in resolved if r["type"] == "agent"]
            if len(set(ids)) != len(ids):
                raise _bad("multiagent.agents: each agent may appear only once")
            return {"type": "coordinator", "agents": resolved}
        # multiagent_20261001
        base = prev if prev and prev.get("type") == "multiagent_20261001" else None
        out: dict[str, Any] = {"type": "multiagent_20261001"}
        for part in ("subagents", "workflows"):
            sec = ma.get(part)
            stored = (base or {}).get(part)
            if sec is None:
                out[part] = stored or {"type": "enabled", "inline_agents": {"type": "enabled"}, "predefined_agents": []}
                continue
            if sec["type"] == "disabled":
                out[part] = {"type": "disabled"}
                continue
            inline = sec.get("inline_agents") or ((stored or {}).get("inline_agents") if stored and stored.get("type") == "enabled" else None) or {"type": "enabled"}
            if sec.get("predefined_agents") is not None:
                pre = list(sec["predefined_agents"])
                if len(pre) > 20:
                    raise _bad(f"multiagent.{part}.predefined_agents: at most 20")
                refs = [self._resolve_roster_entry(e, self_id=self_id, self_version=self_version, where=f"multiagent.{part}.predefined_agents") for e in pre]
            else:
                refs = list((stored or {}).get("predefined_agents") or []) if stored and stored.get("type") == "enabled" else []
            if inline["type"] == "disabled" and not refs:
                raise _bad(f"multiagent.{part}: inline_agents disabled needs at least one predefined agent")
            out[part] = {"type": "enabled", "inline_agents": {"type": inline["type"]}, "predefined_agents": refs}
        adv = ma.get("advisor")
        if adv is None:
            out["advisor"] = (base or {}).get("advisor") or {"type": "disabled"}
        else:
            out["advisor"] = {"type": "enabled", "model": adv["model"]} if adv["type"] == "enabled" else {"type": "disabled"}
        return out

    def _fix_self_refs(self, ma: dict | None, agent_id: str) -> dict | None:
        if not ma:
            return ma
        def fix(ref: dict) -> dict:
            if ref.get("id") == "__self__":
                return {**ref, "id": agent_id}
            return ref
        ma = json.loads(json.dumps(ma))
        if ma["type"] == "coordinator":
            ma["agents"] = [fix(r) for r in ma["agents"]]
        else:
            for part in ("subagents", "workflows"):
                if ma[part]["type"] == "enabled":
                    ma[part]["predefined_agents"] = [fix(r) for r in ma[part]["predefined_agents"]]
        return ma

    def _normalize_skills(self, skills: list[dict] | None) -> list[dict]:
        return [{"type": s["type"], "skill_id": s["skill_id"], "version": s.get("version") or "latest"} for s in skills or []]

    async def _create_agent(self, request: web.Request) -> web.Response:
        self._query(request, ())
        body = validate_params(agent_create_params.AgentCreateParams, request[_JSON])
        if not body["name"]:
            raise _bad("name: must not be empty")
        _check_metadata(body.get("metadata"))
        mcp = self._normalize_mcp(body.get("mcp_servers"))
        tools = self._normalize_tools(body.get("tools"), mcp)
        agent_id = new_id("agent")
        ma = self._fix_self_refs(self._normalize_multiagent(body.get("multiagent"), self_id=None, self_version=1, prev=None), agent_id)
        now = self.clock.iso()
        snap = {
            "id": agent_id,
            "type": "agent",
            "version": 1,
            "name": body["name"],
            "description": body.get("description"),
            "system": body.get("system"),
            "model": self._normalize_model(body["model"], None),
            "tools": tools,
            "mcp_servers": mcp,
            "skills": self._normalize_skills(body.get("skills")),
            "multiagent": ma,
            "metadata": dict(body.get("metadata") or {}),
            "execution_identity": body.get("execution_identity") or {"type": "service_account"},
            "created_at": now,
            "updated_at": now,
            "archived_at": None,
        }
        self.agents[agent_id] = {"versions": [snap], "archived_at": None}
        return self._json(self._render_agent(agent_id), BetaManagedAgentsAgent)

    async def _get_agent(self, request: web.Request) -> web.Response:
        q = self._query(request, ("version",))
        raw = self._one(q, "version")
        version = None
        if raw is not None:
            try:
                version = int(raw)
            except ValueError:
                raise _bad(f"version: must be an integer, got {raw!r}")
            if version < 1:
                raise _bad("version: must be at least 1")
        return self._json(self._render_agent(request.match_info["agent_id"], version), BetaManagedAgentsAgent)

    async def _update_agent(self, request: web.Request) -> web.Response:
        self._query(request, ())
        agent_id = request.match_info["agent_id"]
        a = self._get_agent_rec(agent_id)
        body = validate_params(agent_update_params.AgentUpdateParams, request[_JSON])
        if a["archived_at"]:
            raise _bad(f"agent {agent_id} is archived and cannot be updated")
        cur = a["versions"][-1]
        if "version" in body and body["version"] != cur["version"]:
            self.conflicts.append(f"agent {agent_id}: update for version {body['version']} but current is {cur['version']}")
            raise ApiError(409, "invalid_request_error", f"version mismatch: current version is {cur['version']}, got {body['version']}", violation=False)
        new = dict(cur)
        if "name" in body:
            if not body["name"]:
                raise _bad("name: cannot be cleared")
            new["name"] = body["name"]
        for k in ("description", "system"):
            if k in body:
                new[k] = body[k]
        if "model" in body:
            if body["model"] is None:
                raise _bad("model: cannot be cleared")
            new["model"] = self._normalize_model(body["model"], cur["model"])
        if "metadata" in body:
            md = _patch_metadata(cur["metadata"], body["metadata"])
            _check_metadata(body["metadata"])
            _check_metadata(md)
            new["metadata"] = md
        if "execution_identity" in body:
            new["execution_identity"] = body["execution_identity"] or {"type": "service_account"}
        mcp = self._normalize_mcp(body["mcp_servers"]) if "mcp_servers" in body else cur["mcp_servers"]
        new["mcp_servers"] = mcp
        if "tools" in body:
            new["tools"] = self._normalize_tools(body["tools"], mcp)
        elif "mcp_servers" in body:
            # re-check references against the stored tools
            self._normalize_tools(_denormalize_tools(cur["tools"]), mcp)
        if "skills" in body:
            new["skills"] = self._normalize_skills(body["skills"])
        next_version = cur["version"] + 1
        if "multiagent" in body:
            new["multiagent"] = self._fix_self_refs(
                self._normalize_multiagent(body["multiagent"], self_id=agent_id, self_version=next_version, prev=cur.get("multiagent")), agent_id
            )
        comparable = lambda d: {k: v for k, v in d.items() if k not in ("version", "updated_at", "created_at", "archived_at")}
        if comparable(new) == comparable(cur):
            return self._json(self._render_agent(agent_id), BetaManagedAgentsAgent)
        new["version"] = next_version
        new["updated_at"] = self.clock.iso()
        a["versions"].append(new)
        return self._json(self._render_agent(agent_id), BetaManagedAgentsAgent)

    async def _list_agents(self, request: web.Request) -> web.Response:
        q = self._query(request, ("created_at[gte]", "created_at[lte]", "include_archived", "limit", "page"))
        include_archived = self._bool(q, "include_archived")
        filters = self._time_filters(q)
        items = []
        for aid, a in self.agents.items():
            if a["archived_at"] and not include_archived:
                continue
            created = _parse_dt(a["versions"][0]["created_at"])
            if all(f(created) for f in filters):
                items.append(self._render_agent(aid))
        items.reverse()  # newest first
        return self._paginate_offset(q, items, BetaManagedAgentsAgent, default=20, maximum=100)

    async def _archive_agent(self, request: web.Request) -> web.Response:
        self._query(request, ())
        agent_id = request.match_info["agent_id"]
        a = self._get_agent_rec(agent_id)
        if not a["archived_at"]:
            a["archived_at"] = self.clock.iso()
        return self._json(self._render_agent(agent_id), BetaManagedAgentsAgent)

    async def _list_agent_versions(self, request: web.Request) -> web.Response:
        q = self._query(request, ("limit", "page"))
        agent_id = request.match_info["agent_id"]
        a = self._get_agent_rec(agent_id)
        items = [self._render_agent(agent_id, v) for v in range(len(a["versions"]), 0, -1)]
        return self._paginate_offset(q, items, BetaManagedAgentsAgent, default=20, maximum=100)


def _denormalize_tools(tools: list[dict]) -> list[dict]:
    """Stored tools back to param shape (only used to re-check MCP references)."""
    out = []
    for t in tools:
        if t["type"] == "mcp_toolset":
            out.append({"type": "mcp_toolset", "mcp_server_name": t["mcp_server_name"]})
        elif t["type"] == "custom":
            out.append({"type": "custom", "name": t["name"], "description": t["description"], "input_schema": t["input_schema"]})
        else:
            out.append({"type": t["type"], "default_config": t["default_config"], "configs": [{k: v for k, v in c.items()} for c in t["configs"]]})
    return out
