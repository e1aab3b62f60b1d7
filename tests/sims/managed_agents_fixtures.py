"""pytest fixtures for the Managed Agents simulator.

Register them from ``tests/conftest.py`` with ``pytest_plugins = ["tests.sims.managed_agents_fixtures"]``
(or ``from tests.sims.managed_agents_fixtures import *``).

- ``managed_agents``: a :class:`ManagedAgentsHarness` — the simulator served on localhost by
  pytest-aiohttp's ``aiohttp_server``: ``.url`` (for ``ANTHROPIC_BASE_URL``), ``.sim`` (state and
  scripting, see ``tests/sims/managed_agents/``), ``.client`` (a ready
  ``anthropic.AsyncAnthropic`` with ``max_retries=2``), ``.new_client()`` (another client, e.g. to
  model a process restart) and ``.env`` (the environment variables the app needs).
  At teardown it asserts ``sim.violations`` is empty unless the test set
  ``managed_agents.sim.expect_violations = True``.
- ``managed_agents_env``: the same harness, with ``ANTHROPIC_BASE_URL`` / ``ANTHROPIC_API_KEY``
  set through ``monkeypatch`` (undone after the test) for code that builds its own client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anthropic
import pytest

from .managed_agents import ManagedAgentsSimulator

API_KEY = "sk-ant-test-managed-agents-sim"


@dataclass
class ManagedAgentsHarness:
    url: str
    sim: ManagedAgentsSimulator
    server: Any
    client: anthropic.AsyncAnthropic
    _clients: list[anthropic.AsyncAnthropic] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"ANTHROPIC_BASE_URL": self.url, "ANTHROPIC_API_KEY": API_KEY}

    def new_client(self, **kw: Any) -> anthropic.AsyncAnthropic:
        """A fresh ``AsyncAnthropic`` pointed at the simulator (closed at teardown)."""
        kw.setdefault("max_retries", 2)
        c = anthropic.AsyncAnthropic(base_url=self.url, api_key=API_KEY, **kw)
        self._clients.append(c)
        return c


@pytest.fixture
async def managed_agents(aiohttp_server):
    sim = ManagedAgentsSimulator()
    server = await aiohttp_server(sim.make_app())
    url = str(server.make_url("")).rstrip("/")
    harness = ManagedAgentsHarness(url=url, sim=sim, server=server, client=None)  # type: ignore[arg-type]
    harness.client = harness.new_client()
    try:
        yield harness
    finally:
        for c in harness._clients:
            try:
                await c.close()
            except Exception:  # pragma: no cover - closing is best effort
                pass
        await sim.shutdown()
    if not sim.expect_violations and sim.violations:
        lines = "\n".join(f"  - {v}" for v in sim.violations)
        pytest.fail(
            f"the Managed Agents simulator saw {len(sim.violations)} request(s) the API would refuse:\n{lines}",
            pytrace=False,
        )


@pytest.fixture
def managed_agents_env(managed_agents, monkeypatch):
    for k, v in managed_agents.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    return managed_agents
