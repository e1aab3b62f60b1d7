"""Agent and environment definitions: loading, validation, sync to Managed Agents, CLI, packaging."""

from __future__ import annotations

import asyncio
import inspect
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from app.agents import definitions as defs
from app.agents import per_job
from app.agents.definitions import DefinitionError, load_definitions
from app.agents.per_job import choose_environment, render_system_prompt
from app.agents.sync import agent_body, body_hash, ensure_synced, forget_synced, sync_definitions
from app.cli import main
from app.store import open_store
from app.tools import CUSTOM_TOOLS as TOOL_TABLE
from app.tools import default_registry, handler_of, unhandled
from app.tools.schemas import TOOL_INPUTS, CustomTool, ReplyInput

try:
    from sims.managed_agents_fixtures import managed_agents, managed_agents_env  # noqa: F401
except ImportError:  # pragma: no cover - depends on how pytest put tests/ on sys.path
    from tests.sims.managed_agents_fixtures import managed_agents, managed_agents_env  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
CUSTOM_TOOLS = {"report_progress", "publish_review", "propose_fix", "read_ci_log", "reply", "write_description"}
AGENTS = {"coordinator", "coordinator-standard", "reviewer", "reviewer-solo", "router", "tester", "verifier"}
REVIEW_TOOLS = {"report_progress", "publish_review", "reply"}


@pytest.fixture
def defs_copy(tmp_path) -> tuple[Path, Path]:
    """Editable copies of the shipped agents/ and environments/."""
    agents = tmp_path / "defs" / "agents"
    envs = tmp_path / "defs" / "environments"
    shutil.copytree(ROOT / "agents", agents)
    shutil.copytree(ROOT / "environments", envs)
    return agents, envs


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def problems_of(agents_dir, envs_dir) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        load_definitions(agents_dir, envs_dir)
    return info.value.problems


# -- loading ------------------------------------------------------------------------------


def test_every_shipped_definition_loads():
    d = load_definitions()
    assert set(d.agents) == AGENTS
    assert {"default", "python", "node"} <= set(d.environments)
    assert d.warnings == ()  # every model id is one the SDK knows

    coordinator = d.coordinator
    assert coordinator.name == "coordinator" == d.lead("deep").name
    assert coordinator.callable_agents == ("reviewer", "tester")
    assert set(coordinator.custom_tools) == CUSTOM_TOOLS
    assert [a.name for a in d.subagents] == ["reviewer", "reviewer-solo", "router", "tester", "verifier"]
    assert [a.name for a in d.callers] == ["coordinator", "coordinator-standard"]
    for name in ("reviewer", "tester", "router"):
        assert d.agents[name].custom_tools == () and d.agents[name].callable_agents == ()
    # The teams: a lone reviewer on a fast model, a lead with the reviewer, the whole team on Opus.
    assert d.teams.leads == {"light": "reviewer-solo", "standard": "coordinator-standard", "deep": "coordinator"}
    light, standard = d.lead("light"), d.lead("standard")
    assert light.callable_agents == () and set(light.custom_tools) == REVIEW_TOOLS
    assert light.tools == d.agents["reviewer"].tools and light.model == "claude-sonnet-5-5"
    assert standard.callable_agents == ("reviewer",) and set(standard.custom_tools) == REVIEW_TOOLS
    assert standard.tools == coordinator.tools and standard.model == "claude-sonnet-5-5"
    # extends: the inherited prompt, then the variant's own section.
    assert light.system.startswith(d.agents["reviewer"].system) and "publish_review" in light.system[-3000:]
    assert standard.system.startswith(coordinator.system) and "no tester" in standard.system[len(coordinator.system):]
    router = d.router
    assert router.name == "router" and router.model == "claude-haiku-5-5"
    assert router.tools == {} and router.custom_tools == () and router.callable_agents == ()
    assert "LIGHT" in router.system and "DEEP" in router.system
    # The reviewer reads; it has no tools to change the shared working tree.
    assert set(d.agents["reviewer"].tools) == {"bash", "read", "glob", "grep"}
    for agent in d.agents.values():
        assert "web_fetch" not in agent.tools and "web_search" not in agent.tools
        assert "untrusted" in agent.system.lower() or "never to obey" in agent.system
        assert agent.description and agent.model.startswith("claude-")

    for env in d.environments.values():
        config = env.config_param()
        assert config["type"] == "cloud"
        assert config["networking"] == {"type": "limited", "allowed_hosts": [], "allow_package_managers": True,
                                        "allow_mcp_servers": False}


