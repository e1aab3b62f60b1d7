"""`prmedic agents check` and `prmedic agents sync`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys


def add_agents_commands(sub: argparse._SubParsersAction) -> None:
    agents = sub.add_parser("agents", help="check or sync the agent and environment definitions")
    commands = agents.add_subparsers(dest="agents_command", required=True)

    check = commands.add_parser("check", help="validate agents/ and environments/ and list what they define")
    _dirs(check)
    check.set_defaults(func=cmd_agents_check)

    sync = commands.add_parser(
        "sync", help="create or update the agents and environments on Anthropic (needs ANTHROPIC_API_KEY)")
    _dirs(sync)
    sync.add_argument("--no-verify", action="store_true",
                      help="trust the store: skip reading known agents and environments back from Anthropic")
    sync.set_defaults(func=cmd_agents_sync)


def _dirs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agents-dir", help="folder of agent files (default: the ones shipped with prmedic)")
    parser.add_argument("--environments-dir", help="folder of environment files (default: the shipped ones)")


def _load(args: argparse.Namespace):
    from app.agents.definitions import DefinitionError, load_definitions

    try:
        return load_definitions(args.agents_dir, args.environments_dir)
    except DefinitionError as exc:
        print(exc, file=sys.stderr)
        return None


def describe(definitions) -> list[str]:
    lines = [f"agents ({definitions.agents_dir}):"]
    for agent in [definitions.coordinator, *definitions.subagents]:
        model = agent.model + (f" ({agent.effort} effort)" if agent.effort else "")
        tools = ", ".join(f"{n} [{s.permission_policy}]" for n, s in agent.tools.items()) or "none"
        lines.append(f"  {agent.name}: {model}; {len(agent.system):,}-character prompt")
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
    definitions = _load(args)
    if definitions is None:
        return 1
    print("\n".join(describe(definitions)))
    for warning in definitions.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"ok: {len(definitions.agents)} agents and {len(definitions.environments)} environments are valid")
    return 0


def cmd_agents_sync(args: argparse.Namespace) -> int:
    from app.logs import configure_logging
    from app.settings import load_settings

    definitions = _load(args)
    if definitions is None:
        return 1
    settings = load_settings()  # SettingsError → exit 2 with every problem named (app.cli.main)
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
        print(f"prmedic agents sync: failed: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    for result in results.results:
        print(result.line())
    print(f"coordinator: {results.coordinator.id} version {results.coordinator.version}")
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
