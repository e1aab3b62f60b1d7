"""GitHub Actions: a run's jobs and a job's logs."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from ..common import not_found
from ..routing import Ctx, paginate, route

if TYPE_CHECKING:
    from ..records import ActionsJob


@route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", perms=[("actions", "read")])
def list_run_jobs(ctx: Ctx):
    run_id = int(ctx.params["run_id"])
    jobs = sorted((j for j in ctx.state.jobs.values() if j.repo is ctx.repo and j.run_id == run_id),
                  key=lambda j: j.id)
    if ctx.query.get("filter", "latest") == "latest" and jobs:
        top = max(j.run_attempt for j in jobs)
        jobs = [j for j in jobs if j.run_attempt == top]
    chunk, headers = paginate(ctx, jobs)
    return 200, {"total_count": len(jobs), "jobs": [ctx.render.job(j) for j in chunk]}, headers


def _job_or_404(ctx: Ctx) -> ActionsJob:
    job = ctx.state.jobs.get(int(ctx.params["job_id"]))
    if job is None or job.repo is not ctx.repo:
        raise not_found()
    return job


@route("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}", perms=[("actions", "read")])
def get_job(ctx: Ctx):
    return 200, ctx.render.job(_job_or_404(ctx))


@route("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs", perms=[("actions", "read")])
def job_logs(ctx: Ctx):
    job = _job_or_404(ctx)
    if job.log_text is None:
        raise not_found()
    nonce = secrets.token_urlsafe(12)
    ctx.state._log_nonces[nonce] = job.id
    loc = f"{ctx.base_url}/_sim/actions/jobs/{job.id}/logs?sig={nonce}"
    return 302, None, {"Location": loc}
