"""The Managed Agents simulator, driven through the real ``anthropic`` SDK."""

from __future__ import annotations

import asyncio

import aiohttp
import anthropic
import httpx2
import pytest

try:
    from sims.managed_agents import (BETA, Script, agent_message, bad_tool_input_then_fix, budget_reached,
                                     custom_tool_use, custom_tool_uses, dropped_stream, end_turn_only,
                                     model_request, normal_review_run, refusal, repository_clone_error,
                                     retries_exhausted, stop_end_turn, terminated, tool_use)
    from sims.managed_agents_fixtures import managed_agents, managed_agents_env  # noqa: F401
except ImportError:  # pragma: no cover - depends on how pytest put tests/ on sys.path
    from tests.sims.managed_agents import (BETA, Script, agent_message, bad_tool_input_then_fix, budget_reached,
                                           custom_tool_use, custom_tool_uses, dropped_stream,
                                           end_turn_only, model_request, normal_review_run, refusal,
                                           repository_clone_error, retries_exhausted, stop_end_turn, terminated,
                                           tool_use)
    from tests.sims.managed_agents_fixtures import managed_agents, managed_agents_env  # noqa: F401

CUSTOM_TOOLS = [
    {
        "type": "custom",
        "name": name,
        "description": f"{name} tool",
        "input_schema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": []},
    }
    for name in ("report_progress", "publish_review", "propose_fix", "read_ci_log", "reply")
]
REPO = "https://github.com/octo-org/hello-world"


def msg(text: str = "Review this PR") -> dict:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


async def setup_team(client) -> tuple:
    reviewer = await client.beta.agents.create(model="claude-sonnet-4-6", name="reviewer", tools=[{"type": "agent_toolset_20260401"}])
    tester = await client.beta.agents.create(model="claude-sonnet-4-6", name="tester")
    coord = await client.beta.agents.create(
        model={"id": "claude-opus-4-6", "effort": "high"},
        name="coordinator",
        system="You coordinate.",
        tools=[{"type": "agent_toolset_20260401", "configs": [{"name": "bash", "enabled": True}]}, *CUSTOM_TOOLS],
        metadata={"prmedic_hash": "abc"},
        multiagent={"type": "coordinator", "agents": [reviewer.id, {"type": "agent", "id": tester.id, "version": 1}]},
    )
    env = await client.beta.environments.create(
        name="python",
        config={"type": "cloud", "networking": {"type": "limited", "allowed_hosts": ["pypi.org"], "allow_package_managers": True},
                "packages": {"type": "packages", "pip": ["pytest"]}},
    )
    return coord, env


async def new_session(client, coord, env, **kw):
    return await client.beta.sessions.create(
        agent=coord.id,
        environment_id=env.id,
        resources=[{"type": "github_repository", "url": REPO, "authorization_token": "ghs_x", "checkout": {"type": "commit", "sha": "a" * 40}}],
        budget={"type": "limit", "max_list_cost": {"amount": "500", "currency": "USD"}},
        metadata={"job": "1", **kw.pop("metadata", {})},
        **kw,
    )


async def run_to_idle(client, sid: str, answer=None, *, first: dict | None = None,
                      stop_on=("end_turn", "retries_exhausted", "budget_reached", "refusal")):
    """Open the stream, send ``first`` (if any), and stream until the session idles for good,
    answering custom tool uses with ``answer(ev) -> (text, is_error)``."""
    seen = []
    stream = await client.beta.sessions.events.stream(sid)
    if first is not None:
        await client.beta.sessions.events.send(sid, events=[first])
    async with asyncio.timeout(5), stream:
        async for ev in stream:
            seen.append(ev)
            if ev.type == "agent.custom_tool_use":
                text, is_error = answer(ev) if answer else ("ok", False)
                await client.beta.sessions.events.send(
                    sid, events=[{"type": "user.custom_tool_result", "custom_tool_use_id": ev.id,
                                  "content": [{"type": "text", "text": text}], "is_error": is_error}]
                )
            if ev.type == "session.status_idle" and ev.stop_reason.type in stop_on:
                break
            if ev.type == "session.status_terminated":
                break
    return seen


# --------------------------------------------------------------------------------------
# every SDK method
# --------------------------------------------------------------------------------------


