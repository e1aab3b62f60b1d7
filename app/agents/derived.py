"""Environments derived from a repository's `environment` extension (`.github/prmedic.yml`).

An extension (`{base, packages, allowed_hosts}`) is applied to the base definition from
`environments/`: its packages are merged in, its hosts added to the base's limited networking
(networking is never loosened otherwise). The result is content-addressed: it is named
`prmedic-<base>-<hash8>` after its own content and synced like the shipped environments (store
entry `environment:<name>`, metadata `prmedic_name` / `prmedic_hash`; known → no call, unknown →
adopted from Anthropic by metadata, else created once). So every repository with the same
extension shares one environment, a job never creates its own, and a changed extension (or a
changed base definition) is a new name and so a new environment — never an update of one that
other repositories may still run in.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref
from dataclasses import replace

import anthropic

from app.agents.definitions import (
    PACKAGE_MANAGERS,
    Definitions,
    EnvironmentDefinition,
    LimitedNetworking,
    Packages,
)
from app.agents.per_job import choose_environment
from app.agents.sync import SyncedAgents, _Sync, default_definitions
from app.repo_config import EnvironmentExtension
from app.store import Store

DERIVED_PREFIX = "prmedic-"

_cache: dict[tuple[str, int, str], str] = {}  # (API base URL, store, name) → environment id
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def derive_environment(base: EnvironmentDefinition, extension: EnvironmentExtension | None, *,
                       allow_mcp_servers: bool = False) -> EnvironmentDefinition:
    """The base definition with the extension applied and, for a job with MCP servers, its limited
    networking opened to the MCP servers configured on the session's agent (nothing else); named
    after the result's content."""
    extension = extension or EnvironmentExtension()
    packages = base.packages.model_dump()
    for manager in ("pip", "apt", "npm"):
        packages[manager] = list(dict.fromkeys([*packages[manager], *getattr(extension.packages, manager)]))
    networking = base.networking
    if isinstance(networking, LimitedNetworking):
        hosts = list(dict.fromkeys([*networking.allowed_hosts, *extension.allowed_hosts]))
        # Packages under limited networking need the package registries (the API requires it).
        networking = networking.model_copy(update={
            "allowed_hosts": hosts,
            "allow_package_managers": networking.allow_package_managers or any(packages[m] for m in PACKAGE_MANAGERS),
            "allow_mcp_servers": networking.allow_mcp_servers or allow_mcp_servers})
    source = f"{base.source} + .github/prmedic.yml" if extension.extends else base.source
    derived = replace(base, packages=Packages(**packages), networking=networking, source=source)
    content = json.dumps({"base": base.name, "config": derived.config_param()}, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(content.encode()).hexdigest()[:8]
    added = [f"packages: {_summary(extension)}"] if extension.extends else []
    added += ["MCP servers allowed"] if allow_mcp_servers else []
    description = (f"{base.description or base.name} Extended by a repository's .github/prmedic.yml "
                   f"({'; '.join(added)}).")
    return replace(derived, name=f"{DERIVED_PREFIX}{base.name}-{digest}", description=description[:2000])


def _summary(extension: EnvironmentExtension) -> str:
    parts = [f"{m}: {', '.join(getattr(extension.packages, m))}" for m in ("pip", "apt", "npm")
             if getattr(extension.packages, m)]
    if extension.allowed_hosts:
        parts.append(f"hosts: {', '.join(extension.allowed_hosts)}")
    return "; ".join(parts)


async def ensure_derived(client: anthropic.AsyncAnthropic, store: Store, definition: EnvironmentDefinition, *,
                         verify: bool = False) -> str:
    """The id of the derived environment `definition`, created on first use (once per content,
    across processes through the store and the metadata), then served from memory.

    `verify` reads it back and replaces it if it was archived or deleted (as `ensure_synced`)."""
    key = (str(client.base_url), id(store), definition.name)
    if not verify and (known := _cache.get(key)) is not None:
        return known
    lock = _locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock, store.exclusive(f"environment:{definition.name}"):
        if not verify and (known := _cache.get(key)) is not None:
            return known
        result = await _Sync(client, store, verify=verify).environment(definition)
        _cache[key] = result.id
        return result.id


def forget_derived() -> None:
    """Drop the in-process cache (the store still remembers the derived environments)."""
    _cache.clear()


async def environment_for_job(client: anthropic.AsyncAnthropic, store: Store, team: SyncedAgents,
                              choice: str | EnvironmentExtension | None, repo_language: str | None, *,
                              definitions: Definitions | None = None, verify: bool = False,
                              allow_mcp_servers: bool = False) -> str:
    """The environment id for a job: its extension's derived environment, or (for a job with MCP
    servers) one whose networking allows them, made sure to exist; else the synced environment
    `choose_environment` picks."""
    name = choose_environment(choice, repo_language, available=list(team.environments))
    definitions = definitions or default_definitions()
    extension = choice if isinstance(choice, EnvironmentExtension) and choice.extends else None
    if (extension is None and not allow_mcp_servers) or name not in definitions.environments:
        return team.environment_id(name)
    base = definitions.environments[name]
    derived = derive_environment(base, extension, allow_mcp_servers=allow_mcp_servers)
    if extension is None and derived.networking == base.networking:
        return team.environment_id(name)  # unrestricted networking already reaches the MCP servers
    return await ensure_derived(client, store, derived, verify=verify)
