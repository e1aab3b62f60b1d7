"""Two replicas on one PostgreSQL database start at once: the agents and a derived environment are
created once; the second replica adopts what the first made instead of making duplicates.

Each replica runs on an event loop of its own, in a thread, as two processes would: nothing in
memory is shared between them but the store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import anthropic

from app.agents.derived import derive_environment, ensure_derived, forget_derived
from app.agents.sync import default_definitions, ensure_synced, forget_synced
from app.repo_config import EnvironmentExtension
from app.store import Store, open_store
from tests.sims.managed_agents_fixtures import API_KEY


def replica(database_url: str, sim_url: str, work: Callable[[anthropic.AsyncAnthropic, Store], Awaitable[Any]]):
    async def run() -> Any:
        store = open_store(database_url)
        await store.open()
        client = anthropic.AsyncAnthropic(base_url=sim_url, api_key=API_KEY, max_retries=2)
        try:
            return await work(client, store)
        finally:
            await client.close()
            await store.close()

    return lambda: asyncio.run(run())


async def both(*replicas: Callable[[], Any]) -> list[Any]:
    loop = asyncio.get_running_loop()
    return list(await asyncio.gather(*(loop.run_in_executor(None, r) for r in replicas)))


async def test_two_replicas_starting_together_sync_the_agents_once(fresh_postgres_url, managed_agents):
    forget_synced()
    try:
        a, b = await both(*(replica(fresh_postgres_url, managed_agents.url, ensure_synced) for _ in range(2)))
    finally:
        forget_synced()
    live = [agent for agent in managed_agents.sim.agents.values() if not agent.get("archived_at")]
    assert len(live) == len(default_definitions().agents)
    assert a.agents == b.agents
    assert a.environments == b.environments
    assert len(managed_agents.sim.environments) == len(default_definitions().environments)


async def test_two_replicas_make_one_derived_environment_for_an_extension(fresh_postgres_url, managed_agents):
    extension = EnvironmentExtension.model_validate({"base": "python", "packages": {"pip": ["ruff"]}})
    derived = derive_environment(default_definitions().environments["python"], extension)
    forget_derived()
    try:
        ids = await both(*(replica(fresh_postgres_url, managed_agents.url,
                                   lambda client, store: ensure_derived(client, store, derived)) for _ in range(2)))
    finally:
        forget_derived()
    assert ids[0] == ids[1]
    assert sum(1 for env in managed_agents.sim.environments.values() if env["name"] == derived.name) == 1