async def test_every_sdk_method_round_trips(managed_agents):
    c, sim = managed_agents.client, managed_agents.sim
    coord, env = await setup_team(c)
    assert coord.id.startswith("agent_") and coord.version == 1
    assert coord.model.id == "claude-opus-4-6" and coord.model.effort.type == "high"
    assert [t.type for t in coord.tools][:1] == ["agent_toolset_20260401"]
    assert {t.name for t in coord.tools if t.type == "custom"} == {t["name"] for t in CUSTOM_TOOLS}
    assert coord.multiagent.type == "coordinator" and len(coord.multiagent.agents) == 2

    # agents: retrieve, update (metadata patch + list replaced), versions, list, archive
    got = await c.beta.agents.retrieve(coord.id)
    assert got.id == coord.id
    upd = await c.beta.agents.update(coord.id, version=1, metadata={"prmedic_hash": "def", "extra": "1"}, tools=CUSTOM_TOOLS[:2])
    assert upd.version == 2 and upd.metadata == {"prmedic_hash": "def", "extra": "1"}
    assert [t.name for t in upd.tools] == ["report_progress", "publish_review"]
    upd = await c.beta.agents.update(coord.id, metadata={"extra": None})
    assert upd.version == 3 and upd.metadata == {"prmedic_hash": "def"}
    same = await c.beta.agents.update(coord.id, version=3, metadata={"prmedic_hash": "def"})
    assert same.version == 3  # no-op update: no new version
    v1 = await c.beta.agents.retrieve(coord.id, version=1)
    assert v1.version == 1 and v1.metadata == {"prmedic_hash": "abc"}
    versions = [v.version async for v in c.beta.agents.versions.list(coord.id)]
    assert versions == [3, 2, 1]
    page = await c.beta.agents.list(limit=2)
    assert len(page.data) == 2 and page.next_page
    all_agents = [a.id async for a in c.beta.agents.list(limit=2)]
    assert len(all_agents) == 3 and coord.id in all_agents

    # environments
    assert env.id.startswith("env_") and env.config.networking.type == "limited"
    assert (await c.beta.environments.retrieve(env.id)).name == "python"
    env2 = await c.beta.environments.update(env.id, description="py", metadata={"k": "v"})
    assert env2.description == "py" and env2.config.packages.pip == ["pytest"]
    assert [e.id async for e in c.beta.environments.list()] == [env.id]
    spare = await c.beta.environments.create(name="spare")
    assert spare.config.type == "cloud" and spare.config.networking.type == "unrestricted"
    assert (await c.beta.environments.archive(spare.id)).archived_at is not None
    assert (await c.beta.environments.delete(spare.id)).type == "environment_deleted"

    # sessions
    s = await new_session(c, coord, env, title="PR #1")
    assert s.id.startswith("sesn_") and s.status == "idle" and s.agent.version == 3
    assert s.resources[0].id.startswith("sres_") and s.resources[0].mount_path == "/workspace/hello-world"
    assert s.usage.list_cost.amount == "0" and s.budget.max_list_cost.amount == "500"
    assert (await c.beta.sessions.retrieve(s.id)).title == "PR #1"
    s = await c.beta.sessions.update(s.id, metadata={"job": None, "pr": "1"}, title="PR #1 (2)")
    assert s.metadata == {"pr": "1"} and s.title == "PR #1 (2)"
    listed = await c.beta.sessions.list()
    assert [x.id for x in listed.data] == [s.id] and listed.prev_page is None

    # resources
    res = [r async for r in c.beta.sessions.resources.list(s.id)]
    assert len(res) == 1 and not hasattr(res[0], "authorization_token")
    rid = res[0].id
    assert (await c.beta.sessions.resources.retrieve(rid, session_id=s.id)).url == REPO
    rotated = await c.beta.sessions.resources.update(rid, session_id=s.id, authorization_token="ghs_new")
    assert rotated.id == rid
    assert sim.sessions[s.id].resources[0]["_token"] == "ghs_new"
    added = await c.beta.sessions.resources.add(s.id, type="file", file_id="file_abc")
    assert added.mount_path == "/mnt/session/uploads/file_abc"
    assert (await c.beta.sessions.resources.delete(added.id, session_id=s.id)).type == "session_resource_deleted"

    # events, threads
    sim.sessions[s.id].script = end_turn_only("All good.")
    sent = await c.beta.sessions.events.send(s.id, events=[msg()])
    assert sent.data[0].type == "user.message" and sent.data[0].id.startswith("sevt_")
    await sim.wait_idle(s.id, "end_turn")
    events = [e async for e in c.beta.sessions.events.list(s.id)]
    assert [e.type for e in events] == [
        "session.updated", "user.message", "session.status_running", "span.model_request_start", "span.model_request_end",
        "agent.message", "session.status_idle",
    ]
    assert len({e.id for e in events}) == len(events) and all(e.processed_at for e in events)
    threads = [t async for t in c.beta.sessions.threads.list(s.id)]
    assert len(threads) == 1 and threads[0].id.startswith("sthr_") and threads[0].parent_thread_id is None
    assert (await c.beta.sessions.threads.retrieve(threads[0].id, session_id=s.id)).status == "idle"
    tev = [e async for e in c.beta.sessions.threads.events.list(threads[0].id, session_id=s.id)]
    assert [e.id for e in tev] == [e.id for e in events]

    s_final = await c.beta.sessions.retrieve(s.id)
    assert s_final.usage.input_tokens == 1000 and s_final.usage.output_tokens == 80
    assert s_final.stats.active_seconds is not None and s_final.stats.duration_seconds >= s_final.stats.active_seconds

    assert (await c.beta.sessions.archive(s.id)).archived_at is not None
    assert [x.id async for x in c.beta.sessions.list()] == []
    assert [x.id async for x in c.beta.sessions.list(include_archived=True)] == [s.id]
    assert (await c.beta.sessions.delete(s.id)).type == "session_deleted"
    with pytest.raises(anthropic.NotFoundError):
        await c.beta.sessions.retrieve(s.id)
    archived = await c.beta.agents.archive(coord.id)
    assert archived.archived_at is not None
    assert coord.id not in [a.id async for a in c.beta.agents.list()]


