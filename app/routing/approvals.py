"""A button clicked on prmedic's `prmedic fix` check run (`check_run` `requested_action`) → a
command job, as if the person who clicked had written the command: **Apply fix** is `/apply`,
**Open as PR** is `/apply pr`, **Discard** is `/discard`. The command job's permission check then
applies unchanged (a reader's click is refused and answered on the PR).

Only clicks on this App's own check runs count (another App's buttons are its own business), and
only by people. The button's identifier names the decision and the fix: `apply:<proposal id>`.
Pure: no I/O.
"""

from __future__ import annotations

from gidgethub import routing, sansio

from app.routing.fields import installation_id, repository_fields
from app.routing.intake import Intake
from app.store.models import JobKind, NewJob

router = routing.Router()

FIX_CHECK_NAME = "prmedic fix"
# identifier prefix → (command, args)
DECISIONS: dict[str, tuple[str, str]] = {"apply": ("apply", ""), "open_pr": ("apply", "pr"),
                                         "discard": ("discard", "")}
LABELS = {"apply": "Apply fix", "open_pr": "Open as PR", "discard": "Discard"}
IDENTIFIER_MAX = 20  # GitHub's limit for an action's identifier


def action_identifier(decision: str, proposal_id: int) -> str:
    """The identifier a button carries (`apply:12`): at most 20 characters."""
    identifier = f"{decision}:{proposal_id}"
    assert decision in DECISIONS and len(identifier) <= IDENTIFIER_MAX, identifier
    return identifier


def parse_action(identifier: str | None) -> tuple[str, int] | None:
    """(decision, proposal id) from a button's identifier, or None for one prmedic did not make."""
    decision, sep, number = (identifier or "").partition(":")
    if not sep or decision not in DECISIONS or not number.isdigit():
        return None
    return decision, int(number)


def is_requested_action(event: str, data: dict) -> bool:
    """A person clicked a button on a check run: caused by them, not by the App that made the check run."""
    return event == "check_run" and data.get("action") == "requested_action"


def approval_job(data: dict, decision: str, proposal_id: int, pr_number: int) -> NewJob:
    repo = repository_fields(data["repository"])
    run = data["check_run"]
    sender = data.get("sender") or {}
    command, args = DECISIONS[decision]
    payload = {
        "repository": repo,
        "command": command,
        "args": args,
        "source": "check_run",
        "pr_author": None,
        "decision": decision,
        "proposal_id": proposal_id,
        "check_run_id": run["id"],
        "button": LABELS[decision],
        "comment": {"author": sender.get("login")},
    }
    return NewJob.model_construct(  # built from decoded, typed fields: no second validation
        kind=JobKind.command, repo=repo["full_name"], installation_id=installation_id(data), pr_number=pr_number,
        head_sha=run.get("head_sha"), payload=payload)


@router.register("check_run", action="requested_action")
async def on_requested_action(event: sansio.Event, intake: Intake) -> None:
    data = event.data
    run = data.get("check_run") or {}
    sender = data.get("sender") or {}
    if (run.get("app") or {}).get("id") != intake.app_id or run.get("name") != FIX_CHECK_NAME:
        intake.ignore("a button on a check run that is not prmedic's fix check run")
        return
    parsed = parse_action((data.get("requested_action") or {}).get("identifier"))
    if parsed is None:
        intake.ignore("a button prmedic did not make")
        return
    if sender.get("type") == "Bot":
        intake.ignore("a button clicked by a bot")
        return
    numbers = [pr.get("number") for pr in run.get("pull_requests") or [] if isinstance(pr, dict)]
    if not numbers or not isinstance(numbers[0], int):
        intake.ignore("a button on a check run of no pull request")
        return
    intake.add_job(approval_job(data, *parsed, numbers[0]))
