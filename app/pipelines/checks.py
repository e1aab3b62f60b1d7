"""The check run of a job, from start to end: opened in progress (or taken up again by a retry,
also when GitHub made it but its answer was lost), the agents' progress shown on it (throttled),
completed by the pipeline, and closed as `neutral` when the worker gives the job up.

Every check run prmedic creates carries the job's external id (`prmedic-job-<id>`) and is
remembered in the store under `check_run:job:<id>`, which is how a later attempt finds it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import anthropic
from gidgethub import HTTPException, RateLimitExceeded
from gidgethub.abc import GitHubAPI

from app.errors import describe, is_transient, network_problem
from app.github.client import retry_delay
from app.logs import redact
from app.pipelines.context import JobContext, PipelineRun
from app.pipelines.progress import SUMMARY_MAX, TITLE_MAX, ThrottledProgress, progress_output  # noqa: F401
from app.sessions import SessionFailed, SessionRetryable
from app.store import Job, StoreUnavailable

log = logging.getLogger("prmedic.pipeline")

CHECK_NAMES = {"review": "prmedic review", "fix": "prmedic fix", "command": "prmedic"}
RERUN_HINTS = {
    "review": "Push a new commit, or close and reopen the pull request, and prmedic reviews it again.",
    "fix": "The next failing CI run on this pull request starts a new fix attempt.",
}


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _external_id(job: Job) -> str:
    return f"prmedic-job-{job.id}"


def _check_run_key(job: Job) -> str:
    return f"check_run:job:{job.id}"


# -- the GitHub calls ------------------------------------------------------------------------

async def start_check_run(gh: Any, repo: str, head_sha: str, name: str, *, title: str = "Starting",
                          summary: str = "prmedic is starting a session.", details_url: str | None = None,
                          external_id: str | None = None) -> int:
    """Create an in-progress check run on `head_sha`; return its id."""
    body: dict[str, Any] = {"name": name, "head_sha": head_sha, "status": "in_progress", "started_at": _now_iso(),
                            "output": {"title": title, "summary": summary}}
    if details_url:
        body["details_url"] = details_url
    if external_id:
        body["external_id"] = external_id
    answer = await gh.post(f"/repos/{repo}/check-runs", data=body)
    return int(answer["id"])


async def complete_check_run(gh: Any, repo: str, check_run_id: int, conclusion: str, title: str,
                             summary: str) -> None:
    """Complete the check run (`conclusion`: success, failure, neutral, cancelled, skipped, …)."""
    await gh.patch(f"/repos/{repo}/check-runs/{check_run_id}", data={
        "status": "completed", "conclusion": conclusion, "completed_at": _now_iso(),
        "output": {"title": title[:TITLE_MAX], "summary": summary[:SUMMARY_MAX] or title[:TITLE_MAX]},
    })


async def find_check_run(gh: GitHubAPI, job: Job, check_name: str, head_sha: str) -> dict[str, Any] | None:
    """The check run this job created on `head_sha`, found by its external id: for a create that
    GitHub answered with an error after making it."""
    url = (f"/repos/{job.repo}/commits/{head_sha}/check-runs?check_name={quote(check_name)}&filter=all"
           "&per_page=100")
    async for check in gh.getiter(url, iterable_key="check_runs"):
        if check.get("external_id") == _external_id(job):
            return check
    return None


# -- a pipeline's check run ------------------------------------------------------------------

async def known_check_run(run: PipelineRun) -> int | None:
    """The check run an earlier attempt of this job opened, if any."""
    known = await run.ctx.store.get_meta(_check_run_key(run.job))
    return int(known) if known else None


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


async def finish_check(run: PipelineRun, conclusion: str, title: str, summary: str) -> None:
    """Complete the check run this attempt opened (nothing when it opened none)."""
    if run.check_run_id is None:
        return
    gh = await run.github()
    await complete_check_run(gh, run.repo, run.check_run_id, conclusion, title, summary)


async def complete_check(run: PipelineRun, check_name: str, conclusion: str, title: str, summary: str) -> None:
    """Complete this job's check run (an earlier attempt may have opened one), or post it completed:
    for a job that ends without doing the work (skipped, carried over)."""
    run.check_run_id = run.check_run_id or await known_check_run(run)
    if run.check_run_id is None and run.job.attempts > 1:  # an earlier attempt's POST may have landed unanswered
        found = await find_check_run(run.gh, run.job, check_name, run.job.head_sha)
        run.check_run_id = int(found["id"]) if found else None
    if run.check_run_id is not None:
        await finish_check(run, conclusion, title, summary)
        return
    await run.gh.post(f"/repos/{run.repo}/check-runs", data={
        "name": check_name, "head_sha": run.job.head_sha, "status": "completed", "conclusion": conclusion,
        "external_id": _external_id(run.job), "output": {"title": title, "summary": redact(summary)}})


async def complete_known_check(run: PipelineRun, conclusion: str, title: str, summary: str) -> None:
    """Complete the check run an earlier attempt of this job opened, if the store remembers one: for
    a retry that finds the work already done."""
    known = await known_check_run(run)
    if known:
        run.check_run_id = known
        await finish_check(run, conclusion, title, summary)


async def _quietly(lookup: Any) -> Any:
    """A lookup made while handling another error: its own failure is that error's, not a new one."""
    try:
        return await lookup
    except Exception as exc:  # noqa: BLE001 - the error being handled is the one that counts
        log.warning("looking for what the failed request did failed too: %s", redact(describe(exc)))
        return None


# -- progress while the agents work ----------------------------------------------------------

class ProgressReporter(ThrottledProgress):
    """The agents' progress on one check run (throttled: `ThrottledProgress`)."""

    def __init__(self, github: Callable[[], Awaitable[Any]], repo: str, check_run_id: int, *,
                 min_interval: float = 10.0, sent_at: float | None = None, flush_on_close: bool = True) -> None:
        super().__init__(min_interval=min_interval, sent_at=sent_at, flush_on_close=flush_on_close,
                         where="the check run")
        self.github = github
        self.repo = repo
        self.check_run_id = check_run_id

    async def write(self, output: dict[str, str]) -> None:
        gh = await self.github()
        await gh.patch(f"/repos/{self.repo}/check-runs/{self.check_run_id}",
                       data={"status": "in_progress", "output": output})


# -- when the worker gives a job up ----------------------------------------------------------

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
    True when a check run was completed here. The worker calls it (its `on_give_up`)."""
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