async def test_thread_stream_and_thread_events(managed_agents):
    c, sim = managed_agents.client, managed_agents.sim
    coord, env = await setup_team(c)
    sim.default_script = normal_review_run()
    s = await new_session(c, coord, env, initial_events=[msg()])
    await run_to_idle(c, s.id)
    threads = [t async for t in c.beta.sessions.threads.list(s.id)]
    by_name = {t.agent.name: t for t in threads}
    assert set(by_name) == {"coordinator", "reviewer", "tester"}
    assert by_name["reviewer"].parent_thread_id == by_name["coordinator"].id
    assert by_name["reviewer"].usage.input_tokens == 1800
    rev_events = [e async for e in c.beta.sessions.threads.events.list(by_name["reviewer"].id, session_id=s.id)]
    types = [e.type for e in rev_events]
    assert types[0] == "session.thread_status_running" and "agent.tool_use" in types and types[-1] == "session.thread_status_idle"
    # sub-agent work stays in the thread; the session log gets the cross-posted status events
    session_types = [e.type async for e in c.beta.sessions.events.list(s.id)]
    assert "agent.tool_use" not in session_types and session_types.count("session.thread_created") == 2
    idle_only = [e async for e in c.beta.sessions.threads.list(s.id, statuses=["idle"])]
    assert len(idle_only) == 3
    archived = await c.beta.sessions.threads.archive(by_name["tester"].id, session_id=s.id)
    assert archived.archived_at is not None

    # a live thread stream
    sim.sessions[s.id].script = Script(custom_tool_use("reply", {"message": "hi"}), agent_message("bye"))
    stream = await c.beta.sessions.threads.events.stream(by_name["coordinator"].id, session_id=s.id)
    await c.beta.sessions.events.send(s.id, events=[msg("again")])
    got = []
    async with asyncio.timeout(5), stream:
        async for ev in stream:
            got.append(ev.type)
            if ev.type == "agent.custom_tool_use":
                await c.beta.sessions.events.send(s.id, events=[{"type": "user.custom_tool_result", "custom_tool_use_id": ev.id}])
            if ev.type == "session.status_idle" and ev.stop_reason.type == "end_turn":
                break
    assert got[0] == "user.message" and "agent.message" in got


# --------------------------------------------------------------------------------------
# strictness
# --------------------------------------------------------------------------------------


async def test_headers_are_required(managed_agents):
    sim = managed_agents.sim
    sim.expect_violations = True
    good = {"x-api-key": "k", "anthropic-version": "2023-06-01", "anthropic-beta": BETA}
    async with aiohttp.ClientSession() as http:
        cases = [
            ({k: v for k, v in good.items() if k != "anthropic-beta"}, 400, "invalid_request_error"),
            ({**good, "anthropic-beta": "other-beta"}, 400, "invalid_request_error"),
            ({k: v for k, v in good.items() if k != "x-api-key"}, 401, "authentication_error"),
            ({k: v for k, v in good.items() if k != "anthropic-version"}, 400, "invalid_request_error"),
        ]
        for headers, status, etype in cases:
            async with http.get(f"{managed_agents.url}/v1/agents", headers=headers) as r:
                body = await r.json()
                assert r.status == status and body["type"] == "error" and body["error"]["type"] == etype
        async with http.get(f"{managed_agents.url}/v1/agents", headers=good) as r:
            assert r.status == 200 and (await r.json()) == {"data": [], "next_page": None}
        async with http.get(f"{managed_agents.url}/v1/agents", headers={**good, "x-api-key": "", "authorization": "Bearer k"}) as r:
            assert r.status == 200
        async with http.get(f"{managed_agents.url}/v1/nope", headers=good) as r:
            assert r.status == 404 and (await r.json())["error"]["type"] == "not_found_error"
    assert len(sim.violations) == 5


