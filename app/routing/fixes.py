"""Failed checks and workflow runs → fix jobs."""

from __future__ import annotations

from gidgethub import routing, sansio

from app.routing.fields import installation_id, repository_fields
from app.routing.intake import Intake
from app.store.models import JobKind, NewJob

router = routing.Router()

FAILED_CHECK_CONCLUSIONS = ("failure", "timed_out")


def fix_job(data: dict, *, source: str, run: dict) -> NewJob:
    repo = repository_fields(data["repository"])
    prs = [
        {"number": pr["number"], "head_ref": pr["head"]["ref"], "head_sha": pr["head"]["sha"],
         "base_ref": pr["base"]["ref"]}
        for pr in run.get("pull_requests") or []
        if isinstance(pr, dict) and "number" in pr
    ]
    pr_number = prs[0]["number"] if len(prs) == 1 else None
    head_sha = run["head_sha"]
    failure = {"source": source, "id": run["id"], "name": run.get("name"), "conclusion": run.get("conclusion"),
               "html_url": run.get("html_url")}
    if source == "check_run":
        failure["details_url"] = run.get("details_url")
        failure["app"] = (run.get("app") or {}).get("slug")
        failure["check_suite_id"] = (run.get("check_suite") or {}).get("id")
    else:
        failure["run_attempt"] = run.get("run_attempt")
        failure["workflow_id"] = run.get("workflow_id")
        failure["event"] = run.get("event")
    return NewJob(
        kind=JobKind.fix,
        repo=repo["full_name"],
        installation_id=installation_id(data),
        pr_number=pr_number,
        head_sha=head_sha,
        # One fix job per PR (or per commit when the PR is not known yet): failures that
        # arrive together are handled by the newest job, which gathers them all.
        supersede_key=f"fix:{repo['full_name']}#{pr_number}" if pr_number else f"fix:{repo['full_name']}@{head_sha}",
        payload={"repository": repo, "pull_requests": prs, "head_sha": head_sha,
                 "head_branch": run.get("head_branch"), "failure": failure,
                 "sender": (data.get("sender") or {}).get("login")},
    )


@router.register("check_run", action="completed")
async def on_check_run_completed(event: sansio.Event, intake: Intake) -> None:
    run = event.data["check_run"]
    if run.get("conclusion") not in FAILED_CHECK_CONCLUSIONS:
        intake.ignore(f"check run concluded {run.get('conclusion')}")
        return
    intake.jobs.append(fix_job(event.data, source="check_run", run=run))


@router.register("workflow_run", action="completed")
async def on_workflow_run_completed(event: sansio.Event, intake: Intake) -> None:
    run = event.data["workflow_run"]
    if run.get("conclusion") != "failure":
        intake.ignore(f"workflow run concluded {run.get('conclusion')}")
        return
    intake.jobs.append(fix_job(event.data, source="workflow_run", run=run))
