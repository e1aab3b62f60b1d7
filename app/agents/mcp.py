"""MCP servers for a job: the operator's servers (`PRMEDIC_MCP_CONFIG`, read by `app/settings.py`)
that a repository opts into by name (`mcp: [linear, sentry]` in `.github/prmedic.yml`), and what
its session is created with for them.

A session for such a job names the lead `agent_with_overrides`: its `mcp_servers` (url type, the
operator's name), its `tools` (the lead's own tools, in full, since the override replaces the list,
plus one `mcp_toolset` per server: `always_allow` for the server's unattended tools and
`always_ask` for the rest, which the tool policy then answers), and `vault_ids` holding the
servers' credentials. Its environment allows MCP servers (`app/agents/derived.py`); no other
job's does. The sub-agents keep their pinned definitions: only the lead gets the toolsets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from app.agents.definitions import AgentDefinition
from app.agents.sync import agent_body_unpinned
from app.agents.tool_policy import ToolPolicy
from app.repo_config import CONFIG_PATH
from app.settings import McpServerSetting


def repository_servers(names: Iterable[str], available: Iterable[McpServerSetting]
                       ) -> tuple[tuple[McpServerSetting, ...], list[str]]:
    """The operator's servers a repository named, in its order, and one config problem per name
    the operator did not configure (that name is ignored)."""
    by_name = {server.name: server for server in available}
    chosen: list[McpServerSetting] = []
    problems: list[str] = []
    known = ", ".join(sorted(by_name)) or "none are configured"
    for name in dict.fromkeys(names):
        if name in by_name:
            chosen.append(by_name[name])
        else:
            problems.append(f"{CONFIG_PATH}: `mcp`: {name!r} is not an MCP server prmedic's operator configured "
                            f"(known: {known}); it is ignored")
    return tuple(chosen), problems


def toolset_param(server: McpServerSetting, policy: ToolPolicy) -> dict[str, Any]:
    """The server's `mcp_toolset`: its unattended tools `always_allow`, every other tool `always_ask`."""
    unattended = sorted(set(server.unattended_tools) | set(policy.mcp_tools(server.name)))
    if "*" in unattended:
        return {"type": "mcp_toolset", "mcp_server_name": server.name,
                "default_config": {"enabled": True, "permission_policy": {"type": "always_allow"}}}
    return {"type": "mcp_toolset", "mcp_server_name": server.name,
            "default_config": {"enabled": True, "permission_policy": {"type": "always_ask"}},
            "configs": [{"name": tool, "permission_policy": {"type": "always_allow"}} for tool in unattended]}


@dataclass(frozen=True)
class McpOverrides:
    """What a session is created with for its MCP servers (`SessionSpec`: agent_tools,
    mcp_servers, vault_ids)."""

    tools: list[dict[str, Any]]
    mcp_servers: list[dict[str, Any]]
    vault_ids: list[str]


def mcp_overrides(lead: AgentDefinition, servers: Sequence[McpServerSetting], policy: ToolPolicy
                  ) -> McpOverrides | None:
    """The overrides for a session of `lead` with `servers`; None without servers (the synced
    agent is used as it is)."""
    if not servers:
        return None
    tools = [*agent_body_unpinned(lead)["tools"], *(toolset_param(server, policy) for server in servers)]
    return McpOverrides(
        tools=tools,
        mcp_servers=[{"type": "url", "name": server.name, "url": server.url} for server in servers],
        vault_ids=list(dict.fromkeys(server.vault_id for server in servers)))