async def test_bodies_are_validated(managed_agents):
    c, sim = managed_agents.client, managed_agents.sim
    sim.expect_violations = True
    helper = await c.beta.agents.create(model="claude-sonnet-4-6", name="helper",
                                        multiagent={"type": "coordinator", "agents": [{"type": "self"}]})
    env = await c.beta.environments.create(name="e")
    bad_agent_bodies = [
        dict(model="m", name="x", extra_body={"bogus": 1}),
        dict(model="m", name="x", tools=[{"type": "custom", "name": "bad name", "description": "d", "input_schema": {"type": "object"}}]),
        dict(model="m", name="x", tools=[{"type": "custom", "name": "ok", "input_schema": {"type": "object"}}]),
        dict(model="m", name="x", metadata={f"k{i}": "v" for i in range(17)}),
        dict(model="m", name="x", metadata={"k" * 65: "v"}),
        dict(model="m", name="x", metadata={"k": "v" * 513}),
        dict(model="m", name="x", multiagent={"type": "coordinator", "agents": ["agent_missing"]}),
        dict(model="m", name="x", multiagent={"type": "coordinator", "agents": [helper.id]}),
        dict(model="m", name="x", mcp_servers=[{"type": "url", "name": "gh", "url": "https://x"}]),
        dict(model="m", name=""),
    ]
    for kw in bad_agent_bodies:
        with pytest.raises(anthropic.BadRequestError):
            await c.beta.agents.create(**kw)
    with pytest.raises(anthropic.BadRequestError) as ei:
        await c.beta.agents.create(model="m", name="x", metadata={f"k{i}": "v" for i in range(17)})
    assert ei.value.error_code == "invalid_metadata"
    with pytest.raises(anthropic.BadRequestError):
        await c.beta.environments.create(name="e", config={"type": "cloud", "networking": {"type": "limited"},
                                                           "packages": {"type": "packages", "pip": ["x"]}})
    with pytest.raises(anthropic.BadRequestError) as ei:
        await c.beta.environments.update(env.id, config={"type": "self_hosted"})
    assert ei.value.error_code == "invalid_config_type_change"
    agent = await c.beta.agents.create(model="claude-opus-4-6", name="a")
    bad_sessions = [
        dict(budget={"type": "limit", "max_list_cost": {"amount": "05", "currency": "USD"}}),
        dict(budget={"type": "limit", "max_list_cost": {"amount": 500, "currency": "USD"}}),
        dict(resources=[{"type": "github_repository", "url": "https://gitlab.com/a/b"}]),
        dict(resources=[{"type": "github_repository"}]),
        dict(initial_events=[{"type": "user.interrupt"}]),
        dict(initial_events=[msg()] * 51),
    ]
    for kw in bad_sessions:
        with pytest.raises(anthropic.BadRequestError):
            await c.beta.sessions.create(agent=agent.id, environment_id=env.id, **kw)
    await c.beta.environments.archive(env.id)
    with pytest.raises(anthropic.BadRequestError) as ei:
        await c.beta.sessions.create(agent=agent.id, environment_id=env.id)
    assert ei.value.error_code == "environment_archived"
    assert len(sim.violations) == len(bad_agent_bodies) + 1 + 2 + len(bad_sessions) + 1
    assert any("bogus" in v for v in sim.violations)
    assert any("bad name" in v for v in sim.violations)


async def test_agent_version_conflict(managed_agents):
    c = managed_agents.new_client(max_retries=0)
    agent = await c.beta.agents.create(model="claude-opus-4-6", name="a")
    await c.beta.agents.update(agent.id, version=1, system="v2")
    with pytest.raises(anthropic.ConflictError):
        await c.beta.agents.update(agent.id, version=1, system="v3")
    assert managed_agents.sim.conflicts and not managed_agents.sim.violations


