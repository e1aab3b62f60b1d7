"""What every pipeline does around its own logic: GitHub client, repository config, check run,
the agent session, and the summary line with cost and duration."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from gidgethub.abc import GitHubAPI

from app.agents.definitions import choose_environment, render_system_prompt
from app.agents.sync import SyncedAgents, default_definitions, ensure_synced
from app.errors import PermanentError
from app.pipelines import JobContext
from app.repo_config import LoadedConfig, RepoConfig, fetch_repo_config
from app.sessions import SessionFailed, SessionOutcome, SessionSpec
from app.tools import ProgressReporter, ToolContext, ToolRegistry, complete_check_run, start_check_run

log = logging.getLogger("prmedic.pipeline")

CHECK_NAMES = {"review": "prmedic review", "fix": "prmedic fix", "command": "prmedic"}


@dataclass
class PipelineRun:
    """One attempt of one job, with what every step needs."""

    ctx: JobContext
    gh: GitHubAPI
    loaded: LoadedConfig
    check_run_id: int | None = None
    started: float = field(default_factory=time.monotonic)
    check_opened: float | None = None

    @property
    def job(self):
        return self.ctx.job

    @property
    def repo(self) -> str:
        return self.ctx.job.repo

    @property
    def config(self) -> RepoConfig:
        return self.loaded.config

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"

    async def github(self) -> GitHubAPI:
        """A fresh installation client (its token is cached, and refreshed when near expiry)."""
        return await self.ctx.github.installation_client(self.job.installation_id)


def default_branch(ctx: JobContext) -> str:
    return (ctx.job.payload.get("repository") or {}).get("default_branch") or "main"


async def prepare(ctx: JobContext, *, check_name: str | None = None, head_sha: str | None = None) -> PipelineRun:
    """Installation client, the repository config from the default branch, and (optionally)
    an in-progress check run on the head commit."""
    if ctx.github is None or ctx.job.installation_id is None:
        raise PermanentError(f"job {ctx.job.id} has no GitHub installation to act through")
    gh = await ctx.github.installation_client(ctx.job.installation_id)
    loaded = await fetch_repo_config(gh, ctx.job.repo, default_branch(ctx))
    run = PipelineRun(ctx=ctx, gh=gh, loaded=loaded)
    sha = head_sha or ctx.job.head_sha
    if check_name and sha:
        await open_check_run(run, check_name, sha)
    return run


def _check_run_key(run: PipelineRun) -> str:
    return f"check_run:job:{run.job.id}"


async def known_check_run(run: PipelineRun) -> int | None:
    """The check run an earlier attempt of this job opened, if any."""
    known = await run.ctx.store.get_meta(_check_run_key(run))
    return int(known) if known else None


async def open_check_run(run: PipelineRun, check_name: str, head_sha: str) -> int:
    """An in-progress check run for this job: created once, taken up again by a retry of the job
    (so a retried job does not leave an orphan check run spinning on the commit)."""
    known = await known_check_run(run)
    if known:
        run.check_run_id = known
        await run.gh.patch(f"/repos/{run.repo}/check-runs/{run.check_run_id}", data={
            "status": "in_progress", "output": {
                "title": f"Starting again (attempt {run.job.attempts})",
                "summary": "prmedic is taking this job up again after an interruption."}})
    else:
        run.check_run_id = await start_check_run(
            run.gh, run.repo, head_sha, check_name, title="Starting",
            summary="prmedic is gathering the change and starting its agents.",
            external_id=f"prmedic-job-{run.job.id}",
        )
        await run.ctx.store.set_meta(_check_run_key(run), str(run.check_run_id))
    run.check_opened = time.monotonic()
    return run.check_run_id


def config_problems_markdown(errors: list[str]) -> str:
    if not errors:
        return ""
    lines = "\n".join(f"- {error}" for error in errors)
    return (f"**`.github/prmedic.yml` has problems; the defaults are used until it is fixed:**\n\n{lines}\n")


def cost_and_duration(outcome: SessionOutcome | None, run: PipelineRun) -> str:
    cost = "unknown"
    if outcome is not None and outcome.list_cost_cents is not None:
        cost = f"${outcome.list_cost_cents / 100:.2f}"
    return f"Cost (list price): {cost} · Duration: {run.elapsed()}"


async def run_agents(
    run: PipelineRun,
    *,
    task: str,
    tools: ToolRegistry,
    budget_usd: float,
    extra_instructions: str | None = None,
    repo_language: str | None = None,
    title: str | None = None,
    services: dict[str, Any] | None = None,
    head_sha: str | None = None,
    pr_number: int | None = None,
) -> SessionOutcome:
    """Sync the team if needed and run the job's session with `tools`; progress goes to the check run.

    `head_sha` / `pr_number` mount another commit than the job's own (a fix called explicitly,
    e.g. by `/fix`, or following up on a fix commit)."""
    runtime = run.ctx.services.get("sessions")
    client = run.ctx.services.get("anthropic")
    if runtime is None or client is None:
        raise PermanentError("the Managed Agents client is not configured (is ANTHROPIC_API_KEY set?)")
    system = render_system_prompt(default_definitions().coordinator, extra_instructions) if extra_instructions else None
    job = run.job
    if head_sha is not None or pr_number is not None:
        job = job.model_copy(update={"head_sha": head_sha or job.head_sha, "pr_number": pr_number or job.pr_number})

    async def session_with(team: SyncedAgents) -> SessionOutcome:
        environment = choose_environment(run.config.environment, repo_language, available=list(team.environments))
        spec = SessionSpec.for_job(
            job, task=task, agent_id=team.coordinator.id, agent_version=team.coordinator.version,
            environment_id=team.environment_id(environment), budget_cents=int(round(budget_usd * 100)),
            title=title, system_override=system,
        )
        progress = None
        if run.check_run_id is not None:
            # The pipeline completes the check run right after the session, so a last report still
            # waiting for its interval would be overwritten at once: it is not sent.
            progress = ProgressReporter(run.github, run.repo, run.check_run_id, sent_at=run.check_opened,
                                        flush_on_close=False)
        tool_ctx = ToolContext(job=run.job, store=run.ctx.store, github=run.github, check_run_id=run.check_run_id,
                               progress=progress, services={"run": run, **(services or {})})
        return await runtime.run(spec, tool_ctx, tools=tools)

    try:
        return await session_with(await ensure_synced(client, run.ctx.store))
    except SessionFailed as exc:
        if exc.reason != "create_refused":
            raise
        # Most often an agent or environment archived (or changed) by hand since this process synced:
        # read everything back, replace what is gone, and try once more.
        log.warning("job %d: session refused (%s); re-syncing the agents and trying again", run.job.id, exc)
        return await session_with(await ensure_synced(client, run.ctx.store, verify=True))


async def finish_check(run: PipelineRun, conclusion: str, title: str, summary: str) -> None:
    if run.check_run_id is None:
        return
    gh = await run.github()
    await complete_check_run(gh, run.repo, run.check_run_id, conclusion, title, summary)
