"""The teams (`agents/teams.yml`): which agent leads a review at each depth, and which agent routes
the pull requests no plain rule decides (docs/architecture.md, "Agents and environments").

    light: reviewer-solo
    standard: coordinator-standard
    deep: coordinator      # also leads every fix and command
    router: router
    verifier: verifier     # optional: checks each fix, in a session of its own, before delivery

Checked against the agents: each entry names a defined agent; the three review leads hold
`publish_review`; the router has no tools, custom tools or callable agents; the verifier holds
`report_verification` and no other custom tool, calls no agent, and cannot edit or write files.
The roles of the agents themselves (`role_problems`): custom tools only on a lead (named here, or
an agent with callable agents) or the verifier, and an agent that is called cannot call agents
itself (one level of sub-agents).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

TEAMS_FILE = "teams.yml"
Depth = Literal["light", "standard", "deep"]
DEPTHS: tuple[Depth, ...] = ("light", "standard", "deep")
_NAME = r"^[a-z][a-z0-9_-]{0,63}$"


class _Agent(Protocol):
    """What the checks read of an agent definition."""

    source: str
    tools: Mapping[str, Any]
    callable_agents: tuple[str, ...]
    custom_tools: tuple[str, ...]


class TeamsFile(BaseModel):
    """The front of `agents/teams.yml`: an agent name per depth, and the router."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    light: str = Field(pattern=_NAME)
    standard: str = Field(pattern=_NAME)
    deep: str = Field(pattern=_NAME)
    router: str = Field(pattern=_NAME)
    verifier: str | None = Field(None, pattern=_NAME)


@dataclass(frozen=True)
class Teams:
    light: str
    standard: str
    deep: str
    router: str
    source: str = f"agents/{TEAMS_FILE}"
    verifier: str | None = None  # None: fixes are delivered without an independent verification

    @classmethod
    def from_file(cls, data: TeamsFile, source: str) -> Teams:
        return cls(light=data.light, standard=data.standard, deep=data.deep, router=data.router, source=source,
                   verifier=data.verifier)

    def lead(self, depth: str) -> str:
        """The name of the agent that leads a review of `depth` (unknown depths: the deep lead)."""
        return getattr(self, depth) if depth in DEPTHS else self.deep

    @property
    def leads(self) -> dict[str, str]:
        return {depth: self.lead(depth) for depth in DEPTHS}


def team_problems(teams: Teams, agents: Mapping[str, _Agent]) -> list[str]:
    """What is wrong with `teams` given the defined agents, each naming the file and the field."""
    problems = []
    known = ", ".join(sorted(agents)) or "none"
    for field in (*DEPTHS, "router"):
        name = getattr(teams, field)
        agent = agents.get(name)
        if agent is None:
            problems.append(f"{teams.source}: field '{field}': no agent named {name!r} (defined: {known})")
        elif field in DEPTHS and "publish_review" not in agent.custom_tools:
            problems.append(f"{teams.source}: field '{field}': {name!r} leads {field} reviews but does not hold "
                            f"publish_review ({agent.source}, field 'custom_tools')")
        elif field == "router" and (agent.tools or agent.custom_tools or agent.callable_agents):
            problems.append(f"{teams.source}: field 'router': {name!r} must have no tools, custom tools or callable "
                            f"agents ({agent.source}): it reads untrusted pull request data")
    if teams.verifier is not None:
        problems += _verifier_problems(teams, agents.get(teams.verifier), known)
    return problems


VERIFIER_TOOLS = ("report_verification",)


def _verifier_problems(teams: Teams, agent: _Agent | None, known: str) -> list[str]:
    """The verifier checks a fix it must not change, and reports only through `report_verification`."""
    where = f"{teams.source}: field 'verifier'"
    if agent is None:
        return [f"{where}: no agent named {teams.verifier!r} (defined: {known})"]
    problems = []
    if tuple(agent.custom_tools) != VERIFIER_TOOLS:
        problems.append(f"{where}: {teams.verifier!r} must hold exactly the custom tool report_verification "
                        f"({agent.source}, field 'custom_tools')")
    if agent.callable_agents:
        problems.append(f"{where}: {teams.verifier!r} must call no agents ({agent.source}, field 'callable_agents')")
    if {"edit", "write"} & set(agent.tools):
        problems.append(f"{where}: {teams.verifier!r} must not edit or write files: it checks the committed fix "
                        f"({agent.source}, field 'tools')")
    return problems


def role_problems(agents: Mapping[str, _Agent], teams: Teams | None, agents_label: str) -> list[str]:
    """Custom tools only on leads; callable agents exist, are not the caller, and call nobody."""
    problems = []
    leads = set(teams.leads.values()) if teams is not None else set()
    if teams is not None and teams.verifier is not None:
        leads.add(teams.verifier)  # not a lead, but it reports through its own custom tool
    if not any(a.callable_agents for a in agents.values()):
        problems.append(f"{agents_label}/: no coordinator (an agent with 'callable_agents')")
    for name, agent in agents.items():
        if agent.custom_tools and name not in leads and not agent.callable_agents:
            problems.append(f"{agent.source}: field 'custom_tools': only a lead holds custom tools (an agent with "
                            f"'callable_agents', or one named in {agents_label}/{TEAMS_FILE}, or the verifier)")
        for callee in agent.callable_agents:
            target = agents.get(callee)
            if callee == name:
                problems.append(f"{agent.source}: field 'callable_agents': an agent cannot call itself")
            elif target is None:
                known = ", ".join(sorted(agents)) or "none"
                problems.append(f"{agent.source}: field 'callable_agents': no agent named {callee!r} (defined: {known})")
            elif target.callable_agents:
                problems.append(f"{agent.source}: field 'callable_agents': {callee!r} has callable_agents itself "
                                f"(the API allows one level of sub-agents)")
    return problems
