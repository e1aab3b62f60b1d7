"""pull_request events → review jobs."""

from __future__ import annotations

from gidgethub import routing, sansio

from app.routing.fields import installation_id, pull_request_fields, repository_fields
from app.routing.intake import Intake
from app.store.models import JobKind, NewJob

router = routing.Router()

REVIEW_ACTIONS = ("opened", "reopened", "synchronize", "ready_for_review")


def review_job(data: dict, *, trigger: str) -> NewJob:
    repo = repository_fields(data["repository"])
    pr = pull_request_fields(data["pull_request"])
    payload = {"trigger": trigger, "repository": repo, "pull_request": pr, "sender": (data.get("sender") or {}).get("login")}
    if trigger == "synchronize":
        payload["before"] = data.get("before")
        payload["after"] = data.get("after")
    return NewJob.model_construct(  # built from decoded, typed fields: no second validation
        kind=JobKind.review,
        repo=repo["full_name"],
        installation_id=installation_id(data),
        pr_number=pr["number"],
        head_sha=pr["head_sha"],
        supersede_key=f"review:{repo['full_name']}#{pr['number']}",
        payload=payload,
    )


async def on_pull_request(event: sansio.Event, intake: Intake) -> None:
    # Drafts are queued too: the repository's `review.drafts` decides (off by default).
    data = event.data
    if data["pull_request"].get("state") == "closed":
        intake.ignore("closed pull request")
        return
    intake.add_job(review_job(data, trigger=data["action"]))


for _action in REVIEW_ACTIONS:
    router.add(on_pull_request, "pull_request", action=_action)
