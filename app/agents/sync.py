"""Create or update the agents and environments on Anthropic, by content hash
(docs/architecture.md, "Agents and environments").

Each definition becomes one request body. Its hash (sha256 of the canonical JSON) is kept in the
object's `metadata` (`prmedic_name`, `prmedic_hash`) and in the store (`agent:<name>`,
`environment:<name>` → `{"id", "version", "hash"}`):

- store knows the object with the same hash → nothing is sent at all (no call);
- store knows it with another hash → the object is **updated** (a new version of the same agent;
  `version` is passed for optimistic concurrency, and a 409 is resolved by reading the agent back);
- store does not know it (e.g. a fresh database) → the objects on Anthropic are listed once and
  matched by `metadata.prmedic_name`; a match is adopted (and updated if its hash differs); only
  when there is none is a new one created.

Every agent is synced. Agents that call no other (sub-agents, a lead that works alone, the router)
go first; then each lead with callable agents, whose body pins them by id and version in a
`multiagent_20261001` roster (predefined agents only; inline agents, workflows and the advisor
disabled), so a change to the reviewer's prompt changes its leads' hashes too and re-versions
them: a session that names a lead's version runs exactly one snapshot of the whole team.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anthropic

from app.agents.definitions import (
    DEFAULT_ENVIRONMENT,
    AgentDefinition,
    Definitions,
    EnvironmentDefinition,
    load_definitions,
)
from app.store import Store

log = logging.getLogger("prmedic.agents")

META_NAME = "prmedic_name"
META_HASH = "prmedic_hash"
SYNC_FORMAT = 1  # part of every hash: bump to force an update of every object after a layout change

Action = Literal["created", "updated", "unchanged", "adopted"]


@dataclass(frozen=True)
class AgentRef:
    id: str
    version: int

    def param(self) -> dict[str, Any]:
        """`{"type": "agent", "id", "version"}`: for a roster entry or `sessions.create(agent=...)`."""
        return {"type": "agent", "id": self.id, "version": self.version}


@dataclass(frozen=True)
class SyncResult:
    kind: Literal["agent", "environment"]
    name: str
    action: Action  # adopted: found on Anthropic by metadata, already up to date (no write)
    id: str
    version: int | None = None

    def line(self) -> str:
        version = f" v{self.version}" if self.version is not None else ""
        return f"{self.kind:<12} {self.name:<20} {self.action:<10} {self.id}{version}"


@dataclass(frozen=True)
class SyncedAgents:
    coordinator: AgentRef  # the deep team's lead: deep reviews, fixes and commands
    agents: dict[str, AgentRef]  # every agent by name, the leads and the router included
    environments: dict[str, str]  # environment id by name
    results: tuple[SyncResult, ...] = field(default=(), compare=False)
    leads: dict[str, AgentRef] = field(default_factory=dict)  # the lead of each review depth
    router: AgentRef | None = None

    def session_agent(self) -> dict[str, Any]:
        """The `agent` argument of `sessions.create`: the coordinator, pinned to its version."""
        return self.coordinator.param()

    def lead(self, depth: str) -> AgentRef:
        """The lead of a review of `depth`; the coordinator for any other job."""
        return self.leads.get(depth, self.coordinator)

    def environment_id(self, name: str) -> str:
        """The id of environment `name`, or of `default` when there is no such environment."""
        return self.environments.get(name) or self.environments[DEFAULT_ENVIRONMENT]


# -- request bodies and hashes --------------------------------------------------------------


def agent_body(definition: AgentDefinition, roster: Mapping[str, AgentRef] | None = None) -> dict[str, Any]:
    """The full create/update body of an agent, without metadata. `roster` pins callable agents."""
    body: dict[str, Any] = {
        "name": definition.name,
        "description": definition.description,
        "model": definition.model_param(),
        "system": definition.system,
        # An agent without built-in tools (the router) gets no toolset at all.
        "tools": [*([definition.toolset_param()] if definition.tools else []), *definition.custom_tool_params()],
        "mcp_servers": [],
        "skills": [],
        "multiagent": None,
    }
    if definition.callable_agents:
        roster = roster or {}
        missing = [n for n in definition.callable_agents if n not in roster]
        if missing:
            raise ValueError(f"{definition.source}: callable agents not synced yet: {', '.join(missing)}")
        body["multiagent"] = {
            "type": "multiagent_20261001",
            "subagents": {
                "type": "enabled",
                "inline_agents": {"type": "disabled"},
                "predefined_agents": [roster[n].param() for n in definition.callable_agents],
            },
            "workflows": {"type": "disabled"},
            "advisor": {"type": "disabled"},
        }
    return body


def environment_body(definition: EnvironmentDefinition) -> dict[str, Any]:
    """The full create/update body of an environment, without metadata."""
    return {"name": definition.name, "description": definition.description, "config": definition.config_param()}


def body_hash(body: Mapping[str, Any]) -> str:
    canonical = json.dumps({"format": SYNC_FORMAT, "body": body}, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def definitions_fingerprint(definitions: Definitions) -> str:
    """A hash of every definition's content (not of the synced versions)."""
    data = {
        "agents": {n: [a.source, agent_body_unpinned(a)] for n, a in sorted(definitions.agents.items())},
        "environments": {n: environment_body(e) for n, e in sorted(definitions.environments.items())},
    }
    return body_hash(data)