async def test_write_calls_are_counted(managed_agents):
    c, sim = managed_agents.client, managed_agents.sim
    agent = await c.beta.agents.create(model="claude-opus-4-6", name="a")
    mark = sim.mark()
    await c.beta.agents.retrieve(agent.id)
    [a async for a in c.beta.agents.list()]
    assert sim.write_calls(since=mark) == []
    await c.beta.agents.update(agent.id, system="x")
    (call,) = sim.write_calls(since=mark)
    method, path, body = call
    assert (method, path, body) == ("POST", f"/v1/agents/{agent.id}", {"system": "x"})


# --------------------------------------------------------------------------------------
# scripted sessions
# --------------------------------------------------------------------------------------


async def test_normal_review_run(managed_agents):
    c, sim = managed_agents.client, managed_agents.sim
    coord, env = await setup_team(c)
    calls = [("report_progress", {"message": "starting"}), ("publish_review", {"message": "lgtm"})]
    sim.scripts["review"] = normal_review_run(calls)
    s = await new_session(c, coord, env, metadata={"script": "review"})
    seen = await run_to_idle(c, s.id, answer=lambda ev: (f"done {ev.name}", False), first=msg())
    types = [e.type for e in seen]
    assert types[:3] == ["user.message", "session.status_running", "agent.thinking"]
    assert types.count("session.thread_created") == 2 and "agent.thread_message_received" in types
    assert [e.name for e in seen if e.type == "agent.custom_tool_use"] == ["report_progress", "publish_review"]
    ss = sim.sessions[s.id]
    assert [(r.name, r.input, r.text, r.is_error) for r in ss.tool_results] == [
        ("report_progress", {"message": "starting"}, "done report_progress", False),
        ("publish_review", {"message": "lgtm"}, "done publish_review", False),
    ]
    final = await c.beta.sessions.retrieve(s.id)
    assert final.status == "idle" and final.usage.input_tokens > 0 and int(final.usage.list_cost.amount) > 0
    usage_events = [e for e in seen if e.type == "session.usage"]
    assert usage_events and usage_events[-1].usage.list_cost.amount == final.usage.list_cost.amount


async def test_requires_action_idles_until_answered(managed_agents):
    c, sim = managed_agents.client, managed_agents.sim
    coord, env = await setup_team(c)
    sim.default_script = Script(custom_tool_uses([("read_ci_log", {"message": "1"}), ("reply", {"message": "2"})]), agent_message("ok"))
    s = await new_session(c, coord, env)
    await c.beta.sessions.events.send(s.id, events=[msg()])
    idle = await sim.wait_idle(s.id, "requires_action")
    ids = idle["stop_reason"]["event_ids"]
    assert len(ids) == 2 and (await c.beta.sessions.retrieve(s.id)).status == "idle"
    await c.beta.sessions.events.send(s.id, events=[{"type": "user.custom_tool_result", "custom_tool_use_id": ids[0]}])
    await sim.wait_until(lambda: [e for e in sim.sessions[s.id].events if e["type"] == "session.status_idle"][-1]["stop_reason"].get("event_ids") == ids[1:])
    await c.beta.sessions.events.send(s.id, events=[{"type": "user.custom_tool_result", "custom_tool_use_id": ids[1], "is_error": True,
                                                     "content": [{"type": "text", "text": "no"}]}])
    await sim.wait_idle(s.id, "end_turn")
    assert [r.is_error for r in sim.sessions[s.id].tool_results] == [False, True]


async def test_bad_tool_input_then_fix(managed_agents):
    c, sim = managed_agents.client, managed_agents.sim
    coord, env = await setup_team(c)
    sim.default_script = bad_tool_input_then_fix("publish_review", {"message": 3}, {"message": "fixed"})
    s = await new_session(c, coord, env)

    def answer(ev):
        ok = isinstance(ev.input.get("message"), str)
        return ("published" if ok else "message must be a string", not ok)

    seen = await run_to_idle(c, s.id, answer, first=msg())
    calls = [e.input for e in seen if e.type == "agent.custom_tool_use"]
    assert calls == [{"message": 3}, {"message": "fixed"}]
    assert [r.is_error for r in sim.sessions[s.id].tool_results] == [True, False]


