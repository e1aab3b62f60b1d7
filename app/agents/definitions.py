"""Declarative agents (`agents/*.md`) and container templates (`environments/*.yml`).

An agent file is Markdown with YAML front matter, the shape of a Claude Code sub-agent file:

    ---
    name: reviewer                    # must equal the file name (reviewer.md)
    description: One line on what it does (shown to the coordinator).
    model: claude-opus-5-5            # any model id string; optional effort / speed
    effort: high
    tools:                            # built-in tools; every tool not listed is disabled
      read: always_allow              # permission policy: always_allow | always_ask | auto
      bash: always_allow
      web_fetch: {permission_policy: auto, allowed_domains: [docs.python.org]}
    callable_agents: [reviewer, tester]   # a lead only
    custom_tools: [report_progress, publish_review, propose_fix, read_ci_log, reply]  # a lead only
    ---
    The system prompt.

`extends: reviewer` makes a variant of another agent file: every field and the system prompt are
inherited, the fields given replace the inherited ones (whole: `tools` is not merged), and the
body, if any, is appended to the inherited prompt as a section of its own. One level only: the
agent extended cannot extend another. `agents/teams.yml` names the lead of each review depth and
the router (`app/agents/teams.py`).

An environment file is YAML: `name` (= file name), `description`, `packages` per manager
(apt, cargo, gem, go, npm, pip) and `networking` (limited to package managers by default).

Both folders ship inside the wheel (as `app/definitions/{agents,environments}`); in a source
checkout they are read from the repository root. Every problem is reported with the file and
the field, e.g. ``agents/reviewer.md: field 'model': Field required``.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.agents.files import describe_errors, extended, load_teams, load_yaml, split_agent
from app.agents.teams import Teams, role_problems, team_problems
from app.tools.catalog import unhandled
from app.tools.schemas import CUSTOM_TOOLS

BuiltinTool = Literal["bash", "edit", "read", "write", "glob", "grep", "web_fetch", "web_search"]
BUILTIN_TOOLS: tuple[str, ...] = typing.get_args(BuiltinTool)
PermissionPolicy = Literal["always_allow", "always_ask", "auto"]
PACKAGE_MANAGERS = ("apt", "cargo", "gem", "go", "npm", "pip")
MAX_SYSTEM_CHARS = 100_000
MAX_EXTRA_INSTRUCTIONS_CHARS = 20_000
DEFAULT_ENVIRONMENT = "default"


class DefinitionError(Exception):
    """One or more definition files are invalid; `problems` names each file and field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid agent/environment definitions:\n{lines}")


# -- front matter / environment models ------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolSettings(_Strict):
    """One built-in tool: its permission policy and, for web tools, the domains it may reach."""

    permission_policy: PermissionPolicy = "always_allow"
    allowed_domains: list[str] | None = Field(None, max_length=64)
    blocked_domains: list[str] | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _one_domain_list(self) -> "ToolSettings":
        if self.allowed_domains is not None and self.blocked_domains is not None:
            raise ValueError("give allowed_domains or blocked_domains, not both")
        return self


NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"


