"""`prmedic stats`: what the finished jobs in the store cost, from their stored results: jobs by
kind, cost per job (median, p90), per review route and per repository. Pure: the CLI reads the jobs."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable
from typing import Any

from app.sessions.cost import cost_from_result
from app.store import Job

_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str) -> float:
    """`30d`, `12h`, `2w`, `90m` → seconds."""
    match = _SINCE.match(text)
    if not match:
        raise ValueError(f"not a period: {text!r} (e.g. 30d, 12h, 2w)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def percentile(values: list[float], share: float) -> float | None:
    """The `share` percentile (nearest rank) of `values`; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def job_stats(jobs: Iterable[Job], *, since: float | None = None, repo: str | None = None) -> dict[str, Any]:
    """Finished jobs created at or after `since` (epoch seconds), of `repo` if given: how many by
    kind, cost per job (of those with a known cost) and cost per repository. USD at list price."""
    chosen = [j for j in jobs if j.state.finished and (since is None or j.created_at >= since)
              and (repo is None or j.repo == repo)]
    costs: list[float] = []
    by_kind: dict[str, int] = {}
    by_repo: dict[str, dict[str, Any]] = {}
    by_route: dict[str, list[float | None]] = {}
    for job in chosen:
        by_kind[job.kind.value] = by_kind.get(job.kind.value, 0) + 1
        entry = by_repo.setdefault(job.repo, {"jobs": 0, "cost_usd": 0.0})
        entry["jobs"] += 1
        cost = cost_from_result(job.result)
        if cost is not None:
            costs.append(cost)
            entry["cost_usd"] = round(entry["cost_usd"] + cost, 4)
        route = route_of(job.result)
        if route is not None:
            by_route.setdefault(route, []).append(cost)
    return {
        "jobs": len(chosen), "jobs_by_kind": dict(sorted(by_kind.items())), "jobs_with_cost": len(costs),
        "cost_usd": round(sum(costs), 4),
        "cost_per_job_usd": _spread(costs),
        "cost_by_route_usd": {route: {"jobs": len(found), **_spread([c for c in found if c is not None])}
                              for route, found in sorted(by_route.items())},
        "cost_by_repo_usd": dict(sorted(by_repo.items(), key=lambda kv: -kv[1]["cost_usd"])),
    }


def route_of(result: dict[str, Any] | None) -> str | None:
    """The depth a review was routed to (a `/review` command keeps its review under `review`)."""
    result = result or {}
    for holder in (result, result.get("review")):
        route = holder.get("route") if isinstance(holder, dict) else None
        if isinstance(route, dict) and route.get("depth"):
            return str(route["depth"])
    return None


def _spread(costs: list[float]) -> dict[str, float | None]:
    return {"median": None if not costs else round(statistics.median(costs), 4),
            "p90": None if not costs else round(percentile(costs, 0.9) or 0.0, 4)}


def format_stats(stats: dict[str, Any]) -> str:
    """The human form of `job_stats`."""
    if not stats["jobs"]:
        return "no finished jobs"
    per_job = stats["cost_per_job_usd"]
    kinds = ", ".join(f"{n} {kind}" for kind, n in stats["jobs_by_kind"].items())
    lines = [f"jobs: {stats['jobs']} ({kinds}); with a known cost: {stats['jobs_with_cost']}",
             f"cost (list price): ${stats['cost_usd']:.2f}"]
    if per_job["median"] is not None:
        lines.append(f"cost per job: median ${per_job['median']:.2f}, p90 ${per_job['p90']:.2f}")
    if stats.get("cost_by_route_usd"):
        lines.append("reviews by route:")
        lines += [f"  {route:<10} {entry['jobs']:>5} jobs" + (
            f"  median ${entry['median']:.2f}, p90 ${entry['p90']:.2f}" if entry["median"] is not None else "")
            for route, entry in stats["cost_by_route_usd"].items()]
    lines.append("by repository:")
    lines += [f"  {name:<40} {entry['jobs']:>5} jobs  ${entry['cost_usd']:.2f}"
              for name, entry in stats["cost_by_repo_usd"].items()]
    return "\n".join(lines)
