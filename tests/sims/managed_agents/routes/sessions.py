"""Sessions, their resources and threads."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aiohttp import web

from anthropic.types.beta import (
    BetaManagedAgentsDeletedSession, BetaManagedAgentsSession, session_create_params, session_update_params,
)
from anthropic.types.beta.sessions import (
    BetaManagedAgentsDeleteSessionResource, BetaManagedAgentsFileResource, BetaManagedAgentsSessionResource,
    BetaManagedAgentsSessionThread, ResourceRetrieveResponse, ResourceUpdateResponse, resource_add_params,
    resource_update_params,
)

from ..common import ApiError, GITHUB_URL_RE, _JSON, _bad, _not_found, _parse_dt, new_id
from ..ready import end_turn_only
from .agents import _denormalize_tools
from ..script import Script, ScriptLike, _CLOSE
from ..session import SimSession, _public_resource
from ..validation import _check_budget, _check_metadata, _check_vault_ids, _patch_metadata, validate_params


class SessionRoutes:
    """``/v1/sessions``, ``.../resources`` and ``.../threads``."""

    def _session_agent_snapshot(self, spec: Any) -> dict:
        if isinstance(spec, str):
            spec = {"type": "agent", "id": spec}
        aid = spec["id"]
        a = self.agents.get(aid)
        if a is None:
            raise ApiError(404, "not_found_error", f"agent {aid!r} not found")
        if a["archived_at"]:
            raise _bad(f"agent {aid} is archived")
        version = spec.get("version")
        if version is not None and not 1 <= version <= len(a["versions"]):
            raise _bad(f"agent {aid} has no version {version}")
        base = a["versions"][(version or len(a["versions"])) - 1]
        snap = {k: base[k] for k in ("id", "type", "version", "name", "description", "system", "model", "tools", "mcp_servers", "skills", "execution_identity")}
        snap["multiagent"] = self._session_multiagent(base.get("multiagent"), base)
        if spec.get("type") == "agent_with_overrides":
            mcp = self._normalize_mcp(spec["mcp_servers"]) if "mcp_servers" in spec else snap["mcp_servers"]
            snap["mcp_servers"] = mcp
            if "model" in spec:
                snap["model"] = self._normalize_model(spec["model"], None)
            if "system" in spec:
                if spec["system"] is not None and len(spec["system"]) > 100_000:
                    raise _bad("agent.system: at most 100,000 characters")
                snap["system"] = spec["system"]
            if "tools" in spec:
                snap["tools"] = self._normalize_tools(spec["tools"], mcp)
            elif "mcp_servers" in spec:
                self._normalize_tools(_denormalize_tools(snap["tools"]), mcp)
            if "skills" in spec:
                snap["skills"] = self._normalize_skills(spec["skills"])
        return snap

    def _thread_agent_snapshot(self, ref: dict, owner: dict) -> dict:
        if ref["type"] == "advisor":
            return {"type": "advisor", "model": ref["model"]}
        if ref["id"] == owner["id"]:
            v = owner
        else:
            v = self.agents[ref["id"]]["versions"][ref["version"] - 1]
        return {k: v[k] for k in ("id", "type", "version", "name", "description", "system", "model", "tools", "mcp_servers", "skills", "execution_identity")}

    def _session_multiagent(self, ma: dict | None, owner: dict) -> dict | None:
        if not ma:
            return None
        if ma["type"] == "coordinator":
            return {"type": "coordinator", "agents": [self._thread_agent_snapshot(r, owner) for r in ma["agents"]]}
        out: dict[str, Any] = {"type": ma["type"], "advisor": ma["advisor"]}
        for part in ("subagents", "workflows"):
            sec = ma[part]
            if sec["type"] == "enabled":
                out[part] = {"type": "enabled", "inline_agents": sec["inline_agents"], "predefined_agents": [self._thread_agent_snapshot(r, owner) for r in sec["predefined_agents"]]}
            else:
                out[part] = sec
        return out

    def _build_resource(self, r: dict, now: str, i: int) -> dict:
        kind = r["type"]
        if kind == "github_repository":
            if not GITHUB_URL_RE.match(r["url"]):
                raise _bad(f"resources[{i}].url: not a GitHub repository URL: {r['url']!r}")
            mount = r.get("mount_path") or "/workspace/" + r["url"].rstrip("/").split("/")[-1].removesuffix(".git")
            out = {"id": new_id("sres"), "type": kind, "url": r["url"], "mount_path": mount, "checkout": r.get("checkout"), "created_at": now, "updated_at": now}
            out["_token"] = r.get("authorization_token")
        elif kind == "file":
            if not r["file_id"].startswith("file_"):
                raise _bad(f"resources[{i}].file_id: not a file id: {r['file_id']!r}")
            mount = r.get("mount_path") or f"/mnt/session/uploads/{r['file_id']}"
            out = {"id": new_id("sres"), "type": kind, "file_id": r["file_id"], "mount_path": mount, "created_at": now, "updated_at": now}
        else:
            if r.get("instructions") is not None and len(r["instructions"]) > 4096:
                raise _bad(f"resources[{i}].instructions: at most 4096 characters")
            name = r["memory_store_id"]
            out = {"type": kind, "memory_store_id": r["memory_store_id"], "access": r.get("access") or "read_write", "instructions": r.get("instructions"), "name": name, "mount_path": f"/mnt/memory/{name}"}
        if not out.get("mount_path", "/").startswith("/"):
            raise _bad(f"resources[{i}].mount_path: must be absolute")
        return out

    def _choose_script(self, body: dict, agent: dict | None = None) -> Script:
        chosen: ScriptLike | None = None
        if self.router_script is not None and not body.get("resources") and (agent or {}).get("name") == "router":
            chosen = self.router_script  # before the rest: tests that queue review scripts keep working
        if self.verifier_script is not None and (agent or {}).get("name") == "verifier":
            chosen = self.verifier_script  # likewise: the fix session keeps the script a test queued for it
        name = (body.get("metadata") or {}).get("script")
        if chosen is None and name is not None and name in self.scripts:
            chosen = self.scripts[name]
        if chosen is None and self._script_for is not None:
            chosen = self._script_for(body)
        if chosen is None and self._script_queue:
            chosen = self._script_queue.pop(0)
        if chosen is None:
            chosen = self.default_script
        if chosen is None:
            chosen = end_turn_only()
        if not isinstance(chosen, Script):
            chosen = chosen()
        return chosen

    async def _create_session(self, request: web.Request) -> web.Response:
        self._query(request, ())
        body = validate_params(session_create_params.SessionCreateParams, request[_JSON])
        agent = self._session_agent_snapshot(body["agent"])
        env = self.environments.get(body["environment_id"])
        if env is None:
            raise ApiError(404, "not_found_error", f"environment {body['environment_id']!r} not found", violation=True)
        if env["archived_at"]:
            raise _bad("environment is archived", error_code="environment_archived")
        _check_metadata(body.get("metadata"))
        _check_budget(body.get("budget"))
        _check_vault_ids(body.get("vault_ids"))
        initial = list(body.get("initial_events") or [])
        if len(initial) > 50:
            raise _bad("initial_events: at most 50")
        for i, ev in enumerate(initial):
            if ev["type"] not in ("user.message", "user.define_outcome"):
                raise _bad(f"initial_events[{i}]: type {ev['type']!r} not allowed")
            if ev["type"] == "user.message" and not ev.get("content"):
                raise _bad(f"initial_events[{i}].content: must not be empty")
        now = self.clock.iso()
        resources = [self._build_resource(r, now, i) for i, r in enumerate(body.get("resources") or [])]
        mounts = [r["mount_path"] for r in resources]
        if len(set(mounts)) != len(mounts):
            raise _bad("resources: mount paths must be unique")
        record = {
            "id": new_id("sesn"),
            "environment_id": env["id"],
            "metadata": dict(body.get("metadata") or {}),
            "title": body.get("title"),
            "vault_ids": list(body.get("vault_ids") or []),
            "budget": body.get("budget"),
            "resources": resources,
            "created_at": now,
        }
        s = SimSession(self, record, agent, self._choose_script(body, agent))
        self.sessions[s.id] = s
        for ev in initial:
            self._apply_user_event(s, ev)
        return self._json(s.render(), BetaManagedAgentsSession)

    async def _get_session(self, request: web.Request) -> web.Response:
        self._query(request, ())
        return self._json(self._session(request).render(), BetaManagedAgentsSession)

    def _session(self, request: web.Request) -> SimSession:
        sid = request.match_info["sid"]
        s = self.sessions.get(sid)
        if s is None:
            raise _not_found("session", sid)
        return s

    async def _update_session(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        body = validate_params(session_update_params.SessionUpdateParams, request[_JSON])
        if "vault_ids" in body:
            raise _bad("vault_ids: cannot be set on update (reserved)")
        changed: dict[str, Any] = {}
        if "metadata" in body:
            _check_metadata(body["metadata"])
            md = _patch_metadata(s.metadata, body["metadata"])
            _check_metadata(md)
            if md != s.metadata:
                s.metadata = md
                changed["metadata"] = dict(md)
        if "title" in body and body["title"] != s.title:
            s.title = body["title"]
            changed["title"] = s.title
        if "budget" in body:
            nb = body["budget"]
            if s.budget is None and getattr(s, "_budget_removed", False) and nb is not None:
                raise _bad("budget: a removed budget cannot be re-added", error_code="budget_create_only")
            if s.budget is None and nb is not None:
                raise _bad("budget: a budget can only be set at session create", error_code="budget_create_only")
            if nb is not None:
                _check_budget(nb)
                if Decimal(nb["max_list_cost"]["amount"]) <= s.cost_cents():
                    raise _bad("budget: must be above the cost already spent", error_code="budget_not_raised")
            else:
                s._budget_removed = True  # type: ignore[attr-defined]
            s.budget = nb
            changed["budget"] = nb
        if "agent" in body:
            if s.status == "running":
                raise _bad("agent: the session must not be running to update its agent")
            upd = body["agent"]
            mcp = self._normalize_mcp(upd["mcp_servers"]) if "mcp_servers" in upd else s.agent["mcp_servers"]
            tools = self._normalize_tools(upd["tools"], mcp) if "tools" in upd else self._normalize_tools(_denormalize_tools(s.agent["tools"]), mcp)
            s.agent = {**s.agent, "mcp_servers": mcp, "tools": tools}
            changed["agent"] = s.agent
        if changed:
            s.updated_at = self.clock.iso()
            self._emit(s, "session.updated", thread_id=None, fields=changed)
        return self._json(s.render(), BetaManagedAgentsSession)

    async def _list_sessions(self, request: web.Request) -> web.Response:
        q = self._query(
            request,
            ("agent_id", "agent_version", "created_at[gt]", "created_at[gte]", "created_at[lt]", "created_at[lte]", "deployment_id",
             "include_archived", "limit", "memory_store_id", "order", "page", "statuses[]"),
        )
        include_archived = self._bool(q, "include_archived")
        order = self._one(q, "order") or "desc"
        if order not in ("asc", "desc"):
            raise _bad(f"order: must be asc or desc, got {order!r}")
        statuses = q.get("statuses[]") or []
        bad = [x for x in statuses if x not in ("idle", "running", "rescheduling", "terminated")]
        if bad:
            raise _bad(f"statuses: unknown status(es) {bad}")
        agent_id = self._one(q, "agent_id")
        agent_version = self._one(q, "agent_version")
        filters = self._time_filters(q)
        items = []
        for s in self.sessions.values():
            if s.archived_at and not include_archived:
                continue
            if statuses and s.status not in statuses:
                continue
            if agent_id and s.agent["id"] != agent_id:
                continue
            if agent_version and str(s.agent["version"]) != agent_version:
                continue
            if self._one(q, "deployment_id"):
                continue
            if self._one(q, "memory_store_id") and not any(r.get("memory_store_id") == self._one(q, "memory_store_id") for r in s.resources):
                continue
            if all(f(_parse_dt(s.created_at)) for f in filters):
                items.append(s.render())
        if order == "desc":
            items.reverse()
        return self._paginate_offset(q, items, BetaManagedAgentsSession, default=20, maximum=1000, bidirectional=True)

    async def _delete_session(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        if s.status == "running":
            raise _bad("cannot delete a running session; interrupt it first")
        self._stop_session_tasks(s)
        for sub in list(s.subscribers):
            sub.queue.put_nowait(_CLOSE)
        del self.sessions[s.id]
        self.deleted_sessions.add(s.id)
        return self._json({"id": s.id, "type": "session_deleted"}, BetaManagedAgentsDeletedSession)

    async def _archive_session(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        if s.status == "running":
            raise _bad("cannot archive a running session; interrupt it first")
        if not s.archived_at:
            s.archived_at = self.clock.iso()
        return self._json(s.render(), BetaManagedAgentsSession)

    # -- resources -------------------------------------------------------------------
    def _resource(self, s: SimSession, rid: str) -> dict:
        for r in s.resources:
            if r.get("id") == rid:
                return r
        raise _not_found("session resource", rid)

    async def _list_resources(self, request: web.Request) -> web.Response:
        q = self._query(request, ("limit", "page"))
        s = self._session(request)
        items = [_public_resource(r) for r in s.resources]
        return self._paginate_offset(q, items, BetaManagedAgentsSessionResource, default=1000, maximum=1000)

    async def _add_resource(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        body = validate_params(resource_add_params.ResourceAddParams, request[_JSON])
        r = self._build_resource(body, self.clock.iso(), len(s.resources))
        if any(x.get("mount_path") == r["mount_path"] for x in s.resources):
            raise _bad("mount_path already in use")
        s.resources.append(r)
        return self._json(_public_resource(r), BetaManagedAgentsFileResource)

    async def _get_resource(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        return self._json(_public_resource(self._resource(s, request.match_info["rid"])), ResourceRetrieveResponse)

    async def _update_resource(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        r = self._resource(s, request.match_info["rid"])
        body = validate_params(resource_update_params.ResourceUpdateParams, request[_JSON], path_params={"session_id": s.id})
        if r["type"] != "github_repository":
            raise _bad("only github_repository resources can be updated")
        if not body["authorization_token"]:
            raise _bad("authorization_token: must not be empty")
        r["_token"] = body["authorization_token"]
        r["_token_updates"] = r.get("_token_updates", 0) + 1
        r["updated_at"] = self.clock.iso()
        return self._json(_public_resource(r), ResourceUpdateResponse)

    async def _delete_resource(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        r = self._resource(s, request.match_info["rid"])
        s.resources.remove(r)
        return self._json({"id": r["id"], "type": "session_resource_deleted"}, BetaManagedAgentsDeleteSessionResource)

    # -- threads ---------------------------------------------------------------------
    def _thread(self, s: SimSession, request: web.Request) -> str:
        tid = request.match_info["tid"]
        if tid not in s.threads:
            raise _not_found("thread", tid)
        return tid

    async def _list_threads(self, request: web.Request) -> web.Response:
        q = self._query(request, ("limit", "page", "statuses[]"))
        s = self._session(request)
        statuses = q.get("statuses[]") or []
        items = [s.render_thread(t) for t in s.threads if not statuses or s.threads[t]["status"] in statuses]
        return self._paginate_offset(q, items, BetaManagedAgentsSessionThread, default=1000, maximum=1000)

    async def _get_thread(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        return self._json(s.render_thread(self._thread(s, request)), BetaManagedAgentsSessionThread)

    async def _archive_thread(self, request: web.Request) -> web.Response:
        self._query(request, ())
        s = self._session(request)
        tid = self._thread(s, request)
        if tid == s.primary_thread_id:
            raise _bad("the primary thread cannot be archived")
        if not s.threads[tid]["archived_at"]:
            s.threads[tid]["archived_at"] = self.clock.iso()
        return self._json(s.render_thread(tid), BetaManagedAgentsSessionThread)

    async def _list_thread_events(self, request: web.Request) -> web.Response:
        q = self._query(request, ("limit", "page"))
        s = self._session(request)
        tid = self._thread(s, request)
        return self._paginate_log(q, s.thread_logs[tid], order="asc", types=[], filters=[], default=100, maximum=1000)

    async def _stream_thread(self, request: web.Request) -> web.StreamResponse:
        self._query(request, ("event_deltas[]",))
        s = self._session(request)
        tid = self._thread(s, request)
        return await self._stream(request, s, thread_id=tid)