def agent_body_unpinned(definition: AgentDefinition) -> dict[str, Any]:
    return agent_body(definition, {n: AgentRef("?", 0) for n in definition.callable_agents})


# -- the sync ---------------------------------------------------------------------------------


def _meta(remote: Any) -> dict[str, str]:
    return dict(getattr(remote, "metadata", None) or {})


async def _load_entry(store: Store, key: str) -> dict[str, Any] | None:
    raw = await store.get_meta(key)
    if not raw:
        return None
    try:
        entry = json.loads(raw)
    except ValueError:
        log.warning("store entry %s is not JSON; ignoring it", key)
        return None
    return entry if isinstance(entry, dict) and entry.get("id") and entry.get("hash") else None


def _archived_or_gone(exc: anthropic.APIStatusError) -> bool:
    if isinstance(exc, anthropic.NotFoundError):
        return True
    return isinstance(exc, anthropic.BadRequestError) and "archived" in str(exc).lower()


class _Sync:
    def __init__(self, client: anthropic.AsyncAnthropic, store: Store, *, verify: bool) -> None:
        self.client = client
        self.store = store
        self.verify = verify
        self._index_lock = asyncio.Lock()
        self._agent_index: list[Any] | None = None
        self._env_index: list[Any] | None = None

    # -- discovery by metadata (only when the store does not know an object) -------------------
    async def _agents_listed(self) -> list[Any]:
        async with self._index_lock:
            if self._agent_index is None:
                self._agent_index = [a async for a in self.client.beta.agents.list(limit=100)]
            return self._agent_index

    async def _envs_listed(self) -> list[Any]:
        async with self._index_lock:
            if self._env_index is None:
                self._env_index = [e async for e in self.client.beta.environments.list(limit=100)]
            return self._env_index

    @staticmethod
    def _pick(candidates: list[Any], name: str, digest: str) -> Any | None:
        """Among live objects named `name` in metadata: one with our hash, else the oldest.

        Every process picks the same one, so duplicates left by a race are ignored consistently.
        """
        ours = [c for c in candidates if _meta(c).get(META_NAME) == name and not getattr(c, "archived_at", None)]
        if not ours:
            return None
        ours.sort(key=lambda c: (_meta(c).get(META_HASH) != digest, c.created_at, c.id))
        return ours[0]

    # -- agents ---------------------------------------------------------------------------
    async def agent(self, definition: AgentDefinition, roster: Mapping[str, AgentRef]) -> SyncResult:
        name = definition.name
        body = agent_body(definition, roster)
        digest = body_hash(body)
        key = f"agent:{name}"
        stored = await _load_entry(self.store, key)
        agents = self.client.beta.agents

        if stored is not None and stored["hash"] == digest and not self.verify:
            return SyncResult("agent", name, "unchanged", stored["id"], int(stored.get("version") or 1))

        current: Any | None = None  # the remote agent, when it was read
        if stored is not None and self.verify:
            try:
                current = await agents.retrieve(stored["id"])
            except anthropic.NotFoundError:
                current = None
            if current is None or current.archived_at:
                stored, current = None, None  # archived or gone: find another by metadata, or create
            elif _meta(current).get(META_HASH) == digest:
                if stored["hash"] != digest:  # another process synced these definitions first
                    return await self._save_agent(key, name, current.id, current.version, digest, "adopted")
                if current.version == stored.get("version"):
                    return await self._save_agent(key, name, current.id, current.version, digest, "unchanged")
                # Changed elsewhere after our sync (e.g. edited in the Console): restore the definition.
        if stored is None:
            current = self._pick(await self._agents_listed(), name, digest)
            if current is None:
                created = await agents.create(**body, metadata=self._metadata(name, digest))
                log.info("created agent %s (%s v%s)", name, created.id, created.version)
                return await self._save_agent(key, name, created.id, created.version, digest, "created")
            if _meta(current).get(META_HASH) == digest:
                return await self._save_agent(key, name, current.id, current.version, digest, "adopted")

        if current is not None:
            agent_id, version = current.id, current.version
        else:
            assert stored is not None
            agent_id, version = stored["id"], int(stored.get("version") or 1)
        try:
            updated = await self._update_agent(agent_id, version, body, name, digest)
        except anthropic.APIStatusError as exc:
            if stored is None or not _archived_or_gone(exc):
                raise
            # The store pointed at an agent that is archived or gone: start over from metadata.
            await self.store.set_meta(key, "")
            return await self.agent(definition, roster)
        if updated is None:  # another process brought it to this hash first
            fresh = await agents.retrieve(agent_id)
            return await self._save_agent(key, name, fresh.id, fresh.version, digest, "adopted")
        log.info("updated agent %s (%s v%s)", name, updated.id, updated.version)
        return await self._save_agent(key, name, updated.id, updated.version, digest, "updated")

    async def _update_agent(self, agent_id: str, version: int, body: dict, name: str, digest: str) -> Any | None:
        """Update with optimistic concurrency (`version`); on a conflict read the agent back and
        try once more. None: the agent already has this hash (another process got there first).

        The update goes out without the SDK's retries, which would repeat a 409 with the same
        stale version; transient failures are retried here, and a retry that lands after an
        update that did succeed ends in a conflict whose read-back shows our hash.
        """
        once = self.client.with_options(max_retries=0).beta.agents
        conflicts = transient = 0
        while True:
            try:
                return await once.update(agent_id, **body, version=version, metadata=self._metadata(name, digest))
            except anthropic.ConflictError:
                conflicts += 1
                current = await self.client.beta.agents.retrieve(agent_id)
                if _meta(current).get(META_HASH) == digest:
                    return None
                if conflicts > 1:
                    raise
                version = current.version
            except (anthropic.APIConnectionError, anthropic.RateLimitError, anthropic.InternalServerError):
                transient += 1
                if transient > 2:
                    raise
                await asyncio.sleep(0.5 * 2 ** (transient - 1))

    async def _save_agent(self, key: str, name: str, agent_id: str, version: int, digest: str,
                          action: Action) -> SyncResult:
        await self.store.set_meta(key, json.dumps({"id": agent_id, "version": version, "hash": digest}))
        return SyncResult("agent", name, action, agent_id, version)

    # -- environments ---------------------------------------------------------------------
    async def environment(self, definition: EnvironmentDefinition) -> SyncResult:
        name = definition.name
        body = environment_body(definition)
        digest = body_hash(body)
        key = f"environment:{name}"
        stored = await _load_entry(self.store, key)
        envs = self.client.beta.environments

        target: str | None = None
        if stored is not None:
            if stored["hash"] == digest and not self.verify:
                return SyncResult("environment", name, "unchanged", stored["id"])
            target = stored["id"]
            if self.verify:
                try:
                    current = await envs.retrieve(stored["id"])
                except anthropic.NotFoundError:
                    current = None
                if current is None or current.archived_at:
                    target = None
                elif _meta(current).get(META_HASH) == digest:
                    action: Action = "unchanged" if stored["hash"] == digest else "adopted"
                    return await self._save_env(key, name, current.id, digest, action)
        if target is None:
            found = self._pick(await self._envs_listed(), name, digest)
            if found is None:
                created = await envs.create(**body, metadata=self._metadata(name, digest))
                log.info("created environment %s (%s)", name, created.id)
                return await self._save_env(key, name, created.id, digest, "created")
            if _meta(found).get(META_HASH) == digest:
                return await self._save_env(key, name, found.id, digest, "adopted")
            target = found.id
        try:
            updated = await envs.update(target, **body, metadata=self._metadata(name, digest))
        except anthropic.APIStatusError as exc:
            if stored is None or not _archived_or_gone(exc):
                raise
            await self.store.set_meta(key, "")
            return await self.environment(definition)
        log.info("updated environment %s (%s)", name, updated.id)
        return await self._save_env(key, name, updated.id, digest, "updated")

    async def _save_env(self, key: str, name: str, env_id: str, digest: str, action: Action) -> SyncResult:
        await self.store.set_meta(key, json.dumps({"id": env_id, "hash": digest}))
        return SyncResult("environment", name, action, env_id)

    @staticmethod
    def _metadata(name: str, digest: str) -> dict[str, str]:
        return {META_NAME: name, META_HASH: digest}


