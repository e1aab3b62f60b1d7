"""MCP servers: the operator declares them (`PRMEDIC_MCP_CONFIG`: name, https URL, vault, unattended
tools; never a credential), a repository opts in by name (`mcp:` in `.github/prmedic.yml`), and
its lead agent gets their toolsets and vaults in an environment whose networking allows MCP servers;
an unknown name is a config problem, ignored."""

from __future__ import annotations

import json

import anthropic
import pytest
from anthropic.types.beta import session_create_params
from anthropic.types.beta.beta_managed_agents_agent_with_overrides_params import (
    BetaManagedAgentsAgentWithOverridesParams,
)
from review_helpers import REPO, PullRequestRepo
from sims.managed_agents import (
    Script,
    custom_tool_use,
    mcp_tool_use,
    model_request,
    stop_end_turn,
    validate_params,
)

from app.agents.derived import DERIVED_PREFIX, derive_environment, forget_derived
from app.agents.mcp import mcp_overrides, repository_servers, toolset_param
from app.agents.sync import agent_body_unpinned, default_definitions
from app.agents.tool_policy import ToolPolicy
from app.repo_config import EnvironmentExtension, parse_repo_config
from app.sessions.api import create_params
from app.sessions.types import SessionSpec
from app.settings import McpServerSetting, SettingsError, load_settings, read_mcp_config
from app.store import JobState

MCP_YAML = """\
- name: linear
  url: https://mcp.linear.app/mcp
  vault_id: vlt_011CZkZaBF1tNoB5wlCeusgy
  unattended_tools: [get_issue, list_comments]
- name: sentry
  url: https://mcp.sentry.dev/mcp
  vault_id: vlt_sentry01
"""
LINEAR = McpServerSetting(name="linear", url="https://mcp.linear.app/mcp", vault_id="vlt_linear01",
                          unattended_tools=("get_issue",))
SENTRY = McpServerSetting(name="sentry", url="https://mcp.sentry.dev/mcp", vault_id="vlt_sentry01")


@pytest.fixture
def mcp_config(settings_env, tmp_path, monkeypatch):
    """The operator's MCP config file, set in PRMEDIC_MCP_CONFIG (before the app reads its settings)."""
    path = tmp_path / "mcp.yml"
    path.write_text(MCP_YAML)
    monkeypatch.setenv("PRMEDIC_MCP_CONFIG", str(path))
    return path


@pytest.fixture(autouse=True)
def _fresh_derived_cache():
    forget_derived()
    yield
    forget_derived()


# -- the operator's file ----------------------------------------------------------------------


def test_the_mcp_config_is_read_from_yaml_or_json(tmp_path):
    (tmp_path / "mcp.yml").write_text(MCP_YAML)
    linear, sentry = read_mcp_config(tmp_path / "mcp.yml")
    assert linear.name == "linear" and linear.unattended_tools == ("get_issue", "list_comments")
    assert sentry.vault_id == "vlt_sentry01" and sentry.unattended_tools == ()

    (tmp_path / "mcp.json").write_text(json.dumps({"servers": [LINEAR.model_dump()]}))
    assert read_mcp_config(tmp_path / "mcp.json") == (LINEAR,)


def test_the_settings_keep_the_operators_servers(mcp_config):
    assert [s.name for s in load_settings().mcp_servers] == ["linear", "sentry"]


@pytest.mark.parametrize(("entry", "where", "why"), [
    ({"url": "http://mcp.example.com/mcp"}, "servers[0].url", "is not an https:// URL"),
    ({"url": "https://user:secret@mcp.example.com/mcp"}, "servers[0].url", "must not carry credentials"),
    ({"vault_id": "linear-vault"}, "servers[0].vault_id", "should match pattern"),
    ({"name": "Linear:prod"}, "servers[0].name", "should match pattern"),
    ({"token": "lin_api_123"}, "servers[0].token", "a credential belongs in the vault"),
    ({"unattended_tools": ["get issue"]}, "servers[0].unattended_tools", "not an MCP tool name"),
])
def test_a_bad_mcp_config_stops_start_up_naming_the_file_and_the_field(mcp_config, entry, where, why):
    server = {"name": "linear", "url": "https://mcp.linear.app/mcp", "vault_id": "vlt_linear01", **entry}
    mcp_config.write_text(json.dumps([server]))
    with pytest.raises(SettingsError) as raised:
        load_settings()
    (problem,) = raised.value.problems
    assert problem.startswith(f"PRMEDIC_MCP_CONFIG: {mcp_config}: {where}: ")
    assert why.lower() in problem.lower()
    assert "lin_api_123" not in str(raised.value) and "secret" not in str(raised.value)