def test_custom_tool_schemas_come_from_the_pydantic_models():
    coordinator = load_definitions().coordinator
    tools = {t["name"]: t for t in coordinator.custom_tool_params()}
    assert set(tools) == CUSTOM_TOOLS
    for name, tool in tools.items():
        expected = TOOL_INPUTS[name].model_json_schema()
        expected.pop("title", None)
        assert tool["input_schema"] == expected
        assert tool["input_schema"]["type"] == "object"
        assert tool["description"]
    comment = tools["publish_review"]["input_schema"]["$defs"]
    assert any("severity" in m["properties"] for m in comment.values())


@pytest.mark.parametrize(("file", "old", "new", "expected"), [
    ("reviewer.md", "model: claude-opus-5-5\n", "", "agents/reviewer.md: field 'model': is required but missing"),
    ("reviewer.md", "bash: always_allow", "bash: sometimes", "agents/reviewer.md: field 'tools.bash.permission_policy'"),
    ("reviewer.md", "effort: high", "effort: extreme", "agents/reviewer.md: field 'effort'"),
    ("reviewer.md", "name: reviewer", "nmae: reviewer", "agents/reviewer.md: field 'nmae': is not a known field"),
    ("tester.md", "name: tester", "name: checker", "agents/tester.md: field 'name': 'checker' must match"),
    ("coordinator.md", "callable_agents: [reviewer, tester]", "callable_agents: [reviewer, fixer]",
     "agents/coordinator.md: field 'callable_agents': no agent named 'fixer'"),
    ("coordinator.md", "custom_tools: [report_progress,", "custom_tools: [report_progres,",
     "agents/coordinator.md: field 'custom_tools': the app has no handler for the custom tool 'report_progres'"),
    ("reviewer.md", "tools:\n", "custom_tools: [reply]\ntools:\n",
     "agents/reviewer.md: field 'custom_tools': only a lead holds custom tools"),
    ("tester.md", "tools:\n", "callable_agents: [reviewer]\ntools:\n",
     "agents/coordinator.md: field 'callable_agents': 'tester' has callable_agents itself"),
    ("reviewer-solo.md", "extends: reviewer", "extends: reviewr",
     "agents/reviewer-solo.md: field 'extends': no agent named 'reviewr'"),
    ("reviewer.md", "name: reviewer\n", "name: reviewer\nextends: tester\n",
     "agents/reviewer-solo.md: field 'extends': 'reviewer' extends another agent itself (agents/reviewer.md)"),
    ("reviewer-solo.md", "model: claude-sonnet-5-5", "model: [claude]",
     "agents/reviewer-solo.md: field 'model'"),
    ("teams.yml", "light: reviewer-solo", "light: reviewer-alone",
     "agents/teams.yml: field 'light': no agent named 'reviewer-alone'"),
    ("teams.yml", "router: router", "router: reviewer",
     "agents/teams.yml: field 'router': 'reviewer' must have no tools"),
    ("teams.yml", "standard: coordinator-standard", "standard: tester",
     "agents/teams.yml: field 'standard': 'tester' leads standard reviews but does not hold publish_review"),
    ("teams.yml", "deep: coordinator", "deep: coordinator\nextra: x",
     "agents/teams.yml: field 'extra': is not a known field"),
    ("reviewer.md", "description: >-", "description: [unclosed", "agents/reviewer.md: the front matter is not valid YAML"),
])
def test_a_broken_agent_file_names_the_file_and_the_field(defs_copy, file, old, new, expected):
    agents, envs = defs_copy
    edit(agents / file, old, new)
    problems = problems_of(agents, envs)
    assert any(p.startswith(expected) for p in problems), problems


def test_broken_environment_files_and_missing_front_matter(defs_copy):
    agents, envs = defs_copy
    edit(envs / "python.yml", "type: limited", "type: open")
    edit(envs / "node.yml", "allow_package_managers: true", "allow_package_managers: false")
    (agents / "notes.md").write_text("Just notes, no front matter.\n")
    problems = problems_of(agents, envs)
    assert any(p.startswith("environments/python.yml: field 'networking'") for p in problems), problems
    assert any(p.startswith("environments/node.yml:") and "allow_package_managers" in p for p in problems), problems
    assert any(p.startswith("agents/notes.md: no YAML front matter") for p in problems), problems
    # One message lists every problem.
    assert len(problems) == 3