async def sync_definitions(client: anthropic.AsyncAnthropic, store: Store,
                           definitions: Definitions | None = None, *, verify: bool = False) -> SyncedAgents:
    """Bring the agents and environments on Anthropic in line with `definitions`.

    Unchanged definitions the store already knows cost no API call. With `verify`, each known
    object is read back (reads only, unless it was archived, deleted or changed elsewhere).
    """
    definitions = definitions or default_definitions()
    sync = _Sync(client, store, verify=verify)
    env_results = await asyncio.gather(*(sync.environment(e) for _, e in sorted(definitions.environments.items())))
    sub_results = await asyncio.gather(*(sync.agent(a, {}) for a in definitions.subagents))
    roster = {r.name: AgentRef(r.id, r.version or 1) for r in sub_results}
    lead_results = await asyncio.gather(*(sync.agent(a, roster) for a in definitions.callers))
    refs = {**roster, **{r.name: AgentRef(r.id, r.version or 1) for r in lead_results}}
    teams, router = definitions.teams, definitions.router
    return SyncedAgents(
        coordinator=refs[definitions.coordinator.name],
        agents=refs,
        environments={r.name: r.id for r in env_results},
        results=(*sub_results, *lead_results, *env_results),
        leads={depth: refs[name] for depth, name in teams.leads.items()} if teams is not None else {},
        router=refs[router.name] if router is not None else None,
    )


