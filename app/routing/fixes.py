"""Failed checks and workflow runs → fix jobs."""

from __future__ import annotations

from gidgethub import routing, sansio

from app.routing.fields import installation_id, repository_fields
from app.routing.intake import Intake
from app.store.models import JobKind, NewJob

router = routing.Router()

FAILED_CHECK_CONCLUSIONS = ("failure", "timed_out")
PASSED_CHECK_CONCLUSIONS = ("success", "neutral", "skipped")
CI_EVENTS = ("check_run", "workflow_run")
FIX_BRANCH_PREFIX = "prmedic/fix/"


def fix_branch_name(pr_number: int, head_sha: str) -> str:
    """Where a fix for `pr_number` at `head_sha` is pushed."""
    return f"{FIX_BRANCH_PREFIX}{pr_number}-{head_sha[:7]}"


def fix_branch_pr(branch: str | None) -> int | None:
    """The pull request a prmedic fix branch belongs to, or None for any other branch."""
    if not branch or not branch.startswith(FIX_BRANCH_PREFIX):
        return None
    number = branch[len(FIX_BRANCH_PREFIX):].split("-", 1)[0]
    return int(number) if number.isdigit() else None


def run_head_branch(source: str, run: dict) -> str | None:
    if source == "check_run":
        return (run.get("check_suite") or {}).get("head_branch")
    return run.get("head_branch")


def follow_up_wanted(source: str, run: dict, sender: str | None, bot_login: str | None) -> bool:
    """A passing result matters only on commits prmedic made: its fix branches, or a fix it pushed."""
    return fix_branch_pr(run_head_branch(source, run)) is not None or (bot_login is not None and sender == bot_login)


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
    head_branch = run_head_branch(source, run)
    return NewJob.model_construct(  # built from decoded, typed fields: no second validation
        kind=JobKind.fix,
        repo=repo["full_name"],
        installation_id=installation_id(data),
        pr_number=pr_number,
        head_sha=head_sha,
        # One fix job per PR (or per commit when the PR is not known yet): failures that
        # arrive together are handled by the newest job, which gathers them all.
        supersede_key=f"fix:{repo['full_name']}#{pr_number}" if pr_number else f"fix:{repo['full_name']}@{head_sha}",
        payload={"repository": repo, "pull_requests": prs, "head_sha": head_sha,
                 "head_branch": head_branch, "failure": failure,
                 "follow_up": run.get("conclusion") not in FAILED_CHECK_CONCLUSIONS},
    )


@router.register("check_run", action="completed")
async def on_check_run_completed(event: sansio.Event, intake: Intake) -> None:
    _route(event, intake, "check_run", FAILED_CHECK_CONCLUSIONS)


@router.register("workflow_run", action="completed")
async def on_workflow_run_completed(event: sansio.Event, intake: Intake) -> None:
    _route(event, intake, "workflow_run", ("failure",))


def _route(event: sansio.Event, intake: Intake, source: str, failed: tuple[str, ...]) -> None:
    run = event.data[source]
    conclusion = run.get("conclusion")
    sender = (event.data.get("sender") or {}).get("login")
    if conclusion in failed or (conclusion in PASSED_CHECK_CONCLUSIONS
                                and follow_up_wanted(source, run, sender, intake.bot_login)):
        intake.add_job(fix_job(event.data, source=source, run=run))
    else:
        intake.ignore(f"{source.replace('_', ' ')} concluded {conclusion}")