async def test_dropped_stream_reconnect_and_backfill(managed_agents):
    c, sim = managed_agents.client, managed_agents.sim
    coord, env = await setup_team(c)
    sim.default_script = dropped_stream([("report_progress", {"message": "x"})])
    s = await new_session(c, coord, env)
    seen: dict[str, object] = {}
    answered: set[str] = set()

    async def answer(event_ids):
        for eid in event_ids:
            if eid not in answered:
                answered.add(eid)
                await c.beta.sessions.events.send(s.id, events=[{"type": "user.custom_tool_result", "custom_tool_use_id": eid}])

    stream = await c.beta.sessions.events.stream(s.id)
    await c.beta.sessions.events.send(s.id, events=[msg()])
    with pytest.raises(httpx2.RemoteProtocolError):  # the SDK does not wrap a mid-body drop
        async with asyncio.timeout(5), stream:
            async for ev in stream:
                seen[ev.id] = ev
    assert sim.sessions[s.id].stream_drops == 1
    await asyncio.sleep(0.1)  # the script carries on meanwhile, up to the custom tool call

    # reconnect first, then back-fill with events.list after the last event seen, de-duplicating by id
    stream = await c.beta.sessions.events.stream(s.id)
    last = max(e.processed_at for e in seen.values())
    backfilled = [ev async for ev in c.beta.sessions.events.list(s.id, created_at_gt=last, order="asc")]
    assert backfilled and not any(ev.id in seen for ev in backfilled)
    for ev in backfilled:
        seen[ev.id] = ev
    last_status = [e for e in backfilled if e.type in ("session.status_idle", "session.status_running")][-1]
    assert last_status.type == "session.status_idle" and last_status.stop_reason.type == "requires_action"
    await answer(last_status.stop_reason.event_ids)
    async with asyncio.timeout(5), stream:
        async for ev in stream:
            if ev.id in seen:
                continue
            seen[ev.id] = ev
            if ev.type == "session.status_idle" and ev.stop_reason.type == "requires_action":
                await answer(ev.stop_reason.event_ids)
            if ev.type == "session.status_idle" and ev.stop_reason.type == "end_turn":
                break
    all_ids = [e.id async for e in c.beta.sessions.events.list(s.id)]
    assert set(all_ids) == set(seen) and len(all_ids) == len(seen)
    assert [r.name for r in sim.sessions[s.id].tool_results] == ["report_progress"]


async def test_drop_streams_after_n_events_clean_eof(managed_agents):
    c, sim = managed_agents.client, managed_agents.sim
    coord, env = await setup_team(c)
    sim.default_script = end_turn_only()
    sim.drop_streams_after(2, mode="eof")
    s = await new_session(c, coord, env)
    stream = await c.beta.sessions.events.stream(s.id)
    await c.beta.sessions.events.send(s.id, events=[msg()])
    async with asyncio.timeout(5):
        got = [ev.type async for ev in stream]  # ends quietly: the caller must notice and reconnect
    assert got == ["user.message", "session.status_running"]
    await sim.wait_idle(s.id, "end_turn")
    page = await c.beta.sessions.events.list(s.id, limit=2, order="desc", types=["agent.message", "session.status_idle"])
    assert [e.type for e in page.data] == ["session.status_idle", "agent.message"] and page.next_page is None


async def test_session_create_overloaded_and_rate_limited(managed_agents):
    c, sim = managed_agents.client, managed_agents.sim
    coord, env = await setup_team(c)
    sim.fail_next_session_creates(2, status=529)
    s = await new_session(c, coord, env)  # max_retries=2: the third attempt succeeds
    assert s.id in sim.sessions
    assert [x.path for x in sim.calls].count("/v1/sessions") == 3
    strict = managed_agents.new_client(max_retries=0)
    sim.fail_next_session_creates(1, status=529)
    with pytest.raises(anthropic.OverloadedError):
        await new_session(strict, coord, env)
    sim.fail_next_session_creates(1, status=429, retry_after=2)
    with pytest.raises(anthropic.RateLimitError) as ei:
        await new_session(strict, coord, env)
    assert ei.value.response.headers["retry-after"] == "2"
    assert len(sim.sessions) == 1


async def test_interrupt_stops_the_script(managed_agents):
    c, sim = managed_agents.client, managed_agents.sim
    coord, env = await setup_team(c)
    sim.default_script = Script(model_request(), custom_tool_use("report_progress", {"message": "x"}), agent_message("never"))
    s = await new_session(c, coord, env)
    await c.beta.sessions.events.send(s.id, events=[msg()])
    await sim.wait_idle(s.id, "requires_action")
    await c.beta.sessions.events.send(s.id, events=[{"type": "user.interrupt"}])
    await sim.wait_idle(s.id, "end_turn")
    ss = sim.sessions[s.id]
    assert len(ss.interrupts) == 1 and sim.interrupts[0][0] == s.id and not ss.pending
    assert not any(e["type"] == "agent.message" for e in ss.events)
    # answering the dropped call now is a client bug
    sim.expect_violations = True
    tool_use_id = ss.events_of("agent.custom_tool_use")[0]["id"]
    with pytest.raises(anthropic.BadRequestError):
        await c.beta.sessions.events.send(s.id, events=[{"type": "user.custom_tool_result", "custom_tool_use_id": tool_use_id}])
    assert len(sim.violations) == 1