@pytest.mark.parametrize(("text", "why"), [
    (("- {name: a, url: 'https://a.example.com', vault_id: vlt_1}\n- {name: a, url: 'https://b.example.com', "
     "vault_id: vlt_2}\n"), "server name 'a' is used twice"),
    ("linear: https://mcp.linear.app\n", "must be a list of servers"),
    ("- [unclosed\n", "is not valid YAML or JSON"),
])
def test_a_malformed_mcp_config_is_refused_with_what_is_wrong(mcp_config, text, why):
    mcp_config.write_text(text)
    with pytest.raises(SettingsError, match="PRMEDIC_MCP_CONFIG: ") as raised:
        load_settings()
    assert why in str(raised.value) and str(mcp_config) in str(raised.value)


def test_a_missing_mcp_config_file_stops_start_up(settings_env, tmp_path, monkeypatch):
    monkeypatch.setenv("PRMEDIC_MCP_CONFIG", str(tmp_path / "nowhere.yml"))
    with pytest.raises(SettingsError, match=r"PRMEDIC_MCP_CONFIG: cannot read .*nowhere\.yml"):
        load_settings()


# -- a repository's choice ----------------------------------------------------------------------


def test_a_repository_opts_in_by_name_and_an_unknown_name_is_reported_and_ignored():
    loaded = parse_repo_config("mcp: [sentry, jira, linear]\n")
    assert loaded.errors == [] and loaded.config.mcp == ["sentry", "jira", "linear"]

    servers, problems = repository_servers(loaded.config.mcp, [LINEAR, SENTRY])
    assert servers == (SENTRY, LINEAR)
    assert problems == [(".github/prmedic.yml: `mcp`: 'jira' is not an MCP server prmedic's operator configured "
                        "(known: linear, sentry); it is ignored")]
    assert "none are configured" in repository_servers(["linear"], [])[1][0]


def test_a_server_name_that_is_not_a_name_is_a_config_problem():
    loaded = parse_repo_config("mcp: ['https://evil.example.com']\n")
    assert loaded.config.mcp == [] and "`mcp.0`" in loaded.errors[0]


# -- what the session is created with -----------------------------------------------------------


def test_the_toolset_allows_the_unattended_tools_and_asks_for_the_rest():
    policy = ToolPolicy.of("mcp:linear:list_comments,mcp:sentry:*", [LINEAR, SENTRY])
    assert toolset_param(LINEAR, policy) == {
        "type": "mcp_toolset", "mcp_server_name": "linear",
        "default_config": {"enabled": True, "permission_policy": {"type": "always_ask"}},
        "configs": [{"name": "get_issue", "permission_policy": {"type": "always_allow"}},
                    {"name": "list_comments", "permission_policy": {"type": "always_allow"}}]}
    assert toolset_param(SENTRY, policy)["default_config"]["permission_policy"] == {"type": "always_allow"}


