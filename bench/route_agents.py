"""The agents the route benchmark (bench/route_cost.py) prices: loaded from `agents/` with the
app's own loader, and, while a team's agent file is missing or does not validate, the agent it
extends standing in for it, said in the output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from app.agents.definitions import (
    AgentDefinition,
    DefinitionError,
    custom_tool_param,
    default_dirs,
    load_definitions,
    parse_agent,
)
from app.pipelines.review.brief import estimate_tokens
from app.sessions.cost import PRICES_PER_MTOK

# -- the teams (issue 14: light = one reviewer; standard = coordinator + reviewer; deep = + tester) --
TEAMS: dict[str, tuple[str, ...]] = {
    "light": ("reviewer-solo",),
    "standard": ("coordinator-standard", "reviewer"),
    "deep": ("coordinator", "reviewer", "tester"),
}
ROUTER = "router"
# While an agent file is missing, the agent it extends stands in for it (model, prompt, tools).
STAND_INS: dict[str, str] = {"reviewer-solo": "reviewer", "coordinator-standard": "coordinator"}
# The lone light reviewer publishes itself, so a stand-in for it carries these custom tools.
STAND_IN_CUSTOM_TOOLS: dict[str, tuple[str, ...]] = {"reviewer-solo": ("report_progress", "publish_review")}
# Without agents/router.md: the cheapest model family in the price table, and a prompt of this size.
ROUTER_STAND_IN_SYSTEM_TOKENS = 700

# The platform's definition of each enabled built-in tool (bash, read, …) in the agent's context.
BUILTIN_TOOL_TOKENS = 350


@dataclass
class Agents:
    """The agent definitions the benchmark prices, and what stood in for missing ones."""

    by_name: dict[str, AgentDefinition]
    notes: list[str] = field(default_factory=list)

    def get(self, name: str) -> AgentDefinition | None:
        return self.by_name.get(name)


def load_agents() -> Agents:
    """`load_definitions()`; if the folder does not validate as a whole (another change may be
    half-way), each agent file that parses on its own, with the problems noted."""
    try:
        definitions = load_definitions()
    except DefinitionError as exc:
        folder = default_dirs()[0]
        agents = {}
        for path in sorted(p for p in folder.iterdir() if p.name.endswith(".md")):
            definition, _ = parse_agent(f"agents/{path.name}", path.read_text(encoding="utf-8"), path.name[:-3])
            if definition is not None:
                agents[definition.name] = definition
        note = (f"agents/ does not validate as a whole ({len(exc.problems)} problem(s)); each file that parses "
                "alone was used")
        return Agents(agents, [note])
    return Agents(dict(definitions.agents), team_differences(definitions))


def team_differences(definitions: Any) -> list[str]:
    """Where `agents/teams.yml` (a lead per depth and the agents it calls) differs from TEAMS."""
    if getattr(definitions, "teams", None) is None:
        return []
    notes = []
    for depth, team in TEAMS.items():
        lead = definitions.lead(depth)
        actual = (lead.name, *lead.callable_agents)
        if actual != team:
            notes.append(f"agents/teams.yml's {depth} team is {', '.join(actual)}; priced as {', '.join(team)}")
    return notes


def team_member(agents: Agents, name: str) -> tuple[str, str, int]:
    """(model, system prompt, tool-definition tokens) of one team agent, or of its stand-in."""
    definition = agents.get(name)
    custom: tuple[str, ...] = definition.custom_tools if definition else ()
    if definition is None:
        definition = agents.get(STAND_INS.get(name, ""))
        if definition is None:
            raise SystemExit(f"agents/{name}.md is missing or invalid, and no agent file stands in for it")
        custom = STAND_IN_CUSTOM_TOOLS.get(name, definition.custom_tools)
        note = f"agents/{name}.md is missing: priced as agents/{STAND_INS[name]}.md ({definition.model})"
        if note not in agents.notes:
            agents.notes.append(note)
    tools = len(definition.tools) * BUILTIN_TOOL_TOKENS + estimate_tokens(
        json.dumps([custom_tool_param(t) for t in custom]))
    return definition.model, definition.system, tools


def router_model_and_prompt(agents: Agents) -> tuple[str, int]:
    definition = agents.get(ROUTER)
    if definition is not None:
        return definition.model, estimate_tokens(definition.system)
    cheapest = min(PRICES_PER_MTOK, key=lambda family: PRICES_PER_MTOK[family])
    note = (f"agents/{ROUTER}.md is missing: the router is priced on the cheapest family ({cheapest}) with a "
            f"{ROUTER_STAND_IN_SYSTEM_TOKENS}-token prompt")
    if note not in agents.notes:
        agents.notes.append(note)
    return cheapest, ROUTER_STAND_IN_SYSTEM_TOKENS