def test_teams_yml_is_required_and_an_agent_cannot_extend_itself(defs_copy):
    agents, envs = defs_copy
    (agents / "teams.yml").unlink()
    edit(agents / "reviewer-solo.md", "extends: reviewer", "extends: reviewer-solo")
    problems = problems_of(agents, envs)
    assert any(p.startswith("agents/teams.yml: not found") for p in problems), problems
    assert any(p.startswith("agents/reviewer-solo.md: field 'extends': an agent cannot extend itself")
               for p in problems), problems


def test_a_variant_inherits_every_field_and_overrides_what_it_gives(defs_copy):
    agents, envs = defs_copy
    edit(agents / "reviewer-solo.md", "effort: medium\n", "")
    d = load_definitions(agents, envs)
    solo, reviewer = d.agents["reviewer-solo"], d.agents["reviewer"]
    assert solo.effort == reviewer.effort == "high"  # inherited once not given
    assert solo.model != reviewer.model and solo.description != reviewer.description
    assert solo.source == "agents/reviewer-solo.md"


def test_no_default_environment_is_an_error(defs_copy):
    agents, envs = defs_copy
    (envs / "default.yml").unlink()
    assert any("no 'default.yml'" in p for p in problems_of(agents, envs))


def test_every_tool_of_the_shipped_definitions_has_a_handler():
    for agent in load_definitions().agents.values():
        assert unhandled(agent.custom_tools) == {}, agent.source
        for name in agent.custom_tools:
            assert inspect.iscoroutinefunction(handler_of(name))
    assert set(default_registry().names()) == set(TOOL_TABLE) >= set(load_definitions().coordinator.custom_tools)


def test_agents_check_fails_naming_the_file_and_a_tool_without_a_handler(defs_copy, capsys):
    agents, envs = defs_copy
    edit(agents / "coordinator.md", "write_description]", "write_description, merge_pull_request]")
    code = main(["agents", "check", "--agents-dir", str(agents), "--environments-dir", str(envs)])
    assert code == 1
    err = capsys.readouterr().err
    assert ("agents/coordinator.md: field 'custom_tools': the app has no handler for the custom tool "
            "'merge_pull_request'") in err


def test_a_tool_of_the_contract_whose_handler_is_gone_fails_the_check(defs_copy, monkeypatch):
    agents, envs = defs_copy
    monkeypatch.setitem(TOOL_TABLE, "label", CustomTool("label", ReplyInput, "Label the PR.", "app.tools:nowhere"))
    edit(agents / "coordinator.md", "write_description]", "write_description, label]")
    (problem,) = problems_of(agents, envs)
    assert problem.startswith("agents/coordinator.md: field 'custom_tools': the handler of 'label' (app.tools:nowhere) "
                              "cannot be loaded")


# -- choosing and rendering ------------------------------------------------------------------


@pytest.mark.parametrize(("choice", "language", "expected"), [
    ("node", "Python", "node"),          # the repository config wins
    (None, "Python", "python"),
    (None, "Jupyter Notebook", "python"),
    (None, "JavaScript", "node"),
    (None, "TypeScript", "node"),
    (None, "Go", "go"),
    (None, "Rust", "rust"),
    (None, "typescript", "node"),        # case-insensitive
    (None, "Haskell", "default"),
    (None, None, "default"),
    ("", "Python", "python"),
    ("  Python ", None, "python"),
])
def test_choose_environment(choice, language, expected):
    assert choose_environment(choice, language) == expected


def test_choose_environment_with_available_falls_through_unknown_names():
    assert choose_environment("elixir", "Python", available={"default", "python"}) == "python"
    assert choose_environment(None, "Go", available={"default", "python"}) == "default"


