"""Which tools run unattended: the answer to a session's tool confirmations, by the operator's policy.

A built-in tool whose permission policy is `always_ask` (or `auto`, when the platform judges a
call needs asking), and every MCP tool the operator has not marked unattended, makes the session
wait for a `user.tool_confirmation`. Nobody watches a job to click "allow", so the operator says in
advance which tools may run: `PRMEDIC_TOOLS_UNATTENDED` (`web_fetch`, `mcp:linear:get_issue`,
`mcp:sentry:*`) and each MCP server's `unattended_tools` in `PRMEDIC_MCP_CONFIG`. A confirmation
for one of them is allowed; any other is denied with a message the agent can read. `decide` is
the whole rule, with no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.settings import McpServerSetting, split_names


@dataclass(frozen=True)
class ToolIdentity:
    """A tool as a tool-use event names it: a built-in tool, or an MCP server's tool."""

    name: str
    server: str | None = None  # the MCP server (`agent.mcp_tool_use`); None for a built-in tool

    @property
    def label(self) -> str:
        """As the settings name it: `web_fetch`, `mcp:linear:get_issue`."""
        return self.name if self.server is None else f"mcp:{self.server}:{self.name}"

    @classmethod
    def of_event(cls, event: Any) -> ToolIdentity:
        """The tool of an `agent.tool_use` or `agent.mcp_tool_use` event."""
        return cls(str(event.name), getattr(event, "mcp_server_name", None))


@dataclass(frozen=True)
class ToolPolicy:
    """The tools that may run without a person's confirmation, as labels (`mcp:<server>:*`: every
    tool of that server)."""

    unattended: frozenset[str] = frozenset()

    @classmethod
    def of(cls, tools_unattended: str = "", servers: Iterable[McpServerSetting] = ()) -> ToolPolicy:
        """From `PRMEDIC_TOOLS_UNATTENDED` and the MCP servers' `unattended_tools`."""
        labels = set(split_names(tools_unattended))
        labels |= {f"mcp:{server.name}:{tool}" for server in servers for tool in server.unattended_tools}
        return cls(frozenset(labels))

    @classmethod
    def from_settings(cls, settings: Any) -> ToolPolicy:
        """From process settings (any object: absent settings mean nothing runs unattended)."""
        return cls.of(getattr(settings, "tools_unattended", "") or "", getattr(settings, "mcp_servers", ()) or ())

    def allows(self, tool: ToolIdentity) -> bool:
        return tool.label in self.unattended or (
            tool.server is not None and f"mcp:{tool.server}:*" in self.unattended)

    def mcp_tools(self, server: str) -> tuple[str, ...]:
        """The tools of MCP server `server` that run unattended, sorted (`*`: all of them)."""
        prefix = f"mcp:{server}:"
        return tuple(sorted(label.removeprefix(prefix) for label in self.unattended if label.startswith(prefix)))


@dataclass(frozen=True)
class Decision:
    allow: bool
    reason: str  # for the log; a denial's is also the `deny_message` the agent reads


def decide(tool: ToolIdentity | None, policy: ToolPolicy) -> Decision:
    """Allow a confirmation for a tool the policy lets run unattended; deny anything else, saying
    which tool, why, and that the operator decides."""
    if tool is None:
        return Decision(False, "prmedic denied this tool call: the tool could not be identified, and only tools "
                               "its operator allows to run unattended are confirmed.")
    if policy.allows(tool):
        return Decision(True, f"{tool.label} may run unattended (operator's settings)")
    where = (f"the operator's MCP configuration (`unattended_tools` of server {tool.server!r}) or "
             "PRMEDIC_TOOLS_UNATTENDED" if tool.server is not None else "PRMEDIC_TOOLS_UNATTENDED")
    return Decision(False, (
        f"prmedic denied the call to `{tool.label}`: this tool needs a person's confirmation, nobody confirms "
        "tool calls while prmedic runs a job, and prmedic's operator has not allowed it to run unattended "
        f"(that is the operator's decision, made in {where}). Do without it: use the tools you are allowed, "
        "and say in your result what you could not check."))
