"""The job's agent session: the team synced, the environment chosen, the session run with the
pipeline's tools and its progress shown on the check run."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from app.agents.derived import environment_for_job
from app.agents.mcp import mcp_overrides, repository_servers
from app.agents.per_job import render_system_prompt
from app.agents.sync import SyncedAgents, default_definitions, ensure_synced
from app.agents.teams import Depth
from app.errors import PermanentError
from app.pipelines.checks import ProgressReporter
from app.pipelines.context import PipelineRun
from app.pipelines.progress import Both
from app.sessions import SessionFailed, SessionOutcome, SessionSpec
from app.sessions.cost import JobCost, spent_before_failing
from app.tools import ToolContext, ToolRegistry
from app.tools.registry import Progress

if TYPE_CHECKING:
    from app.pipelines.commands.describe import DescribeTarget
    from app.pipelines.fix.ci_logs import CiLogs
    from app.pipelines.fix.propose import FixTarget
    from app.pipelines.review.endings import ReviewPosts
    from app.pipelines.review.publish import ReviewSession

log = logging.getLogger("prmedic.pipeline")


def cost_and_duration(outcome: SessionOutcome | None, run: PipelineRun, extra: JobCost | None = None) -> str:
    """The footer of a check run summary or a command's answer: the list-price total (tokens and
    session runtime), the duration, and a compact line of tokens by model and runtime. `extra`:
    the job's other sessions (the router's), added in."""
    if outcome is None or (outcome.usage is None and outcome.list_cost_cents is None):
        return f"Cost (list price): unknown · Duration: {run.elapsed()}"
    cost = outcome.cost.plus(extra)
    return (f"Cost (list price): ${cost.total_usd:.2f} · Duration: {run.elapsed()}"
            f"<br><sub>{cost.summary_line()}</sub>")


def tool_context(run: PipelineRun, *, progress: Progress | None = None, review: ReviewSession | None = None,
                 review_posts: ReviewPosts | None = None, fix: FixTarget | None = None,
                 ci_logs: CiLogs | None = None, describe: DescribeTarget | None = None) -> ToolContext:
    """What this run's tools work on: the job, its check run, and the pipeline's own state."""
    channel = run.ctx.command_answer
    return ToolContext(job=run.job, store=run.ctx.store, github=run.github, check_run_id=run.check_run_id,
                       progress=progress, answer=channel.reply if channel is not None else None, run=run, review=review, review_posts=review_posts, fix=fix,
                       ci_logs=ci_logs, describe=describe)


async def run_agents(
    run: PipelineRun,
    *,
    task: str,
    tools: ToolRegistry,
    budget_usd: float,
    extra_instructions: str | None = None,
    repo_language: str | None = None,
    title: str | None = None,
    review: ReviewSession | None = None,
    review_posts: ReviewPosts | None = None,
    fix: FixTarget | None = None,
    ci_logs: CiLogs | None = None,
    describe: DescribeTarget | None = None,
    head_sha: str | None = None,
    pr_number: int | None = None,
    depth: Depth | None = None,
) -> SessionOutcome:
    """Sync the team if needed and run the job's session with `tools`; progress goes to the check run.

    `depth` picks the team of a review (its lead, from `agents/teams.yml`); None, for every job that
    is not a review, runs the coordinator (the deep team). The repository's instructions are
    rendered onto that lead's prompt.
    `review` … `describe` are the pipeline's own state, handed to its tools (`ToolContext`).
    `head_sha` / `pr_number` mount another commit than the job's own (a fix called explicitly,
    e.g. by `/fix`, or following up on a fix commit)."""
    runtime, client = run.ctx.sessions, run.ctx.anthropic
    if runtime is None or client is None:
        raise PermanentError("the Managed Agents client is not configured (is ANTHROPIC_API_KEY set?)")
    lead = default_definitions().lead(depth or "deep")
    system = render_system_prompt(lead, extra_instructions) if extra_instructions else None
    job = run.job
    if head_sha is not None or pr_number is not None:
        job = job.model_copy(update={"head_sha": head_sha or job.head_sha, "pr_number": pr_number or job.pr_number})

    # The operator's MCP servers this repository opted into (an unknown name is a config problem,
    # reported by `prepare`): the lead gets their toolsets and vaults, the environment reaches them.
    servers, _ = repository_servers(run.config.mcp, getattr(run.ctx.settings, "mcp_servers", ()))
    mcp = mcp_overrides(lead, servers, runtime.settings.tool_policy) if servers else None

    async def session_with(team: SyncedAgents, *, verify: bool = False) -> SessionOutcome:
        environment_id = await environment_for_job(client, run.ctx.store, team, run.config.environment, repo_language,
                                                   verify=verify, allow_mcp_servers=mcp is not None)
        agent = team.lead(depth or "deep")
        spec = SessionSpec.for_job(
            job, task=task, agent_id=agent.id, agent_version=agent.version,
            environment_id=environment_id, budget_cents=int(round(budget_usd * 100)),
            title=title, system_override=system,
        )
        if mcp is not None:
            spec.agent_tools, spec.mcp_servers, spec.vault_ids = mcp.tools, mcp.mcp_servers, mcp.vault_ids
        progress: Progress | None = None
        if run.check_run_id is not None:
            # The pipeline completes the check run right after the session, so a last report still
            # waiting for its interval would be overwritten at once: it is not sent.
            progress = ProgressReporter(run.github, run.repo, run.check_run_id, sent_at=run.check_opened,
                                        flush_on_close=False)
        channel = run.ctx.command_answer
        if channel is not None:
            progress = channel.progress if progress is None else Both(progress, channel.progress)
        ctx = tool_context(run, progress=progress, review=review, review_posts=review_posts, fix=fix,
                           ci_logs=ci_logs, describe=describe)
        return await runtime.run(spec, ctx, tools=tools)

    try:
        try:
            outcome = await session_with(await ensure_synced(client, run.ctx.store))
        except SessionFailed as exc:
            if exc.reason != "create_refused":
                raise
            # Most often an agent or environment archived (or changed) by hand since this process synced:
            # read everything back, replace what is gone, and try once more.
            log.warning("job %d: session refused (%s); re-syncing the agents and trying again", run.job.id, exc)
            outcome = await session_with(await ensure_synced(client, run.ctx.store, verify=True), verify=True)
    except SessionFailed as exc:
        # Ended for good (a refusal, a time limit): what it spent is spent. A retryable failure is
        # not counted: the retry resumes the session, whose usage then counts it all.
        spent = spent_before_failing(exc, lead.model)
        if spent is not None:
            count_cost(run, spent, depth)
        raise
    if outcome.usage is not None:
        count_cost(run, outcome.cost, depth)
    return outcome


def count_cost(run: PipelineRun, cost: JobCost, depth: str | None) -> None:
    """Add a finished session's cost and tokens to `/metrics` (once: where it ended), under the
    review's route (`none` for a job that is not a review)."""
    if run.ctx.metrics is None:
        return
    data = cost.as_dict()
    run.ctx.metrics.count_session_cost(run.job.kind.value, depth or "none", data["total_usd"], data["models"])