# -- lazy, once per process -------------------------------------------------------------------

_cache: dict[tuple[str, int, str], SyncedAgents] = {}
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
_default: tuple[Definitions, str] | None = None  # the shipped definitions and their fingerprint


def _default_entry() -> tuple[Definitions, str]:
    global _default
    if _default is None:
        definitions = load_definitions()
        _default = (definitions, definitions_fingerprint(definitions))
    return _default


def default_definitions() -> Definitions:
    """The shipped definitions, loaded once per process."""
    return _default_entry()[0]


async def ensure_synced(client: anthropic.AsyncAnthropic, store: Store,
                        definitions: Definitions | None = None, *, verify: bool = False) -> SyncedAgents:
    """The synced team for this process: synced on first use, then served from memory.

    Concurrent first callers wait for one sync. `verify=True` skips the cache and reads every
    object back, replacing what was archived or changed elsewhere.
    """
    if definitions is None:
        definitions, fingerprint = _default_entry()
    else:
        fingerprint = definitions_fingerprint(definitions)
    key = (str(client.base_url), id(store), fingerprint)
    cached = _cache.get(key)
    if cached is not None and not verify:
        return cached
    loop = asyncio.get_running_loop()
    lock = _locks.setdefault(loop, asyncio.Lock())
    # The store's lock makes replicas starting together sync one after the other: the second finds
    # in the store what the first created and adopts it, instead of creating a duplicate.
    async with lock, store.exclusive("agents-sync"):
        cached = _cache.get(key)
        if cached is None or verify:
            cached = await sync_definitions(client, store, definitions, verify=verify)
            _cache[key] = cached
        return cached


def forget_synced() -> None:
    """Drop the in-process cache (the store still remembers what was synced)."""
    global _default
    _cache.clear()
    _default = None
