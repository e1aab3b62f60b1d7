"""bench/route_cost.py: the route benchmark runs offline and prints a row per pull-request shape."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from app.sessions.cost import PRICES_PER_MTOK

BENCH = Path(__file__).resolve().parent.parent / "bench" / "route_cost.py"


@pytest.fixture(scope="module")
def route_cost():
    spec = importlib.util.spec_from_file_location("route_cost", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["route_cost"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("route_cost", None)


def test_the_table_has_a_row_for_every_shape_and_a_total(route_cost, capsys):
    assert route_cost.main([]) == 0
    out = capsys.readouterr().out
    for shape in route_cost.SHAPES:
        assert sum(line.startswith(shape.name + " ") for line in out.splitlines()) == 1, shape.name
    assert f"total ({len(route_cost.SHAPES)} PRs)" in out
    assert "mean per PR" in out


def test_rules_decide_the_obvious_shapes_and_the_router_the_rest(route_cost, capsys):
    route_cost.main(["--json", "--shape", "docs-only", "--shape", "security-sensitive", "--shape", "medium feature"])
    rows = {row["shape"]: row for row in json.loads(capsys.readouterr().out)["prs"]}
    assert (rows["docs-only"]["route"], rows["docs-only"]["decided_by"]) == ("light", "rules")
    assert (rows["security-sensitive"]["route"], rows["security-sensitive"]["decided_by"]) == ("deep", "rules")
    assert rows["medium feature"]["decided_by"] == "router: STANDARD"
    assert rows["medium feature"]["router_usd"] > 0
    assert rows["docs-only"]["router_usd"] == 0


def test_a_deep_route_costs_what_always_deep_costs_and_a_light_one_less(route_cost):
    rows = {row["shape"]: row for row in route_cost.run(["security-sensitive", "docs-only"])["prs"]}
    assert rows["security-sensitive"]["saving_usd"] == 0
    assert 0 < rows["docs-only"]["routed_usd"] < rows["docs-only"]["always_deep_usd"]


def test_two_runs_print_the_same_figures(route_cost):
    assert route_cost.run(["large refactor"])["prs"] == route_cost.run(["large refactor"])["prs"]


def test_an_unknown_shape_is_refused_with_the_known_ones(route_cost):
    with pytest.raises(SystemExit, match="unknown shape.*known: docs-only"):
        route_cost.run(["huge"])


def test_a_missing_team_agent_is_priced_as_the_agent_it_extends_and_the_output_says_so(route_cost):
    agents = route_cost.load_agents()
    for name in ("reviewer-solo", "router"):
        agents.by_name.pop(name, None)
    files = route_cost.build(route_cost.SHAPES[0])[2]
    _, shares = route_cost.team_cost(agents, "light", 1_000, files)
    assert shares[0]["model"] == agents.get("reviewer").model
    cheapest = min(PRICES_PER_MTOK, key=PRICES_PER_MTOK.get)
    assert route_cost.router_model_and_prompt(agents)[0] == cheapest
    assert any("agents/reviewer-solo.md is missing" in note for note in agents.notes)
    assert any("agents/router.md is missing" in note for note in agents.notes)
