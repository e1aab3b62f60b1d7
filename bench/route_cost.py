"""Benchmark: the review route each kind of pull request gets, and its estimated list cost with the
route against always running the deep team (issue 14, "Benchmark").

    .venv/bin/python bench/route_cost.py                      # the table
    .venv/bin/python bench/route_cost.py --json               # the same figures as JSON
    .venv/bin/python bench/route_cost.py --shape "small fix"  # one shape (repeatable)

Real, from the app: the route (`route_for` with the default `RepoConfig`), the brief the team is
sent (`build_brief`, its own token estimate), the files the review ignores (`split_ignored`), the
agents' system prompts, models and custom tools (`agents/*.md`, bench/route_agents.py: a missing
one is priced as the agent it extends, and the output says so), and the prices (`app.sessions.cost`). The pull requests are GitHub's `pull_request` example payload with generated
diffs (bench/pr_shapes.py). Assumed, below: how many turns each agent takes, what it reads and
writes per turn, how much of the re-sent context is a cache read, how long a session runs, and
what the router agent answers where no plain rule decides. The figures are estimates from those
assumptions, not measurements of real sessions. No network, no randomness: every run prints the
same table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.append(str(ROOT))  # for pr_shapes; last, so no bench script shadows a module of the same name

from pr_shapes import SHAPES, Shape, build
from route_agents import (
    BUILTIN_TOOL_TOKENS,
    ROUTER_STAND_IN_SYSTEM_TOKENS,
    STAND_IN_CUSTOM_TOOLS,
    STAND_INS,
    TEAMS,
    Agents,
    load_agents,
    router_model_and_prompt,
    team_member,
)

from app.pipelines.diff import FileChange
from app.pipelines.review.brief import BriefInput, build_brief, estimate_tokens
from app.pipelines.review.pipeline import split_ignored
from app.pipelines.review.route import Route, route_for
from app.pipelines.review.router_task import router_task
from app.repo_config import RepoConfig
from app.sessions.cost import JobCost, ModelUsage

# -- assumed agent work, per session --------------------------------------------------------------
# Model turns per agent and depth (each turn re-sends the agent's whole context).
TURNS: dict[str, dict[str, int]] = {
    "light": {"reviewer-solo": 8},
    "standard": {"coordinator-standard": 8, "reviewer": 14},
    "deep": {"coordinator": 12, "reviewer": 18, "tester": 22},
}
# The agents that read code take one more turn per this many reviewed files beyond the first, up to the cap.
FILES_PER_EXTRA_TURN = 6
MAX_EXTRA_TURNS = 12
READERS = ("reviewer-solo", "reviewer", "tester")
# Tokens a reading agent takes in per turn (a file, a grep, test output): a base plus a share of
# the diff's size, capped; a coordinator reads this share of it (it checks claims, it does not explore).
READ_TOKENS_BASE = 900
READ_TOKENS_PER_CHANGED_LINE = 2
READ_TOKENS_MAX = 6_000
COORDINATOR_READ_SHARE = 0.4
# Output tokens per turn (reasoning shown as text, tool calls, the final report).
OUTPUT_TOKENS_PER_TURN: dict[str, int] = {"coordinator": 350, "coordinator-standard": 350, "reviewer": 450,
                                          "reviewer-solo": 450, "tester": 300}
# A coordinator's brief to each sub-agent (they do not see the task message): a base plus a line per file.
DELEGATION_TOKENS_BASE = 600
DELEGATION_TOKENS_PER_FILE = 30
DELEGATION_TOKENS_MAX = 4_000
# Each sub-agent's report, read back by the coordinator.
REPORT_TOKENS: dict[str, int] = {"reviewer": 1_500, "tester": 1_000}
# Share of the context re-sent on each later turn that is read from the prompt cache (the rest is
# billed as plain input); the tokens new in each turn are written to the cache.
CACHE_READ_SHARE = 0.9
# Time each session is `running` (billed per session-hour), by depth; the router's is short.
SESSION_MINUTES: dict[str, float] = {"light": 4, "standard": 9, "deep": 16}
ROUTER_SESSION_SECONDS = 15
# The router's answer: one word and a one-line reason.
ROUTER_OUTPUT_TOKENS = 30


# -- the estimate ---------------------------------------------------------------------------------

def agent_usage(initial: int, turns: int, new_per_turn: int, output_per_turn: int) -> ModelUsage:
    """Tokens of an agent that starts with `initial` tokens of context and, for `turns` turns,
    re-sends its context, writes `output_per_turn` and takes in `new_per_turn` more."""
    usage = ModelUsage(cache_write=initial)
    context = initial
    for turn in range(turns):
        if turn:
            resent = context - new_per_turn - output_per_turn
            usage.cache_read += round(resent * CACHE_READ_SHARE)
            usage.input += resent - round(resent * CACHE_READ_SHARE)
            usage.cache_write += new_per_turn + output_per_turn
        usage.output += output_per_turn
        context += output_per_turn + new_per_turn
    return usage


def team_cost(agents: Agents, depth: str, brief_tokens: int,
              reviewed: list[FileChange]) -> tuple[JobCost, list[dict[str, Any]]]:
    """The estimated cost of one review session of `depth`'s team on a brief of `brief_tokens`,
    and each agent's share (name, model, turns, tokens, USD)."""
    lines = sum(change.changes for change in reviewed)
    read = min(READ_TOKENS_BASE + READ_TOKENS_PER_CHANGED_LINE * lines, READ_TOKENS_MAX)
    extra_turns = min(max(len(reviewed) - 1, 0) // FILES_PER_EXTRA_TURN, MAX_EXTRA_TURNS)
    delegation = min(DELEGATION_TOKENS_BASE + DELEGATION_TOKENS_PER_FILE * len(reviewed), DELEGATION_TOKENS_MAX)
    team = TEAMS[depth]
    subagents = team[1:] if len(team) > 1 else ()
    cost = JobCost(runtime_seconds=SESSION_MINUTES[depth] * 60)
    shares = []
    for name in team:
        model, system, tools = team_member(agents, name)
        turns = TURNS[depth][name] + (extra_turns if name in READERS else 0)
        output = OUTPUT_TOKENS_PER_TURN[name]
        if name in subagents:
            usage = agent_usage(estimate_tokens(system) + tools + delegation, turns, read, output)
        else:  # the lead: it gets the brief, briefs each sub-agent, and reads their reports
            reports = sum(REPORT_TOKENS[s] for s in subagents)
            lead_read = round(read * COORDINATOR_READ_SHARE) if subagents else read
            usage = agent_usage(estimate_tokens(system) + tools + brief_tokens, turns,
                                lead_read + math.ceil(reports / turns), output)
            usage.output += delegation * len(subagents)
        cost.models.setdefault(model, ModelUsage()).add(usage)
        shares.append({"agent": name, "model": model, "turns": turns, "input": usage.input, "output": usage.output,
                       "cache_read": usage.cache_read, "cache_write": usage.cache_write,
                       "usd": round(usage.usd(model), 4)})
    return cost, shares


def router_cost(agents: Agents, pr: dict[str, Any], files: list[FileChange]) -> JobCost:
    model, system_tokens = router_model_and_prompt(agents)
    usage = ModelUsage(input=system_tokens + estimate_tokens(router_task(pr, files, nonce="0123456789ab")), output=ROUTER_OUTPUT_TOKENS)
    return JobCost(models={model: usage}, runtime_seconds=ROUTER_SESSION_SECONDS)


def brief_tokens(repo: str, pr: dict[str, Any], reviewed: list[FileChange], ignored: dict[str, str],
                 config: RepoConfig, listed: int, route: Route) -> int:
    return build_brief(BriefInput(repo=repo, pr=pr, files=reviewed, ignored=ignored, config=config,
                                  listed_files=listed, route=route)).tokens


def estimate(shape: Shape, agents: Agents) -> dict[str, Any]:
    """One row: the route the app chooses for `shape`, and its cost against the deep team's."""
    config = RepoConfig()
    repo, pr, files = build(shape)
    reviewed, ignored = split_ignored(files, config)
    route = route_for(config, files, pr)
    by, router_usd, depth = route.by, 0.0, route.depth
    if route.by == "default":  # the router agent decides; its answer is assumed per shape
        answer = shape.router_answer if shape.router_answer in ("LIGHT", "STANDARD", "DEEP") else "STANDARD"
        depth, by = answer.lower(), f"router: {answer}"
        route = Route(depth, "the router's answer", "default")
        router_usd = router_cost(agents, pr, files).total_usd
    routed_brief = brief_tokens(repo, pr, reviewed, ignored, config, len(files), route)
    routed, routed_agents = team_cost(agents, depth, routed_brief, reviewed)
    deep_route = Route("deep", "always deep", "config")
    deep_brief = brief_tokens(repo, pr, reviewed, ignored, config, len(files), deep_route)
    deep, deep_agents = team_cost(agents, "deep", deep_brief, reviewed)
    routed_usd = routed.total_usd + router_usd
    return {"shape": shape.name, "files": len(files), "lines": sum(c.changes for c in files),
            "route": depth, "decided_by": by, "rule_reason": route.reason if route.by == "rules" else None,
            "brief_tokens": routed_brief, "deep_brief_tokens": deep_brief, "router_usd": round(router_usd, 4),
            "routed_usd": round(routed_usd, 4), "always_deep_usd": round(deep.total_usd, 4),
            "saving_usd": round(deep.total_usd - routed_usd, 4), "routed": routed.as_dict() | {"agents": routed_agents},
            "always_deep": deep.as_dict() | {"agents": deep_agents}}


ASSUMPTIONS = {name: value for name, value in (
    ("TEAMS", TEAMS), ("STAND_INS", STAND_INS), ("STAND_IN_CUSTOM_TOOLS", STAND_IN_CUSTOM_TOOLS),
    ("ROUTER_STAND_IN_SYSTEM_TOKENS", ROUTER_STAND_IN_SYSTEM_TOKENS), ("BUILTIN_TOOL_TOKENS", BUILTIN_TOOL_TOKENS))}
LOCAL_ASSUMPTIONS = ("TURNS",
               "FILES_PER_EXTRA_TURN", "MAX_EXTRA_TURNS", "READERS", "READ_TOKENS_BASE", "READ_TOKENS_PER_CHANGED_LINE",
               "READ_TOKENS_MAX", "COORDINATOR_READ_SHARE", "OUTPUT_TOKENS_PER_TURN", "DELEGATION_TOKENS_BASE",
               "DELEGATION_TOKENS_PER_FILE", "DELEGATION_TOKENS_MAX", "REPORT_TOKENS",
               "CACHE_READ_SHARE", "SESSION_MINUTES", "ROUTER_SESSION_SECONDS", "ROUTER_OUTPUT_TOKENS")


def assumptions() -> dict[str, Any]:
    """Every assumed constant, and the router answer assumed per shape, for the JSON output."""
    values: dict[str, Any] = ASSUMPTIONS | {name: globals()[name] for name in LOCAL_ASSUMPTIONS}
    values["ROUTER_ANSWERS"] = {shape.name: shape.router_answer for shape in SHAPES if shape.router_answer}
    return values


def run(names: list[str] | None = None) -> dict[str, Any]:
    known = {shape.name: shape for shape in SHAPES}
    unknown = [name for name in names or [] if name not in known]
    if unknown:
        raise SystemExit(f"unknown shape(s): {', '.join(unknown)} (known: {', '.join(known)})")
    agents = load_agents()
    rows = [estimate(known[name], agents) for name in (names or known)]
    routed, deep = sum(r["routed_usd"] for r in rows), sum(r["always_deep_usd"] for r in rows)
    total = {"routed_usd": round(routed, 4), "always_deep_usd": round(deep, 4), "saving_usd": round(deep - routed, 4)}
    mean = {key: round(value / len(rows), 4) for key, value in total.items()}
    return {"prs": rows, "total": total, "mean": mean, "notes": agents.notes, "assumptions": assumptions()}


def _usd(amount: float) -> str:
    """`$1.23`; a few tenths of a cent keep three decimals, so they do not print as `$-0.00`."""
    digits = 3 if 0 < abs(amount) < 0.005 else 2
    return ("-" if amount < 0 else "") + f"${abs(amount):.{digits}f}"


def _saving(saving: float, deep: float) -> str:
    share = round(100 * saving / deep) if deep else 0
    return f"{_usd(saving)} ({share} %)"


def table(result: dict[str, Any]) -> str:
    head = f"{'shape':<19} {'files':>5} {'lines':>6}  {'route':<28} {'brief tok':>9} {'routed':>8} " \
           f"{'always deep':>11}  saving"
    out = [head, "-" * len(head)]
    for r in result["prs"]:
        out.append(f"{r['shape']:<19} {r['files']:>5} {r['lines']:>6}  {r['route'] + ' (' + r['decided_by'] + ')':<28} "
                   f"{r['brief_tokens']:>9,} {_usd(r['routed_usd']):>8} "
                   f"{_usd(r['always_deep_usd']):>11}  {_saving(r['saving_usd'], r['always_deep_usd'])}")
    out.append("-" * len(head))
    n = len(result["prs"])
    for label, row in ((f"total ({n} PRs)", result["total"]), ("mean per PR", result["mean"])):
        out.append(f"{label:<62} {_usd(row['routed_usd']):>8} "
                   f"{_usd(row['always_deep_usd']):>11}  {_saving(row['saving_usd'], row['always_deep_usd'])}")
    out.append("\nbrief tok: the routed team's task message (the app's own estimate). Costs: list prices from "
               "app.sessions.cost, session runtime included;\nrouted includes the router's session where it ran. "
               "Estimates from the assumptions at the top of bench/route_cost.py, not measurements.")
    out += [f"Note: {note}" for note in result["notes"]]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--shape", action="append", help="one shape by name (repeatable); default: all")
    args = parser.parse_args(argv)
    result = run(args.shape)
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