def test_the_session_gets_the_leads_own_tools_the_toolsets_the_servers_and_their_vaults_valid_for_the_sdk():
    lead = default_definitions().lead("deep")
    overrides = mcp_overrides(lead, [LINEAR, SENTRY], ToolPolicy.of("", [LINEAR, SENTRY]))
    assert overrides is not None and mcp_overrides(lead, [], ToolPolicy()) is None
    own = agent_body_unpinned(lead)["tools"]
    assert overrides.tools[:len(own)] == own  # the override replaces the list: the lead keeps all its tools
    assert [t["mcp_server_name"] for t in overrides.tools[len(own):]] == ["linear", "sentry"]
    assert overrides.mcp_servers == [{"type": "url", "name": "linear", "url": "https://mcp.linear.app/mcp"},
                                     {"type": "url", "name": "sentry", "url": "https://mcp.sentry.dev/mcp"}]
    assert overrides.vault_ids == ["vlt_linear01", "vlt_sentry01"]

    spec = SessionSpec(job_id=1, repo="octo/app", head_sha="a" * 40, task="Fix it.", agent_id="agent_1",
                       environment_id="env_1", agent_version=3, system_override="You lead.",
                       agent_tools=overrides.tools, mcp_servers=overrides.mcp_servers, vault_ids=overrides.vault_ids)
    body = create_params(spec, "ghs_token", github_web_url="https://github.com")
    validate_params(session_create_params.SessionCreateParams, body)
    validate_params(BetaManagedAgentsAgentWithOverridesParams, body["agent"])
    assert body["agent"]["type"] == "agent_with_overrides" and body["agent"]["system"] == "You lead."
    assert body["vault_ids"] == ["vlt_linear01", "vlt_sentry01"]

    plain = create_params(SessionSpec(job_id=1, repo="octo/app", head_sha="a" * 40, task="t", agent_id="agent_1",
                                      environment_id="env_1"), "", github_web_url="https://github.com")
    assert plain["agent"] == {"type": "agent", "id": "agent_1"} and "vault_ids" not in plain


def test_only_a_job_with_mcp_servers_gets_networking_that_allows_them():
    python = default_definitions().environments["python"]
    with_mcp = derive_environment(python, None, allow_mcp_servers=True)
    assert with_mcp.networking.allow_mcp_servers and not python.networking.allow_mcp_servers
    assert with_mcp.networking.allowed_hosts == python.networking.allowed_hosts  # nothing more
    assert with_mcp.name.startswith(f"{DERIVED_PREFIX}python-") and "MCP servers allowed" in with_mcp.description

    extension = EnvironmentExtension(allowed_hosts=["pypi.internal.example.com"])
    extended = derive_environment(python, extension)
    both = derive_environment(python, extension, allow_mcp_servers=True)
    assert not extended.networking.allow_mcp_servers and both.networking.allow_mcp_servers
    assert len({with_mcp.name, extended.name, both.name}) == 3  # one environment per distinct setting


# -- end to end ----------------------------------------------------------------------------------


def _mcp_review_script():
    return Script(
        model_request(),
        mcp_tool_use("linear", "get_issue", {"id": "ENG-12"}, result="ENG-12: totals are off by one"),
        custom_tool_use("publish_review", {"summary": "Checked against ENG-12.", "event": "COMMENT", "comments": []}),
        stop_end_turn())


async def test_a_repository_opting_into_an_mcp_server_gets_its_toolset_vault_and_networking(
        mcp_config, app_stack, git_repo):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    pr.set_config("review:\n  depth: deep\nmcp: [linear, jira]\n")
    sim.default_script = _mcp_review_script
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()

    (job,) = await app_stack.store.list_jobs(kind="review")
    assert job.state is JobState.done, job.last_error
    (session,) = sim.sessions.values()
    assert session.agent["name"] == "coordinator" and session.vault_ids == ["vlt_011CZkZaBF1tNoB5wlCeusgy"]
    assert session.agent["mcp_servers"] == [{"type": "url", "name": "linear", "url": "https://mcp.linear.app/mcp"}]
    (toolset,) = [t for t in session.agent["tools"] if t["type"] == "mcp_toolset"]
    assert toolset["mcp_server_name"] == "linear"
    assert {c["name"]: c["permission_policy"]["type"] for c in toolset["configs"]} == {
        "get_issue": "always_allow", "list_comments": "always_allow"}
    assert any(t["type"] == "custom" and t["name"] == "publish_review" for t in session.agent["tools"])
    environment = sim.environments[session.environment_id]
    assert environment["name"].startswith(DERIVED_PREFIX)
    assert environment["config"]["networking"]["allow_mcp_servers"] is True

    # linear's unattended tool ran without a confirmation and reached its server
    (result,) = [e for e in session.events if e["type"] == "agent.mcp_tool_result"]
    assert not result["is_error"] and result["content"][0]["text"] == "ENG-12: totals are off by one"
    assert session.confirmations == [] and job.result["tool_confirmations"] == {"allowed": 0, "denied": 0}
    assert sim.violations == []

    summary = next(c for c in state.check_runs_for(REPO, pr.head) if c.name == "prmedic review").output["summary"]
    assert "'jira' is not an MCP server prmedic's operator configured" in summary