def test_render_system_prompt_appends_a_delimited_trusted_section():
    d = load_definitions()
    coordinator = d.coordinator
    assert render_system_prompt(coordinator, None) == coordinator.system
    assert render_system_prompt(coordinator, "   \n") == coordinator.system
    text = render_system_prompt(coordinator, "Flag any new SQL built with f-strings as a blocker.")
    assert text.startswith(coordinator.system)
    tail = text[len(coordinator.system):]
    assert per_job.EXTRA_HEADING in tail
    assert "<<<BEGIN REPOSITORY INSTRUCTIONS>>>\nFlag any new SQL built with f-strings as a blocker.\n" \
           "<<<END REPOSITORY INSTRUCTIONS>>>" in tail
    assert "pass these instructions on" in tail  # the coordinator relays them to its team
    assert "pass these instructions on" not in render_system_prompt(d.agents["reviewer"], "x")
    long = render_system_prompt(coordinator, "x" * 50_000)
    assert len(long) < len(coordinator.system) + defs.MAX_EXTRA_INSTRUCTIONS_CHARS + 2_000


# -- sync ---------------------------------------------------------------------------------------


def remote_by_name(sim) -> dict[str, dict]:
    return {a["name"]: a for a in (sim.agent(aid) for aid in sim.agents)}


async def test_sync_creates_exactly_what_is_defined(managed_agents, store):
    sim = managed_agents.sim
    d = load_definitions()
    synced = await sync_definitions(managed_agents.client, store, d)

    assert len(sim.agents) == 7 and len(sim.environments) == len(d.environments)
    agents = remote_by_name(sim)
    assert set(agents) == AGENTS
    reviewer, tester, coordinator = agents["reviewer"], agents["tester"], agents["coordinator"]
    assert synced.coordinator.id == coordinator["id"] and synced.coordinator.version == 1
    assert synced.session_agent() == {"type": "agent", "id": coordinator["id"], "version": 1}
    assert {depth: ref.id for depth, ref in synced.leads.items()} == {
        "light": agents["reviewer-solo"]["id"], "standard": agents["coordinator-standard"]["id"],
        "deep": coordinator["id"]}
    assert synced.lead("deep") == synced.coordinator and synced.router.id == agents["router"]["id"]
    assert agents["router"]["tools"] == [] and agents["router"]["multiagent"] is None
    assert agents["coordinator-standard"]["multiagent"]["subagents"]["predefined_agents"] == [
        {"type": "agent", "id": reviewer["id"], "version": 1}]
    assert {t["name"] for t in agents["reviewer-solo"]["tools"] if t["type"] == "custom"} == REVIEW_TOOLS

    multiagent = coordinator["multiagent"]
    assert multiagent["type"] == "multiagent_20261001"
    assert multiagent["subagents"]["inline_agents"] == {"type": "disabled"}
    assert multiagent["subagents"]["predefined_agents"] == [
        {"type": "agent", "id": reviewer["id"], "version": 1},
        {"type": "agent", "id": tester["id"], "version": 1},
    ]
    assert multiagent["workflows"] == {"type": "disabled"} and multiagent["advisor"] == {"type": "disabled"}
    assert reviewer["multiagent"] is None and tester["multiagent"] is None

    custom = {t["name"] for t in coordinator["tools"] if t["type"] == "custom"}
    assert custom == CUSTOM_TOOLS
    for sub in (reviewer, tester):
        assert not [t for t in sub["tools"] if t["type"] == "custom"]
    toolset = next(t for t in reviewer["tools"] if t["type"] == "agent_toolset_20260401")
    enabled = {c["name"] for c in toolset["configs"] if c["enabled"]}
    assert enabled == {"bash", "read", "glob", "grep"}
    assert reviewer["system"] == d.agents["reviewer"].system

    for name, agent in agents.items():
        assert agent["metadata"]["prmedic_name"] == name
        assert agent["metadata"]["prmedic_hash"] == json.loads(await store.get_meta(f"agent:{name}"))["hash"]
    envs = {e["name"]: e for e in sim.environments.values()}
    assert set(envs) == set(d.environments) == set(synced.environments)
    python = envs["python"]
    assert python["config"]["packages"]["pip"] == list(d.environments["python"].packages.pip)
    assert python["config"]["networking"]["type"] == "limited"
    assert python["metadata"]["prmedic_name"] == "python"
    assert synced.environment_id("python") == python["id"]
    assert synced.environment_id("cobol") == synced.environments["default"]
    assert json.loads(await store.get_meta("environment:python"))["id"] == python["id"]
    assert {r.action for r in synced.results} == {"created"}