async def test_restart_in_the_middle(managed_agents):
    sim = managed_agents.sim
    first = managed_agents.new_client()
    coord, env = await setup_team(first)
    sim.default_script = normal_review_run()
    s = await new_session(first, coord, env)
    await first.beta.sessions.events.send(s.id, events=[msg()])
    await sim.wait_idle(s.id, "requires_action")
    await first.close()  # the worker process dies here

    second = managed_agents.new_client()  # a new process attaches later
    events = [e async for e in second.beta.sessions.events.list(s.id)]
    last_idle = [e for e in events if e.type == "session.status_idle"][-1]
    assert last_idle.stop_reason.type == "requires_action"
    (pending,) = last_idle.stop_reason.event_ids
    tool = next(e for e in events if e.id == pending)
    assert tool.type == "agent.custom_tool_use" and tool.name == "report_progress"
    stream = await second.beta.sessions.events.stream(s.id)
    await second.beta.sessions.events.send(s.id, events=[{"type": "user.custom_tool_result", "custom_tool_use_id": pending,
                                                          "content": [{"type": "text", "text": "ok"}]}])
    names = []
    async with asyncio.timeout(5), stream:
        async for ev in stream:
            if ev.type == "agent.custom_tool_use":
                names.append(ev.name)
                await second.beta.sessions.events.send(s.id, events=[{"type": "user.custom_tool_result", "custom_tool_use_id": ev.id}])
            if ev.type == "session.status_idle" and ev.stop_reason.type == "end_turn":
                break
    assert names == ["publish_review"]
    # a duplicate answer (e.g. a restart that forgot it had answered) is refused
    sim.expect_violations = True
    with pytest.raises(anthropic.BadRequestError):
        await second.beta.sessions.events.send(s.id, events=[{"type": "user.custom_tool_result", "custom_tool_use_id": pending}])
    assert "already answered" in sim.violations[-1]


@pytest.mark.parametrize(
    "script, stop_reason",
    [
        (repository_clone_error, "end_turn"),
        (refusal, "refusal"),
        (retries_exhausted, "retries_exhausted"),
        (budget_reached, "budget_reached"),
    ],
)
async def test_endings(managed_agents, script, stop_reason):
    c, sim = managed_agents.client, managed_agents.sim
    coord, env = await setup_team(c)
    sim.queue_script(script)
    s = await new_session(c, coord, env)
    await c.beta.sessions.events.send(s.id, events=[msg()])
    idle = await sim.wait_idle(s.id, stop_reason)
    events = [e async for e in c.beta.sessions.events.list(s.id)]
    assert events[-1].type == "session.status_idle" and events[-1].stop_reason.type == stop_reason
    if script is repository_clone_error:
        err = next(e for e in events if e.type == "session.error")
        assert err.error.type == "repository_clone_error" and err.error.retry_status.type == "retrying"
        assert err.error.repository_url == REPO
    if script is refusal:
        assert events[-1].stop_details.type == "refusal" and events[-1].stop_details.category == "cyber"
    if script is retries_exhausted:
        assert [e.error.retry_status.type for e in events if e.type == "session.error"] == ["retrying", "exhausted"]
        assert "session.status_rescheduled" in [e.type for e in events]
    if script is budget_reached:
        final = await c.beta.sessions.retrieve(s.id)
        assert int(final.usage.list_cost.amount) >= 500
        assert any(e.type == "session.usage" and e.budget is not None for e in events)
        # 350 cents after the first request, 700 after the second: the 500-cent budget stops the run
        assert sum(1 for e in events if e.type == "span.model_request_end") == 2
        assert sum(1 for e in events if e.type == "session.status_idle") == 1
    assert idle["stop_reason"]["type"] == stop_reason


async def test_terminated_session_refuses_input(managed_agents):
    c, sim = managed_agents.client, managed_agents.sim
    coord, env = await setup_team(c)
    sim.default_script = terminated()
    s = await new_session(c, coord, env)
    await c.beta.sessions.events.send(s.id, events=[msg()])
    await sim.wait_until(lambda: sim.sessions[s.id].status == "terminated")
    assert (await c.beta.sessions.retrieve(s.id)).status == "terminated"
    sim.expect_violations = True
    with pytest.raises(anthropic.BadRequestError):
        await c.beta.sessions.events.send(s.id, events=[msg("more")])