async def test_a_repository_that_does_not_opt_in_runs_as_before(mcp_config, app_stack, git_repo):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    pr.set_config("review:\n  depth: deep\n")
    sim.default_script = Script(model_request(), custom_tool_use(
        "publish_review", {"summary": "Fine.", "event": "COMMENT", "comments": []}), stop_end_turn())
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()

    (session,) = sim.sessions.values()
    assert session.agent["mcp_servers"] == [] and session.vault_ids == []
    assert not sim.environments[session.environment_id]["name"].startswith(DERIVED_PREFIX)
    assert sim.environments[session.environment_id]["config"]["networking"]["allow_mcp_servers"] is False
    assert sim.violations == []


# -- the simulator holds the API's rules ----------------------------------------------------------


async def test_the_simulator_refuses_a_toolset_without_its_server_and_a_malformed_vault(managed_agents):
    client, sim = managed_agents.client, managed_agents.sim
    agent = await client.beta.agents.create(model="claude-sonnet-4-6", name="lead")
    env = await client.beta.environments.create(name="plain", config={"type": "cloud"})
    sim.expect_violations = True
    linear = {"type": "url", "name": "linear", "url": "https://mcp.linear.app/mcp"}
    for overrides, vaults, why in [
        ({"tools": [{"type": "mcp_toolset", "mcp_server_name": "sentry"}], "mcp_servers": [linear]}, [],
         "unknown MCP server 'sentry'"),
        ({"tools": [{"type": "mcp_toolset", "mcp_server_name": "linear"}], "mcp_servers": [linear]}, ["linear"],
         "vault_ids: not vault ids"),
    ]:
        with pytest.raises(anthropic.BadRequestError, match=why):
            await client.beta.sessions.create(agent={"type": "agent_with_overrides", "id": agent.id, **overrides},
                                              environment_id=env.id, vault_ids=vaults)


async def test_an_mcp_server_is_unreachable_from_networking_that_does_not_allow_it(managed_agents):
    client, sim = managed_agents.client, managed_agents.sim
    agent = await client.beta.agents.create(
        model="claude-sonnet-4-6", name="lead",
        tools=[{"type": "mcp_toolset", "mcp_server_name": "linear",
                "default_config": {"permission_policy": {"type": "always_allow"}}}],
        mcp_servers=[{"type": "url", "name": "linear", "url": "https://mcp.linear.app/mcp"}])
    env = await client.beta.environments.create(name="limited", config={
        "type": "cloud", "networking": {"type": "limited", "allow_package_managers": True}})
    sim.default_script = Script(mcp_tool_use("linear", "get_issue", {"id": "ENG-1"}, result="ENG-1"), stop_end_turn())
    session = await client.beta.sessions.create(agent=agent.id, environment_id=env.id, vault_ids=["vlt_linear01"])
    await client.beta.sessions.events.send(session.id, events=[{"type": "user.message",
                                                                "content": [{"type": "text", "text": "go"}]}])
    await sim.wait_idle(session.id, "end_turn")
    events = sim.sessions[session.id].events
    (error,) = [e for e in events if e["type"] == "session.error"]
    assert error["error"]["type"] == "mcp_connection_failed_error" and error["error"]["mcp_server_name"] == "linear"
    assert next(e for e in events if e["type"] == "agent.mcp_tool_result")["is_error"] is True
