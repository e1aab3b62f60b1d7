"""What every pipeline does around its own logic: GitHub client, repository config, check run,
the agent session, and the summary line with cost and duration."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import anthropic
from gidgethub import HTTPException, RateLimitExceeded
from gidgethub.abc import GitHubAPI

from app.agents.definitions import choose_environment, render_system_prompt
from app.agents.sync import SyncedAgents, default_definitions, ensure_synced
from app.errors import PermanentError, describe, is_transient, network_problem
from app.github.client import retry_delay
from app.logs import redact
from app.pipelines import JobContext
from app.repo_config import LoadedConfig, RepoConfig, fetch_repo_config
from app.sessions import SessionFailed, SessionOutcome, SessionRetryable, SessionSpec
from app.store import Job, StoreUnavailable
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


def _check_run_key(job: Job) -> str:
    return f"check_run:job:{job.id}"


async def known_check_run(run: PipelineRun) -> int | None:
    """The check run an earlier attempt of this job opened, if any."""
    known = await run.ctx.store.get_meta(_check_run_key(run.job))
    return int(known) if known else None


def _external_id(job: Job) -> str:
    return f"prmedic-job-{job.id}"


async def find_check_run(gh: GitHubAPI, job: Job, check_name: str, head_sha: str) -> dict[str, Any] | None:
    """The check run this job created on `head_sha`, found by its external id: for a create that
    GitHub answered with an error after making it."""
    url = (f"/repos/{job.repo}/commits/{head_sha}/check-runs?check_name={quote(check_name)}&filter=all"
           "&per_page=100")
    async for check in gh.getiter(url, iterable_key="check_runs"):
        if check.get("external_id") == _external_id(job):
            return check
    return None


async def open_check_run(run: PipelineRun, check_name: str, head_sha: str, *, title: str = "Starting",
                         summary: str = "prmedic is gathering the change and starting its agents.") -> int:
    """An in-progress check run for this job: created once, taken up again by a retry of the job
    (so a retried job does not leave an orphan check run spinning on the commit), also when the
    create landed but its answer was lost."""
    known = await known_check_run(run)
    if known is None and run.job.attempts > 1:
        found = await find_check_run(run.gh, run.job, check_name, head_sha)
        known = int(found["id"]) if found else None
    if known:
        run.check_run_id = known
        await run.gh.patch(f"/repos/{run.repo}/check-runs/{run.check_run_id}", data={
            "status": "in_progress", "output": {
                "title": f"Starting again (attempt {run.job.attempts})",
                "summary": "prmedic is taking this job up again after an interruption."}})
    else:
        try:
            run.check_run_id = await start_check_run(run.gh, run.repo, head_sha, check_name, title=title,
                                                     summary=summary, external_id=_external_id(run.job))
        except Exception as exc:
            if not is_transient(exc):
                raise
            found = await _quietly(find_check_run(run.gh, run.job, check_name, head_sha))
            if not found:
                raise
            run.check_run_id = int(found["id"])
    await run.ctx.store.set_meta(_check_run_key(run.job), str(run.check_run_id))
    run.check_opened = time.monotonic()
    return run.check_run_id


async def _quietly(lookup: Any) -> Any:
    """A lookup made while handling another error: its own failure is that error's, not a new one."""
    try:
        return await lookup
    except Exception as exc:  # noqa: BLE001 - the error being handled is the one that counts
        log.warning("looking for what the failed request did failed too: %s", redact(describe(exc)))
        return None


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


# -- when the worker gives a job up ----------------------------------------------------------

RERUN_HINTS = {
    "review": "Push a new commit, or close and reopen the pull request, and prmedic reviews it again.",
    "fix": "The next failing CI run on this pull request starts a new fix attempt.",
}


def will_retry(job: Job, exc: BaseException) -> bool:
    """Whether the worker tries the job again after `exc` (transient, attempts left)."""
    return is_transient(exc) and job.attempts < job.max_attempts


def give_up_reason(exc: BaseException) -> str:
    """Why a job could not finish, in words for a check run title: "GitHub kept answering 502"."""
    if isinstance(exc, (SessionFailed, SessionRetryable)):
        return str(exc)
    problem = network_problem(exc)
    if problem is not None:
        return str(problem)
    if isinstance(exc, RateLimitExceeded):
        return "GitHub's rate limit did not reset in time"
    if isinstance(exc, HTTPException):
        status = int(exc.status_code)
        if status >= 500:
            return f"GitHub kept answering {status}"
        if retry_delay(exc, 1) is not None:
            return "GitHub's rate limit did not reset in time"
        return f"GitHub refused a request ({status}: {exc})"
    if isinstance(exc, anthropic.APIStatusError):
        return f"the Anthropic API kept answering {exc.status_code}"
    if isinstance(exc, StoreUnavailable):
        return "prmedic's job store was unavailable"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "a request timed out"
    return describe(exc)


def gave_up_summary(job: Job, exc: BaseException) -> str:
    tries = f"after {job.attempts} attempt(s)" if is_transient(exc) else "(retrying would not help)"
    hint = RERUN_HINTS.get(job.kind.value, "")
    return redact(f"prmedic stopped this job {tries}: {give_up_reason(exc)}.\n\nLast error: "
                  f"`{describe(exc)}`\n\n{hint}").strip()


async def close_abandoned_check_run(ctx: JobContext, exc: BaseException) -> bool:
    """Complete (`neutral`, with the reason and what to do) the check run a job given up on left in
    progress: the one the store remembers, or, if its create was answered with an error, the one
    GitHub has with the job's external id. Best effort, through the GitHub client's retries;
    True when a check run was completed here."""
    job = ctx.job
    name = CHECK_NAMES.get(job.kind.value)
    head_sha = job.head_sha or job.payload.get("head_sha")
    if ctx.github is None or job.installation_id is None or name is None:
        return False
    try:
        gh = await ctx.github.installation_client(job.installation_id)
        check_id = await _open_check_of(ctx, gh, name, head_sha)
        if check_id is None:
            return False
        await complete_check_run(gh, job.repo, check_id, "neutral", f"prmedic could not finish: {give_up_reason(exc)}",
                                 gave_up_summary(job, exc))
    except asyncio.CancelledError:
        raise
    except Exception as inner:  # noqa: BLE001 - the job's own error is what gets recorded
        log.warning("job %d: could not complete its check run: %s", job.id, redact(describe(inner)))
        return False
    log.info("job %d: check run %s completed as neutral (job given up)", job.id, check_id)
    return True


async def _open_check_of(ctx: JobContext, gh: GitHubAPI, name: str, head_sha: str | None) -> int | None:
    known = await ctx.store.get_meta(_check_run_key(ctx.job))
    if known:
        check = await _quietly(gh.getitem(f"/repos/{ctx.job.repo}/check-runs/{int(known)}"))
        return None if check and check.get("status") == "completed" else int(known)
    if not head_sha:
        return None
    check = await find_check_run(gh, ctx.job, name, head_sha)
    return int(check["id"]) if check and check.get("status") != "completed" else None
