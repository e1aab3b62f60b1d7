"""The router session: when no plain rule decides a review's depth (`route.by == "default"`), the
router agent (`agents/router.md`: the cheapest model, no tools) reads the pull request's title,
files, sizes and risk signals and answers LIGHT, STANDARD or DEEP.

Its session mounts no repository (no token is minted), runs in the default environment on a small
budget and a short time limit, and goes through `SessionRuntime.run` like any session: recorded in
the store, its cost read from its usage. Whatever goes wrong (an answer that is not one of the
three, a refusal, an error, the time limit) gives `standard` and says why; it never fails the
review. The decision is kept in the store (`route:<job id>`), so a retried job does not ask again,
and a router session an earlier attempt left open is closed by the review's runner, which resumes
only a session of its own agent.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import anthropic

from app.agents.definitions import DEFAULT_ENVIRONMENT
from app.agents.sync import AgentRef, default_definitions, ensure_synced
from app.errors import PermanentError, describe
from app.logs import redact
from app.pipelines.context import PipelineRun
from app.pipelines.diff import FileChange
from app.pipelines.review.route import Route
from app.pipelines.review.router_task import (
    FALLBACK,
    RouterAnswer,
    parse_answer,
    router_task,
)
from app.pipelines.session import count_cost, tool_context
from app.sessions import SessionFailed, SessionSpec
from app.sessions.cost import JobCost, spent_before_failing
from app.sessions.errors import SessionRetryable
from app.tools import ToolRegistry

log = logging.getLogger("prmedic.review")

ROUTER_BUDGET_USD = 0.05
ROUTER_TIMEOUT_SECONDS = 90.0
MEMORY_KEY = "route:{job_id}"


@dataclass
class RouterRun:
    """The router's part of a review: the route it gave, its answer, and what its session cost."""

    route: Route
    answer: str | None = None  # the line the depth was read from (redacted, capped)
    cost: JobCost | None = None

    def as_dict(self) -> dict[str, Any]:
        """For the job's result: `router: {answer, reason, cost}`."""
        return {"answer": self.answer, "reason": self.route.reason,
                "cost": self.cost.as_dict() if self.cost is not None else None}


async def ask_router(run: PipelineRun, pr: dict[str, Any], files: list[FileChange]) -> RouterRun:
    """The route of a review no plain rule decided: remembered from an earlier attempt, else the
    router's answer, else `standard` with the reason the answer was not usable."""
    store, key = run.ctx.store, MEMORY_KEY.format(job_id=run.job.id)
    remembered = _recall(await store.get_meta(key))
    if remembered is not None:
        return remembered
    runtime, client = run.ctx.sessions, run.ctx.anthropic
    if runtime is None or client is None:
        raise PermanentError("the Managed Agents client is not configured (is ANTHROPIC_API_KEY set?)")
    team = await ensure_synced(client, store)
    router = default_definitions().router
    if team.router is None or router is None:
        return RouterRun(_fallback("no router agent is defined in agents/teams.yml"))

    def spec_for(router_ref: AgentRef, environment_id: str) -> SessionSpec:
        return SessionSpec.for_job(
            run.job, task=task, agent_id=router_ref.id, agent_version=router_ref.version,
            environment_id=environment_id, budget_cents=round(ROUTER_BUDGET_USD * 100),
            title=f"prmedic router {run.job.repo}#{run.job.pr_number} @ {(run.job.head_sha or '')[:7]}",
            metadata={"role": "router"}, mount_repository=False, max_duration_seconds=ROUTER_TIMEOUT_SECONDS)

    task = router_task(pr, files)
    cost: JobCost | None = None
    try:
        spec = spec_for(team.router, team.environment_id(DEFAULT_ENVIRONMENT))
        try:
            outcome = await runtime.run(spec, tool_context(run), tools=ToolRegistry())
        except SessionFailed as exc:
            if exc.reason != "create_refused":
                raise
            # The router or the default environment archived by hand since this process synced (as
            # `run_agents` does for the review): read everything back and try once more.
            team = await ensure_synced(client, store, verify=True)
            spec = spec_for(team.router or AgentRef(spec.agent_id, spec.agent_version or 1),
                            team.environment_id(DEFAULT_ENVIRONMENT))
            outcome = await runtime.run(spec, tool_context(run), tools=ToolRegistry())
        cost = outcome.cost if outcome.usage is not None or outcome.list_cost_cents is not None else None
        answer = parse_answer(outcome.final_message)
        if not answer.usable and outcome.budget_reached:
            answer = RouterAnswer(None, problem="its budget ran out before it answered", line=answer.line)
    except (SessionFailed, SessionRetryable) as exc:
        cost = spent_before_failing(exc, router.model)
        answer = RouterAnswer(None, problem=f"its session failed: {redact(str(exc))[:200]}")
    except anthropic.AnthropicError as exc:
        answer = RouterAnswer(None, problem=f"its session could not run: {describe(exc)}")

    usd = cost.total_usd if cost is not None else None
    if answer.usable:
        route = Route(answer.depth, answer.reason, "router", usd)  # type: ignore[arg-type]
    else:
        log.warning("job %d: the router's answer was not usable (%s); reviewing at %s", run.job.id, answer.problem,
                    FALLBACK)
        route = _fallback(answer.problem or "no answer", usd)
    result = RouterRun(route, answer.line or None, cost)
    await store.set_meta(key, json.dumps({"route": route.as_dict(), "router_usd": usd, **result.as_dict()}))
    if cost is not None:
        count_cost(run, cost, route.depth)
    return result


def _fallback(why: str, usd: float | None = None) -> Route:
    return Route(FALLBACK, f"the router's answer was not usable: {why}", "router", usd)


def _recall(raw: str | None) -> RouterRun | None:
    """The decision an earlier attempt of this job kept, or None."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
        route = Route(data["route"]["depth"], data["route"]["reason"], "router", data.get("router_usd"))
    except (ValueError, KeyError, TypeError):
        return None
    cost = JobCost.from_dict(data["cost"]) if isinstance(data.get("cost"), dict) else None
    return RouterRun(route, data.get("answer"), cost)
