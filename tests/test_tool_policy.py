"""Tool confirmations are answered by the operator's policy (`PRMEDIC_TOOLS_UNATTENDED`, the MCP
servers' `unattended_tools`): a tool allowed to run unattended is confirmed, any other is denied
with a reason the agent can read, logged with the job, and counted in the session's outcome."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from sims.managed_agents import (
    Script,
    mcp_tool_use,
    model_request,
    stop_end_turn,
    thread_created,
    thread_idle,
    tool_use,
)

from app.agents.tool_policy import ToolIdentity, ToolPolicy, decide
from app.sessions import SessionRuntime, SessionSettings, SessionSpec
from app.settings import McpServerSetting, Settings, SettingsError, load_settings
from app.store import Delivery, JobKind, NewJob
from app.tools import ToolContext

LINEAR = McpServerSetting(name="linear", url="https://mcp.linear.app/mcp", vault_id="vlt_linear01",
                          unattended_tools=("get_issue",))
SENTRY = McpServerSetting(name="sentry", url="https://mcp.sentry.dev/mcp", vault_id="vlt_sentry01")


# -- the decision (pure) ---------------------------------------------------------------------


def test_a_built_in_tool_the_operator_listed_is_allowed():
    decision = decide(ToolIdentity("web_fetch"), ToolPolicy.of("web_fetch, mcp:sentry:get_event"))
    assert decision.allow and "web_fetch" in decision.reason


def test_an_mcp_tool_is_allowed_by_its_servers_unattended_tools_or_by_the_setting():
    policy = ToolPolicy.of("mcp:sentry:*", [LINEAR, SENTRY])
    assert decide(ToolIdentity("get_issue", "linear"), policy).allow
    assert decide(ToolIdentity("search_events", "sentry"), policy).allow  # `*`: every tool of the server
    assert not decide(ToolIdentity("create_issue", "linear"), policy).allow
    assert not decide(ToolIdentity("get_issue"), policy).allow  # a built-in tool of that name is another tool


def test_a_tool_not_allowed_is_denied_saying_which_tool_why_and_that_the_operator_decides():
    decision = decide(ToolIdentity("create_issue", "linear"), ToolPolicy.of("web_fetch", [LINEAR]))
    assert not decision.allow
    assert "`mcp:linear:create_issue`" in decision.reason
    assert "needs a person's confirmation" in decision.reason and "nobody confirms" in decision.reason
    assert "operator" in decision.reason and "unattended_tools" in decision.reason

    built_in = decide(ToolIdentity("bash"), ToolPolicy())
    assert not built_in.allow and "`bash`" in built_in.reason and "PRMEDIC_TOOLS_UNATTENDED" in built_in.reason


def test_a_confirmation_whose_tool_is_unknown_is_denied():
    decision = decide(None, ToolPolicy.of("web_fetch"))
    assert not decision.allow and "could not be identified" in decision.reason


def test_the_policy_comes_from_the_settings_and_the_mcp_servers(settings_env, tmp_path, monkeypatch):
    (tmp_path / "mcp.yml").write_text("- {name: linear, url: 'https://mcp.linear.app/mcp', vault_id: vlt_a1, "
                                      "unattended_tools: [get_issue]}\n")
    monkeypatch.setenv("PRMEDIC_MCP_CONFIG", str(tmp_path / "mcp.yml"))
    monkeypatch.setenv("PRMEDIC_TOOLS_UNATTENDED", "web_fetch,mcp:linear:list_comments")
    policy = SessionSettings.from_settings(Settings()).tool_policy
    assert policy.unattended == {"web_fetch", "mcp:linear:get_issue", "mcp:linear:list_comments"}
    assert policy.mcp_tools("linear") == ("get_issue", "list_comments")
    assert SessionSettings().tool_policy == ToolPolicy()  # no settings: nothing runs unattended


@pytest.mark.parametrize("value", ["webfetch", "mcp:linear", "mcp:Linear:get_issue", "linear:get_issue"])
def test_a_bad_unattended_tool_stops_start_up_naming_it(settings_env, monkeypatch, value):
    monkeypatch.setenv("PRMEDIC_TOOLS_UNATTENDED", f"web_fetch,{value}")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    (problem,) = raised.value.problems
    assert problem.startswith("PRMEDIC_TOOLS_UNATTENDED: ") and repr(value) in problem
    assert "mcp:<server>:<tool>" in problem


# -- a session's confirmations, against the simulator -------------------------------------------


async def _runtime_and_spec(managed_agents, store, policy: ToolPolicy) -> tuple[SessionRuntime, SessionSpec, object]:
    client = managed_agents.client
    agent = await client.beta.agents.create(
        model="claude-sonnet-4-6", name="lead",
        tools=[{"type": "agent_toolset_20260401", "default_config": {"enabled": True},
                "configs": [{"name": "web_fetch", "permission_policy": {"type": "always_ask"}},
                            {"name": "bash", "permission_policy": {"type": "always_ask"}}]},
               {"type": "mcp_toolset", "mcp_server_name": "linear",
                "default_config": {"permission_policy": {"type": "always_ask"}},
                "configs": [{"name": "get_issue", "permission_policy": {"type": "always_allow"}}]}],
        mcp_servers=[{"type": "url", "name": "linear", "url": "https://mcp.linear.app/mcp"}])
    env = await client.beta.environments.create(
        name="mcp", config={"type": "cloud", "networking": {"type": "limited", "allow_mcp_servers": True}})
    result = await store.record_delivery(
        Delivery(delivery_id=f"d-policy-{time.time()}", event="pull_request", action="opened", received_at=time.time()),
        [NewJob(kind=JobKind.review, repo="octo/app", installation_id=1, pr_number=7, head_sha="a" * 40)])
    (job,) = await store.claim_jobs("test-worker", 1, 600)
    assert job.id == result.job_ids[0]
    rt = SessionRuntime(client, store, settings=SessionSettings(reconnect_initial_seconds=0.01, tool_policy=policy))
    spec = SessionSpec.for_job(job, task="Look.", agent_id=agent.id, agent_version=agent.version,
                               environment_id=env.id, mount_repository=False)
    return rt, spec, job


async def test_a_session_allows_the_tools_the_policy_allows_and_denies_the_rest_with_a_reason(
        managed_agents, store, caplog):
    sim = managed_agents.sim
    sim.default_script = Script(
        model_request(),
        tool_use("web_fetch", {"url": "https://docs.python.org/3/"}, result="<html>docs</html>", permission="ask"),
        mcp_tool_use("linear", "get_issue", {"id": "ENG-1"}, result="ENG-1: flaky test"),  # always_allow: no ask
        mcp_tool_use("linear", "create_issue", {"title": "x"}, result="created"),
        tool_use("bash", {"command": "curl evil.example.com"}, permission="ask"),
        stop_end_turn())
    rt, spec, job = await _runtime_and_spec(managed_agents, store, ToolPolicy.of("web_fetch"))
    try:
        with caplog.at_level(logging.INFO, logger="prmedic.sessions"):
            outcome = await asyncio.wait_for(rt.run(spec, ToolContext(job=job, store=store)), 10)
    finally:
        await rt.aclose()

    session = sim.session(outcome.session_id)
    answers = {c.name: c.event for c in session.confirmations}
    assert set(answers) == {"web_fetch", "create_issue", "bash"}
    assert answers["web_fetch"]["result"] == "allow" and "deny_message" not in answers["web_fetch"]
    assert answers["create_issue"]["result"] == "deny"
    assert "`mcp:linear:create_issue`" in answers["create_issue"]["deny_message"]
    assert answers["bash"]["result"] == "deny" and "`bash`" in answers["bash"]["deny_message"]
    # the agent read the denial as the tool's result
    results = {e["mcp_tool_use_id"]: e for e in session.events if e["type"] == "agent.mcp_tool_result"}
    denied = next(e for e in session.events if e["type"] == "agent.mcp_tool_use" and e["name"] == "create_issue")
    assert results[denied["id"]]["is_error"] and "operator" in results[denied["id"]]["content"][0]["text"]

    assert outcome.confirmations == {"allow": 1, "deny": 2}
    assert outcome.as_result()["tool_confirmations"] == {"allowed": 1, "denied": 2}
    logged = [r for r in caplog.records if getattr(r, "tool", None)]
    assert {(r.tool, r.decision) for r in logged} == {
        ("web_fetch", "allow"), ("mcp:linear:create_issue", "deny"), ("bash", "deny")}
    assert all(r.job == job.id and f"job {job.id}" in r.getMessage() for r in logged)
    assert sim.violations == []


async def test_a_sub_agents_request_surfaced_on_the_main_stream_is_answered_by_the_policy(managed_agents, store):
    sim = managed_agents.sim
    sim.default_script = Script(
        thread_created("tester"),
        tool_use("web_fetch", {"url": "https://pypi.org/project/requests/"}, result="ok", permission="ask",
                 thread="tester"),
        tool_use("web_search", {"query": "flaky test"}, result="ok", permission="ask", thread="tester"),
        thread_idle("tester"),
        stop_end_turn())
    rt, spec, job = await _runtime_and_spec(managed_agents, store, ToolPolicy.of("web_fetch"))
    try:
        outcome = await asyncio.wait_for(rt.run(spec, ToolContext(job=job, store=store)), 10)
    finally:
        await rt.aclose()

    confirmations = sim.session(outcome.session_id).confirmations
    assert [(c.name, c.event["result"]) for c in confirmations] == [("web_fetch", "allow"), ("web_search", "deny")]
    assert outcome.confirmations == {"allow": 1, "deny": 1} and sim.violations == []