async def test_a_second_run_makes_no_call_at_all(managed_agents, store):
    sim = managed_agents.sim
    first = await sync_definitions(managed_agents.client, store)
    mark = sim.mark()
    second = await sync_definitions(managed_agents.client, store)
    assert sim.calls[mark:] == []
    assert second == first
    assert {r.action for r in second.results} == {"unchanged"}

    # Verifying reads the objects back, and still writes nothing.
    mark = sim.mark()
    verified = await sync_definitions(managed_agents.client, store, verify=True)
    assert sim.write_calls(since=mark) == []
    assert sim.calls[mark:] and all(c.method == "GET" for c in sim.calls[mark:])
    assert verified == first


async def test_editing_a_prompt_updates_the_agent_and_re_versions_the_coordinator(managed_agents, store, defs_copy):
    sim = managed_agents.sim
    agents_dir, envs_dir = defs_copy
    first = await sync_definitions(managed_agents.client, store, load_definitions(agents_dir, envs_dir))

    edit(agents_dir / "reviewer.md", "Your value is a handful", "Your whole value is a handful")
    mark = sim.mark()
    second = await sync_definitions(managed_agents.client, store, load_definitions(agents_dir, envs_dir))

    writes = sim.write_calls(since=mark)
    # the reviewer and its variant (which inherits its prompt) first, then both leads that pin it
    paths = [(c.method, c.path) for c in writes]
    assert set(paths[:2]) == {("POST", f"/v1/agents/{first.agents[n].id}") for n in ("reviewer", "reviewer-solo")}
    assert set(paths[2:]) == {("POST", f"/v1/agents/{first.agents[n].id}")
                              for n in ("coordinator", "coordinator-standard")}
    assert all(c.body["version"] == 1 for c in writes)
    assert len(sim.agents) == 7  # no new agent
    assert second.agents["reviewer"].id == first.agents["reviewer"].id
    assert second.agents["reviewer"].version == 2
    assert second.agents["tester"] == first.agents["tester"]
    assert second.coordinator.id == first.coordinator.id and second.coordinator.version == 2
    coordinator = sim.agent(first.coordinator.id)
    assert coordinator["multiagent"]["subagents"]["predefined_agents"][0] == {
        "type": "agent", "id": first.agents["reviewer"].id, "version": 2}
    assert "Your whole value" in sim.agent(first.agents["reviewer"].id)["system"]
    actions = {(r.kind, r.name): r.action for r in second.results}
    assert actions[("agent", "reviewer")] == "updated" and actions[("agent", "coordinator")] == "updated"
    assert actions[("agent", "reviewer-solo")] == "updated" == actions[("agent", "coordinator-standard")]
    assert actions[("agent", "tester")] == "unchanged" == actions[("agent", "router")]
    assert second.leads["standard"].version == 2 and second.lead("light").version == 2

    # An environment change updates that environment in place.
    edit(envs_dir / "python.yml", "pip: [pytest, uv, tox, nox]", "pip: [pytest, uv, tox, nox, hatch]")
    mark = sim.mark()
    third = await sync_definitions(managed_agents.client, store, load_definitions(agents_dir, envs_dir))
    writes = sim.write_calls(since=mark)
    assert [(c.method, c.path) for c in writes] == [("POST", f"/v1/environments/{first.environments['python']}")]
    assert third.environments == first.environments
    assert "hatch" in sim.environments[first.environments["python"]]["config"]["packages"]["pip"]