class AgentFrontMatter(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(min_length=1, max_length=2000)
    model: str = Field(min_length=1, max_length=128)
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    speed: Literal["standard", "fast"] | None = None
    tools: dict[BuiltinTool, ToolSettings] = Field(default_factory=dict)
    callable_agents: list[str] = Field(default_factory=list, max_length=20)
    custom_tools: list[str] = Field(default_factory=list)  # each must be in app.tools.schemas.CUSTOM_TOOLS

    @field_validator("tools", mode="before")
    @classmethod
    def _policy_shorthand(cls, value: Any) -> Any:
        # `bash: always_allow` is short for `bash: {permission_policy: always_allow}`.
        if isinstance(value, dict):
            return {k: ({"permission_policy": v} if isinstance(v, str) else v) for k, v in value.items()}
        return value

    @field_validator("tools", mode="after")
    @classmethod
    def _web_only_domains(cls, value: dict[str, ToolSettings]) -> dict[str, ToolSettings]:
        for name, settings in value.items():
            if name not in ("web_fetch", "web_search") and (settings.allowed_domains or settings.blocked_domains):
                raise ValueError(f"{name}: allowed_domains/blocked_domains apply only to web_fetch and web_search")
        return value

    @field_validator("callable_agents", "custom_tools")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        dupes = sorted({v for v in value if value.count(v) > 1})
        if dupes:
            raise ValueError(f"listed more than once: {', '.join(dupes)}")
        return value


class Packages(_Strict):
    apt: list[str] = Field(default_factory=list)
    cargo: list[str] = Field(default_factory=list)
    gem: list[str] = Field(default_factory=list)
    go: list[str] = Field(default_factory=list)
    npm: list[str] = Field(default_factory=list)
    pip: list[str] = Field(default_factory=list)

    @field_validator("*")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item or not item.strip() or any(c.isspace() for c in item):
                raise ValueError(f"{item!r} is not a package name (no spaces; one package per item)")
        return value

    def any(self) -> bool:
        return any(getattr(self, m) for m in PACKAGE_MANAGERS)


class LimitedNetworking(_Strict):
    type: Literal["limited"] = "limited"
    allowed_hosts: list[str] = Field(default_factory=list)
    allow_package_managers: bool = True
    allow_mcp_servers: bool = False


class UnrestrictedNetworking(_Strict):
    type: Literal["unrestricted"]


Networking = Annotated[Union[LimitedNetworking, UnrestrictedNetworking], Field(discriminator="type")]


class EnvironmentFile(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = Field(None, max_length=2000)
    packages: Packages = Field(default_factory=Packages)
    networking: Networking = Field(default_factory=LimitedNetworking)

    @model_validator(mode="after")
    def _packages_need_package_managers(self) -> "EnvironmentFile":
        net = self.networking
        if isinstance(net, LimitedNetworking) and self.packages.any() and not net.allow_package_managers:
            raise ValueError("networking.allow_package_managers must be true to install packages under limited "
                             "networking")
        return self


# -- loaded definitions ---------------------------------------------------------------------


@dataclass(frozen=True)
class AgentDefinition:
    name: str
    description: str
    model: str
    system: str
    source: str  # e.g. "agents/reviewer.md"
    effort: str | None = None
    speed: str | None = None
    tools: dict[str, ToolSettings] = field(default_factory=dict)
    callable_agents: tuple[str, ...] = ()
    custom_tools: tuple[str, ...] = ()

    @property
    def is_coordinator(self) -> bool:
        """It calls other agents (a lead with a roster, synced after the agents it calls)."""
        return bool(self.callable_agents)

    def model_param(self) -> str | dict[str, Any]:
        if self.effort is None and self.speed is None:
            return self.model
        config: dict[str, Any] = {"id": self.model}
        if self.effort is not None:
            config["effort"] = self.effort
        if self.speed is not None:
            config["speed"] = self.speed
        return config

    def toolset_param(self) -> dict[str, Any]:
        """The `agent_toolset_20260401` entry: listed tools enabled with their policy, the rest disabled."""
        configs = []
        for name in BUILTIN_TOOLS:  # a fixed order, so the request body (and its hash) is stable
            settings = self.tools.get(name)
            if settings is None:
                continue
            entry: dict[str, Any] = {"name": name, "enabled": True,
                                     "permission_policy": {"type": settings.permission_policy}}
            if settings.allowed_domains is not None:
                entry["allowed_domains"] = list(settings.allowed_domains)
            if settings.blocked_domains is not None:
                entry["blocked_domains"] = list(settings.blocked_domains)
            configs.append(entry)
        return {"type": "agent_toolset_20260401", "default_config": {"enabled": False}, "configs": configs}

    def custom_tool_params(self) -> list[dict[str, Any]]:
        return [custom_tool_param(name) for name in self.custom_tools]


@dataclass(frozen=True)
class EnvironmentDefinition:
    name: str
    description: str | None
    packages: Packages
    networking: LimitedNetworking | UnrestrictedNetworking
    source: str  # e.g. "environments/python.yml"

    def config_param(self) -> dict[str, Any]:
        """The environment's `config` as the API takes it (`type: cloud`)."""
        return {
            "type": "cloud",
            "networking": self.networking.model_dump(),
            "packages": {"type": "packages", **{m: list(getattr(self.packages, m)) for m in PACKAGE_MANAGERS}},
        }


@dataclass(frozen=True)
class Definitions:
    agents: dict[str, AgentDefinition]
    environments: dict[str, EnvironmentDefinition]
    agents_dir: str = "agents"
    environments_dir: str = "environments"
    warnings: tuple[str, ...] = ()
    teams: Teams | None = None  # agents/teams.yml; None only for definitions built by hand

    @property
    def coordinator(self) -> AgentDefinition:
        """The deep team's lead: it runs deep reviews, every fix and every command."""
        if self.teams is not None:
            return self.agents[self.teams.deep]
        return next(a for a in self.agents.values() if a.is_coordinator)

    def lead(self, depth: str) -> AgentDefinition:
        """The agent that leads a review of `depth` (`light`, `standard`, `deep`)."""
        return self.agents[self.teams.lead(depth)] if self.teams is not None else self.coordinator

    @property
    def router(self) -> AgentDefinition | None:
        return self.agents[self.teams.router] if self.teams is not None else None

    @property
    def subagents(self) -> list[AgentDefinition]:
        """Every agent that calls no other, in name order (synced first: the others pin them)."""
        return [self.agents[n] for n in sorted(self.agents) if not self.agents[n].is_coordinator]

    @property
    def callers(self) -> list[AgentDefinition]:
        """Every agent with callable agents (a lead with a roster), in name order."""
        return [self.agents[n] for n in sorted(self.agents) if self.agents[n].is_coordinator]


def custom_tool_param(name: str) -> dict[str, Any]:
    """The `tools[]` entry of one custom tool; its input schema is the pydantic model's JSON schema."""
    return CUSTOM_TOOLS[name].param()


def custom_tool_problems(source: str, names: Iterable[str]) -> list[str]:
    """One problem per custom tool the app has no handler for: an agent must not be offered it."""
    names = list(names)
    problems = [f"{source}: field 'custom_tools': {why} (an agent may be offered only tools the app runs: "
                f"{', '.join(CUSTOM_TOOLS)})" for why in unhandled(names).values()]
    problems += [f"{source}: field 'custom_tools': {name!r} is listed twice" for name in sorted(set(names))
                 if names.count(name) > 1]
    return problems


# -- locating and loading -------------------------------------------------------------------


def default_dirs() -> tuple[Traversable, Traversable]:
    """Where `agents/` and `environments/` are: inside the installed package, else the source checkout."""
    packaged = resources.files("app") / "definitions"
    if packaged.joinpath("agents").is_dir():
        return packaged / "agents", packaged / "environments"
    root = Path(__file__).resolve().parents[2]
    return root / "agents", root / "environments"


def parse_agent(source: str, text: str, stem: str,
                files: dict[str, tuple[str, dict[str, Any], str]] | None = None) -> tuple[AgentDefinition | None, list[str]]:
    """One agent file, validated; `files` (every agent file by stem) resolves `extends`."""
    data, system, problems = split_agent(source, text)
    if data is None:
        return None, problems
    data, system, problems = extended(source, data, system, files or {})
    if problems:
        return None, problems
    return build_agent(source, data, system, stem)


def build_agent(source: str, data: dict[str, Any], system: str, stem: str) -> tuple[AgentDefinition | None, list[str]]:
    try:
        front = AgentFrontMatter.model_validate(data)
    except ValidationError as exc:
        return None, describe_errors(source, exc)
    problems = custom_tool_problems(source, front.custom_tools)
    if front.name != stem:
        problems.append(f"{source}: field 'name': {front.name!r} must match the file name ({stem!r})")
    if not system:
        problems.append(f"{source}: the system prompt (the Markdown body after the front matter) is empty")
    elif len(system) > MAX_SYSTEM_CHARS:
        problems.append(f"{source}: the system prompt is {len(system):,} characters; the limit is {MAX_SYSTEM_CHARS:,}")
    if problems:
        return None, problems
    return AgentDefinition(
        name=front.name, description=front.description.strip(), model=front.model, system=system, source=source,
        effort=front.effort, speed=front.speed, tools=dict(front.tools),
        callable_agents=tuple(front.callable_agents), custom_tools=tuple(front.custom_tools),
    ), []


def parse_environment(source: str, text: str, stem: str) -> tuple[EnvironmentDefinition | None, list[str]]:
    data, problems = load_yaml(source, text, "the file")
    if problems:
        return None, problems
    if not isinstance(data, dict):
        return None, [f"{source}: must be a YAML mapping of fields"]
    try:
        env = EnvironmentFile.model_validate(data)
    except ValidationError as exc:
        return None, describe_errors(source, exc)
    if env.name != stem:
        return None, [f"{source}: field 'name': {env.name!r} must match the file name ({stem!r})"]
    return EnvironmentDefinition(name=env.name, description=env.description, packages=env.packages,
                                 networking=env.networking, source=source), []


def _files(folder: Traversable, suffixes: Iterable[str]) -> list[Traversable]:
    if not folder.is_dir():
        return []
    return sorted((f for f in folder.iterdir() if f.is_file() and f.name.endswith(tuple(suffixes))),
                  key=lambda f: f.name)


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


def _known_models() -> set[str]:
    try:
        from anthropic.types.beta.beta_managed_agents_model_param import BetaManagedAgentsModelParam
    except ImportError:  # pragma: no cover - another SDK layout
        return set()
    known: set[str] = set()
    for arg in typing.get_args(BetaManagedAgentsModelParam):
        known.update(a for a in typing.get_args(arg) if isinstance(a, str))
    return known


def load_definitions(agents_dir: str | Path | Traversable | None = None,
                     environments_dir: str | Path | Traversable | None = None) -> Definitions:
    """Load and validate both folders; raise DefinitionError naming every bad file and field."""
    default_agents, default_envs = default_dirs()
    a_dir = Path(agents_dir) if isinstance(agents_dir, str) else (agents_dir or default_agents)
    e_dir = Path(environments_dir) if isinstance(environments_dir, str) else (environments_dir or default_envs)
    a_label, e_label = "agents", "environments"
    problems: list[str] = []
    if not a_dir.is_dir():
        problems.append(f"{a_label}/: folder not found ({a_dir})")
    if not e_dir.is_dir():
        problems.append(f"{e_label}/: folder not found ({e_dir})")

    raw: dict[str, tuple[str, dict[str, Any], str]] = {}
    for f in _files(a_dir, (".md",)):
        source = f"{a_label}/{f.name}"
        data, body, errs = split_agent(source, f.read_text(encoding="utf-8"))
        problems += errs
        if data is not None:
            raw[_stem(f.name)] = (source, data, body)
    agents: dict[str, AgentDefinition] = {}
    for stem, (source, data, body) in raw.items():
        data, body, errs = extended(source, data, body, raw)
        definition, more = (None, []) if errs else build_agent(source, data, body, stem)
        problems += errs + more
        if definition is not None:
            agents[definition.name] = definition
    teams, errs = load_teams(a_dir, a_label)
    problems += errs
    environments: dict[str, EnvironmentDefinition] = {}
    for f in _files(e_dir, (".yml", ".yaml")):
        definition, errs = parse_environment(f"{e_label}/{f.name}", f.read_text(encoding="utf-8"), _stem(f.name))
        problems += errs
        if definition is not None:
            if definition.name in environments:
                problems.append(f"{definition.source}: environment {definition.name!r} is defined twice")
            environments[definition.name] = definition

    if a_dir.is_dir() and not agents and not problems:
        problems.append(f"{a_label}/: no agent files (*.md)")
    if agents and not any(p.startswith(f"{a_label}/") for p in problems):
        problems += role_problems(agents, teams, a_label)
        problems += team_problems(teams, agents) if teams is not None else []
    if e_dir.is_dir() and DEFAULT_ENVIRONMENT not in environments and not any(
            p.startswith(f"{e_label}/") for p in problems):
        problems.append(f"{e_label}/: no '{DEFAULT_ENVIRONMENT}.yml' (used when nothing else fits)")
    if problems:
        raise DefinitionError(problems)

    known = _known_models()
    warnings = tuple(
        f"{a.source}: field 'model': {a.model!r} is not a model id this SDK knows (any string is accepted; check "
        f"the spelling)" for a in agents.values() if known and a.model not in known)
    return Definitions(agents=agents, environments=environments, agents_dir=str(a_dir), environments_dir=str(e_dir),
                       warnings=warnings, teams=teams)

