"""The repository token's rotation stops before a session's outcome is recorded: every update the
session's resource got is counted in the outcome, and none lands after it."""

from __future__ import annotations

import asyncio

from sims.managed_agents import Script, agent_message, model_request, pause, stop_end_turn
from test_sessions import make_agent, make_job, runtime, spec_for, tokens

from app.tools import ToolContext


def updates(sim, session_id: str) -> int:
    (resource,) = sim.session(session_id).resources
    return resource.get("_token_updates", 0)


async def test_no_token_update_lands_after_the_outcome_is_recorded(managed_agents, store, monkeypatch):
    sim = managed_agents.sim
    agent = await make_agent(managed_agents.client)
    job = await make_job(store)
    sim.default_script = Script(model_request(), pause(0.2), agent_message("done"), stop_end_turn())
    rt = runtime(managed_agents, store, token_refresh_seconds=0.01)
    at_close: dict[str, int] = {}
    close_session = store.close_session

    async def slow_close_session(session_id, **kw):
        """Recording the outcome takes a while: long enough for a rotation still running to land
        an update (the flaky case, made certain), and not a moment longer once rotation stopped."""
        at_close["updates"] = before = updates(sim, session_id)
        for _ in range(500):
            rotating = any(t.get_name() == f"rotate-{session_id}" and not t.done() for t in asyncio.all_tasks())
            if not rotating or updates(sim, session_id) != before:
                break
            await asyncio.sleep(0.01)
        return await close_session(session_id, **kw)

    monkeypatch.setattr(store, "close_session", slow_close_session)
    try:
        outcome = await asyncio.wait_for(rt.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                                token_provider=tokens()), 20)
    finally:
        await rt.aclose()

    assert outcome.token_rotations >= 1
    assert updates(sim, outcome.session_id) == at_close["updates"] == outcome.token_rotations