async def test_a_fresh_store_finds_the_existing_agents_by_metadata(managed_agents, store, tmp_path, defs_copy):
    sim = managed_agents.sim
    agents_dir, envs_dir = defs_copy
    first = await sync_definitions(managed_agents.client, store, load_definitions(agents_dir, envs_dir))
    # Somebody else's agent and environment, without our metadata, are left alone.
    await managed_agents.client.beta.agents.create(model="claude-haiku-4-5", name="reviewer")

    fresh = open_store(f"sqlite:///{tmp_path / 'fresh.db'}")
    await fresh.open()
    try:
        mark = sim.mark()
        again = await sync_definitions(managed_agents.client, fresh, load_definitions(agents_dir, envs_dir))
        assert sim.write_calls(since=mark) == []
        assert {r.action for r in again.results} == {"adopted"}
        assert again == first
        assert json.loads(await fresh.get_meta("agent:coordinator"))["id"] == first.coordinator.id

        # A fresh store and a changed definition: the existing agent is updated, not duplicated.
        fresher = open_store(f"sqlite:///{tmp_path / 'fresher.db'}")
        await fresher.open()
        try:
            edit(agents_dir / "tester.md", "You are the tester", "You are the team's tester")
            updated = await sync_definitions(managed_agents.client, fresher, load_definitions(agents_dir, envs_dir))
        finally:
            await fresher.close()
        assert len(sim.agents) == 8  # ours (7) + the stranger
        assert updated.agents["tester"].id == first.agents["tester"].id
        assert updated.agents["tester"].version == 2
        assert updated.coordinator.version == 2
        assert updated.leads["standard"] == first.leads["standard"]  # it does not call the tester
        assert len(sim.environments) == len(first.environments)
    finally:
        await fresh.close()


async def test_an_update_that_lost_a_race_is_retried_on_the_current_version(managed_agents, store, defs_copy):
    sim = managed_agents.sim
    agents_dir, envs_dir = defs_copy
    first = await sync_definitions(managed_agents.client, store, load_definitions(agents_dir, envs_dir))
    # Another replica (with other definitions) moved the tester to version 2 meanwhile.
    await managed_agents.client.beta.agents.update(first.agents["tester"].id, version=1, description="other",
                                                   metadata={"prmedic_hash": "0" * 64})
    edit(agents_dir / "tester.md", "You are the tester", "You are the team's tester")
    second = await sync_definitions(managed_agents.client, store, load_definitions(agents_dir, envs_dir))
    assert len(sim.conflicts) == 1  # one 409, not repeated by the SDK's retries
    assert second.agents["tester"].version == 3
    remote = sim.agent(first.agents["tester"].id)
    assert remote["description"] == load_definitions(agents_dir, envs_dir).agents["tester"].description
    assert remote["metadata"]["prmedic_hash"] == json.loads(await store.get_meta("agent:tester"))["hash"]


async def test_an_archived_agent_is_replaced(managed_agents, store, defs_copy):
    sim = managed_agents.sim
    agents_dir, envs_dir = defs_copy
    first = await sync_definitions(managed_agents.client, store, load_definitions(agents_dir, envs_dir))
    await managed_agents.client.beta.agents.archive(first.agents["reviewer"].id)
    # The store still trusts its record without reading (no call) ...
    mark = sim.mark()
    await sync_definitions(managed_agents.client, store, load_definitions(agents_dir, envs_dir))
    assert sim.calls[mark:] == []
    # ... `verify` notices, creates a new reviewer and re-pins the coordinator.
    verified = await sync_definitions(managed_agents.client, store, load_definitions(agents_dir, envs_dir),
                                      verify=True)
    assert verified.agents["reviewer"].id != first.agents["reviewer"].id
    assert verified.coordinator.id == first.coordinator.id and verified.coordinator.version == 2
    roster = sim.agent(first.coordinator.id)["multiagent"]["subagents"]["predefined_agents"]
    assert roster[0]["id"] == verified.agents["reviewer"].id


async def test_ensure_synced_syncs_once_per_process(managed_agents, store):
    sim = managed_agents.sim
    forget_synced()
    try:
        results = await asyncio.gather(*(ensure_synced(managed_agents.client, store) for _ in range(5)))
        assert all(r == results[0] for r in results)
        assert len(sim.agents) == 7
        mark = sim.mark()
        assert await ensure_synced(managed_agents.client, store) == results[0]
        assert sim.calls[mark:] == []
    finally:
        forget_synced()


def test_hash_covers_the_whole_body_and_the_roster():
    d = load_definitions()
    from app.agents.sync import AgentRef

    coordinator = d.coordinator
    a = agent_body(coordinator, {"reviewer": AgentRef("agent_r", 1), "tester": AgentRef("agent_t", 1)})
    b = agent_body(coordinator, {"reviewer": AgentRef("agent_r", 2), "tester": AgentRef("agent_t", 1)})
    assert body_hash(a) != body_hash(b)
    assert body_hash(a) == body_hash(json.loads(json.dumps(a)))
    with pytest.raises(ValueError, match="not synced yet"):
        agent_body(coordinator, {})


