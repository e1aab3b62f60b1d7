"""`prmedic agents check` and `prmedic agents sync`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path


def add_agents_commands(sub: argparse._SubParsersAction) -> None:
    agents = sub.add_parser("agents", help="check or sync the agent and environment definitions")
    commands = agents.add_subparsers(dest="agents_command", required=True)

    check = commands.add_parser(
        "check", help="validate agents/ and environments/ (the working directory's when it has both, else the "
        "shipped ones) and list what they define")
    _dirs(check, default="./agents and ./environments when both exist, else the ones shipped with prmedic")
    check.set_defaults(func=cmd_agents_check)

    sync = commands.add_parser(
        "sync", help="create or update the agents and environments on Anthropic (needs ANTHROPIC_API_KEY)")
    _dirs(sync)
    sync.add_argument("--no-verify", action="store_true",
                      help="trust the store: skip reading known agents and environments back from Anthropic")
    sync.set_defaults(func=cmd_agents_sync)


def _dirs(parser: argparse.ArgumentParser, default: str = "the ones shipped with prmedic") -> None:
    parser.add_argument("--agents-dir", help=f"folder of agent files (default: {default})")
    parser.add_argument("--environments-dir", help=f"folder of environment files (default: {default})")


def check_dirs(agents_dir: str | None, environments_dir: str | None, cwd: Path) -> tuple[str | None, str | None]:
    """The folders `agents check` reads: those given, else the working directory's `agents/` and
    `environments/` when both exist (a checkout being edited), else None (the shipped ones)."""
    if agents_dir is None and environments_dir is None and (cwd / "agents").is_dir() and (cwd / "environments").is_dir():
        return str(cwd / "agents"), str(cwd / "environments")
    return agents_dir, environments_dir


def _checked_where(args: argparse.Namespace, local: bool) -> str:
    from app.agents.definitions import default_dirs

    shipped_agents, shipped_envs = default_dirs()
    if local:
        return f"checking the working directory's {args.agents_dir} and {args.environments_dir}"
    if args.agents_dir is None and args.environments_dir is None:
        return f"checking the definitions shipped with prmedic: {shipped_agents} and {shipped_envs}"
    return f"checking {args.agents_dir or shipped_agents} and {args.environments_dir or shipped_envs}"


def _load(args: argparse.Namespace):
    from app.agents.definitions import DefinitionError, load_definitions

    try:
        return load_definitions(args.agents_dir, args.environments_dir)
    except DefinitionError as exc:
        print(exc, file=sys.stderr)
        return None


def roles(definitions) -> dict[str, list[str]]:
    """What each agent is for in the teams (`agents/teams.yml`): `light lead`, `router`, …"""
    found: dict[str, list[str]] = {}
    teams = definitions.teams
    if teams is not None:
        for depth, name in teams.leads.items():
            found.setdefault(name, []).append(f"{depth} lead")
        found.setdefault(teams.router, []).append("router")
        if teams.verifier:
            found.setdefault(teams.verifier, []).append("verifier")
    for agent in definitions.agents.values():
        for callee in agent.callable_agents:
            found.setdefault(callee, []).append(f"called by {agent.name}")
    return found


def describe(definitions) -> list[str]:
    lines = [f"agents ({definitions.agents_dir}):"]
    role = roles(definitions)
    for agent in [*definitions.callers, *definitions.subagents]:
        model = agent.model + (f" ({agent.effort} effort)" if agent.effort else "")
        tools = ", ".join(f"{n} [{s.permission_policy}]" for n, s in agent.tools.items()) or "none"
        what = f" ({', '.join(role[agent.name])})" if role.get(agent.name) else ""
        lines.append(f"  {agent.name}{what}: {model}; {len(agent.system):,}-character prompt")
        lines.append(f"    built-in tools: {tools}")
        if agent.custom_tools:
            lines.append(f"    custom tools: {', '.join(agent.custom_tools)}")
        if agent.callable_agents:
            lines.append(f"    calls: {', '.join(agent.callable_agents)}")
    lines.append(f"environments ({definitions.environments_dir}):")
    for name, env in sorted(definitions.environments.items()):
        net = env.networking
        if net.type == "limited":
            reach = ["package managers"] if net.allow_package_managers else []
            reach += list(net.allowed_hosts)
            network = "limited to " + (", ".join(reach) if reach else "nothing")
        else:
            network = "unrestricted"
        packages = "; ".join(f"{m}: {', '.join(getattr(env.packages, m))}"
                             for m in ("apt", "pip", "npm", "cargo", "go", "gem") if getattr(env.packages, m))
        lines.append(f"  {name}: network {network}; packages: {packages or 'none'}")
    return lines


def cmd_agents_check(args: argparse.Namespace) -> int:
    given = (args.agents_dir, args.environments_dir)
    args.agents_dir, args.environments_dir = check_dirs(*given, Path.cwd())
    print(_checked_where(args, local=(args.agents_dir, args.environments_dir) != given), flush=True)
    definitions = _load(args)
    if definitions is None:
        return 1
    print("\n".join(describe(definitions)))
    for warning in definitions.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"ok: {len(definitions.agents)} agents and {len(definitions.environments)} environments are valid")
    return 0


def cmd_agents_sync(args: argparse.Namespace) -> int:
    from app.errors import describe
    from app.logs import configure_logging
    from app.settings import StoreSettings, load_settings

    definitions = _load(args)
    if definitions is None:
        return 1
    # Only the store and Anthropic: no GitHub App settings. SettingsError → exit 2 (app.cli.main).
    settings = load_settings(StoreSettings)
    configure_logging(settings.log_format, "WARNING")
    if not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
        print("prmedic agents sync: ANTHROPIC_API_KEY is not set — set it to an API key of the Anthropic "
              "workspace the agents should live in", file=sys.stderr)
        return 2
    try:
        results = asyncio.run(_sync(settings.database_url, definitions, verify=not args.no_verify))
    except Exception as exc:  # noqa: BLE001 - report API and store failures as one line, not a traceback
        import anthropic

        if not isinstance(exc, anthropic.AnthropicError):
            raise
        print(f"prmedic agents sync: failed: {describe(exc)}", file=sys.stderr)
        return 1
    for result in results.results:
        print(result.line())
    for depth, ref in (results.leads or {"deep": results.coordinator}).items():
        print(f"{depth} review lead: {ref.id} version {ref.version}")
    if results.router is not None:
        print(f"router: {results.router.id} version {results.router.version}")
    return 0


async def _sync(database_url: str, definitions, *, verify: bool):
    import anthropic

    from app.agents.sync import sync_definitions
    from app.store import open_store

    store = open_store(database_url)
    await store.open()
    try:
        async with anthropic.AsyncAnthropic() as client:
            return await sync_definitions(client, store, definitions, verify=verify)
    finally:
        await store.close()