async def test_initial_events_start_the_script_and_script_for(managed_agents):
    c, sim = managed_agents.client, managed_agents.sim
    coord, env = await setup_team(c)
    sim.script_for(lambda body: end_turn_only("picked") if body.get("title") == "pick me" else None)
    s = await new_session(c, coord, env, title="pick me", initial_events=[msg()])
    await sim.wait_idle(s.id, "end_turn")
    texts = [e["content"][0]["text"] for e in sim.sessions[s.id].events_of("agent.message")]
    assert texts == ["picked"]
    # turns beyond the script get a short fallback reply
    await c.beta.sessions.events.send(s.id, events=[msg("again")])
    await sim.wait_until(lambda: len(sim.sessions[s.id].events_of("agent.message")) == 2)


async def test_builtin_tool_confirmation_and_deltas(managed_agents):
    c, sim = managed_agents.client, managed_agents.sim
    coord, env = await setup_team(c)
    sim.default_script = Script(tool_use("bash", {"command": "rm -rf build"}, result="done", permission="ask"),
                                agent_message("a fairly long message that is streamed in several fragments"), stop_end_turn())
    s = await new_session(c, coord, env)
    stream = await c.beta.sessions.events.stream(s.id, event_deltas=["agent.message"])
    await c.beta.sessions.events.send(s.id, events=[msg()])
    types, text = [], ""
    async with asyncio.timeout(5), stream:
        async for ev in stream:
            types.append(ev.type)
            if ev.type == "session.status_idle" and ev.stop_reason.type == "requires_action":
                await c.beta.sessions.events.send(s.id, events=[{"type": "user.tool_confirmation", "tool_use_id": ev.stop_reason.event_ids[0],
                                                                 "result": "deny", "deny_message": "not allowed"}])
            if ev.type == "event_delta":
                text += ev.delta.content.text
            if ev.type == "session.status_idle" and ev.stop_reason.type == "end_turn":
                break
    assert "event_start" in types and text == "a fairly long message that is streamed in several fragments"
    result = sim.sessions[s.id].events_of("agent.tool_result")[0]
    assert result["is_error"] is True and result["content"][0]["text"] == "not allowed"
    # previews never reach the history
    assert "event_delta" not in [e.type async for e in c.beta.sessions.events.list(s.id)]


async def test_env_fixture_sets_base_url(managed_agents_env):
    client = anthropic.AsyncAnthropic(max_retries=0)
    try:
        page = await client.beta.agents.list()
        assert page.data == []
    finally:
        await client.close()


async def test_multiagent_20261001_overrides_and_session_agent_update(managed_agents):
    c, sim = managed_agents.client, managed_agents.sim
    reviewer = await c.beta.agents.create(model="claude-sonnet-4-6", name="reviewer")
    coord = await c.beta.agents.create(
        model="claude-opus-4-6", name="coordinator", tools=CUSTOM_TOOLS[:1],
        multiagent={"type": "multiagent_20261001", "subagents": {"type": "enabled", "inline_agents": {"type": "disabled"},
                                                                 "predefined_agents": [reviewer.id]}},
    )
    assert coord.multiagent.type == "multiagent_20261001" and coord.multiagent.workflows.type == "enabled"
    assert coord.multiagent.advisor.type == "disabled"
    assert [r.id for r in coord.multiagent.subagents.predefined_agents] == [reviewer.id]
    env = await c.beta.environments.create(name="e")
    s = await c.beta.sessions.create(
        agent={"type": "agent_with_overrides", "id": coord.id, "system": "Per-PR instructions", "model": "claude-sonnet-4-6"},
        environment_id=env.id,
    )
    assert s.agent.system == "Per-PR instructions" and s.agent.model.id == "claude-sonnet-4-6"
    assert s.agent.multiagent.subagents.predefined_agents[0].name == "reviewer"
    s = await c.beta.sessions.update(s.id, agent={"tools": CUSTOM_TOOLS})
    assert len(s.agent.tools) == len(CUSTOM_TOOLS)
    updated = [e async for e in c.beta.sessions.events.list(s.id, types=["session.updated"])]
    assert len(updated) == 1 and updated[0].agent is not None
    sim.sessions[s.id].script = Script(custom_tool_use("reply", {"message": "hi"}))
    await c.beta.sessions.events.send(s.id, events=[msg()])
    await sim.wait_idle(s.id, "requires_action")
    sim.expect_violations = True
    with pytest.raises(anthropic.BadRequestError):  # vault_ids are reserved on update
        await c.beta.sessions.update(s.id, vault_ids=["vlt_1"])
    assert "vault_ids" in sim.violations[-1]