# -- CLI -------------------------------------------------------------------------------------------


def test_agents_check_exit_codes(capsys, defs_copy):
    assert main(["agents", "check"]) == 0
    out = capsys.readouterr().out
    assert "coordinator (deep lead): claude-" in out and "calls: reviewer, tester" in out
    assert "reviewer-solo (light lead): claude-sonnet" in out and "router (router): claude-haiku" in out
    assert "ok: 7 agents and" in out

    agents_dir, envs_dir = defs_copy
    edit(agents_dir / "reviewer.md", "model: claude-opus-5-5\n", "model: 7\n")
    code = main(["agents", "check", "--agents-dir", str(agents_dir), "--environments-dir", str(envs_dir)])
    assert code == 1
    err = capsys.readouterr().err
    assert "agents/reviewer.md: field 'model'" in err


async def test_agents_sync_cli(managed_agents, settings_env, monkeypatch, capsys, store):
    sim = managed_agents.sim
    for key, value in managed_agents.env.items():
        monkeypatch.setenv(key, value)
    code = await asyncio.to_thread(main, ["agents", "sync"])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    for name in AGENTS:
        assert any(line.split()[:3] == ["agent", name, "created"] for line in lines), out
    for name in ("default", "python", "node"):
        assert any(line.split()[:3] == ["environment", name, "created"] for line in lines), out
    assert len(sim.agents) == 7
    router = remote_by_name(sim)["router"]
    assert f"router: {router['id']} version 1" in lines and any(line.startswith("light review lead: ") for line in lines)
    # The CLI used the settings' database: the store knows what was created.
    assert json.loads(await store.get_meta("agent:coordinator"))["id"] == remote_by_name(sim)["coordinator"]["id"]

    mark = sim.mark()
    assert await asyncio.to_thread(main, ["agents", "sync"]) == 0
    out = capsys.readouterr().out
    assert sim.write_calls(since=mark) == []
    assert all(line.split()[2] == "unchanged" for line in out.splitlines() if line.startswith(("agent ", "environment")))


def test_agents_sync_needs_an_api_key(settings_env, monkeypatch, capsys):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    assert main(["agents", "sync"]) == 2
    assert "ANTHROPIC_API_KEY" in capsys.readouterr().err


# -- packaging -------------------------------------------------------------------------------------


def test_pyproject_ships_every_package_and_the_definitions():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "app").rglob("__init__.py")}
    missing = on_disk - listed
    assert not missing, f"add these packages to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    assert config["package-dir"] == {"app.definitions.agents": "agents",
                                     "app.definitions.environments": "environments"}
    assert {"app.definitions.agents", "app.definitions.environments"} <= listed
    assert config["package-data"]["app.definitions.agents"] == ["*.md", "teams.yml"]
    assert set(config["package-data"]["app.definitions.environments"]) >= {"*.yml"}


def test_the_wheel_ships_the_definitions(tmp_path):
    """Run setuptools' build_py (what the wheel is made of) offline on a copy of the project, then
    load the definitions from the built tree through importlib.resources, in another directory."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("app", "agents", "environments"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    lib = tmp_path / "lib"
    build = subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py", "--build-lib", str(lib)],
        cwd=src, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    for folder, suffix in (("agents", ".md"), ("environments", ".yml")):
        shipped = {f.name for f in (ROOT / folder).glob(f"*{suffix}")} | ({"teams.yml"} if folder == "agents" else set())
        assert shipped and shipped == {f.name for f in (lib / "app" / "definitions" / folder).iterdir()}
    assert (lib / "app" / "agents" / "definitions.py").is_file()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = (
        "import app, app.agents.definitions as d\n"
        "defs = d.load_definitions()\n"
        "print(app.__file__); print(defs.agents_dir); print(sorted(defs.agents)); print(sorted(defs.environments))\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(lib), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    app_file, agents_dir, agents, envs = run.stdout.splitlines()
    assert app_file.startswith(str(lib))  # imported from the built tree, not the source checkout
    assert agents_dir == str(lib / "app" / "definitions" / "agents")
    assert agents == str(sorted(AGENTS))
    assert "'default'" in envs and "'python'" in envs
