"""The workflow's event → the job it asks for, through the same routing the App's webhooks go
through (`app.routing.route`), so an Action run and an App delivery decide alike.

What differs in a workflow: the event file is the webhook payload without an `installation` (the
workflow's token stands for it: `TOKEN_INSTALLATION`); `pull_request_target` carries a
`pull_request` payload; the mention that runs a command is the `trigger_phrase` input
(`@prmedic`), slash-commands always run; and `mode` asks for a review, fix or describe on a pull
request event whatever its action. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gidgethub import sansio

from app.oneshot.github import TOKEN_INSTALLATION
from app.oneshot.result import UsageError
from app.routing import Intake, route
from app.routing.envelope import PayloadError, decode_payload
from app.routing.reviews import review_job
from app.store.models import NewJob

# Workflow events prmedic acts on, and the webhook event each one's payload is.
EVENTS = {"pull_request": "pull_request", "pull_request_target": "pull_request", "issue_comment": "issue_comment",
          "pull_request_review_comment": "pull_request_review_comment", "check_run": "check_run",
          "workflow_run": "workflow_run"}
PULL_REQUEST_EVENTS = ("pull_request", "pull_request_target")


@dataclass(frozen=True)
class Routed:
    """The job the event asks for, or why there is none (`reason`)."""

    job: NewJob | None
    reason: str = ""
    label: str = ""  # what the event was, for the summary: "pull_request (opened) on octo-org/widgets#2"


def describe_event(event_name: str, data: dict[str, Any]) -> str:
    """One line naming the event, its action and what it is about (pure)."""
    action = data.get("action")
    repo = (data.get("repository") or {}).get("full_name") or "?"
    number = ((data.get("pull_request") or data.get("issue") or {}).get("number"))
    run = data.get("workflow_run") or data.get("check_run") or {}
    target = f"{repo}#{number}" if number else (f"{repo}@{str(run.get('head_sha'))[:7]}" if run else repo)
    return f"`{event_name}`" + (f" ({action})" if action else "") + f" on {target}"


def parse_event(body: bytes) -> dict[str, Any]:
    """The routed fields of the event file, decoded as the server decodes a delivery."""
    try:
        data = decode_payload(body)
    except PayloadError as exc:
        raise UsageError(f"the event file (GITHUB_EVENT_PATH) is not a webhook payload: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError("the event file (GITHUB_EVENT_PATH) is not a JSON object")
    return data


async def route_event(event_name: str, data: dict[str, Any], *, mention: str, mode: str = "auto",
                      app_id: int | None = None) -> Routed:
    """The job `data` (a `event_name` event) asks for: the App's routing with the workflow's token
    as the installation, then `mode`'s override on a pull request event."""
    label = describe_event(event_name, data)
    webhook_event = EVENTS.get(event_name)
    if webhook_event is None:
        return Routed(None, f"prmedic does not act on `{event_name}` events (it acts on "
                            f"{', '.join(f'`{e}`' for e in EVENTS)})", label)
    if mode != "auto" and event_name not in PULL_REQUEST_EVENTS:
        return Routed(None, f"`mode: {mode}` is for pull request events; this run is for `{event_name}`", label)
    data = {**data, "installation": {"id": TOKEN_INSTALLATION}}
    # The routers' "own event" and mention rules read the App's bot login: in a workflow, the
    # mention of `trigger_phrase` stands for it.
    intake = Intake(app_id=app_id or 0, bot_login=f"{mention}[bot]")
    try:
        await route(sansio.Event(data, event=webhook_event, delivery_id="action"), intake)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise UsageError(f"the `{event_name}` event lacks a field prmedic needs: {exc!s}") from None
    job = intake.jobs[0] if intake.jobs else None
    if mode != "auto":
        return _override(mode, data, job, intake, label)
    if job is None:
        return Routed(None, "; ".join(intake.ignored) or "the event asks for nothing", label)
    return Routed(job, label=label)


def _override(mode: str, data: dict[str, Any], job: NewJob | None, intake: Intake, label: str) -> Routed:
    """`mode: review | fix | describe` on a pull request event: the pull request's review job, made
    whatever the action was (`prepared_job` in `app.action.run` turns it into the command `mode`
    names). The routing's own rules still come first: an event of the App itself, or a closed
    pull request, asks for nothing."""
    if job is None and any("caused by this App" in reason for reason in intake.ignored):
        return Routed(None, "; ".join(intake.ignored), label)
    if (data.get("pull_request") or {}).get("state") == "closed":
        return Routed(None, "closed pull request", label)
    return Routed(job or review_job(data, trigger=str(data.get("action") or "opened")), label=label)
