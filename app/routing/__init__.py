"""All features' routers, combined in one place."""

from __future__ import annotations

from gidgethub import routing, sansio

from app.routing import approvals, commands, fixes, installations, reviews
from app.routing.approvals import is_requested_action
from app.routing.fields import is_own_event
from app.routing.fixes import CI_EVENTS
from app.routing.intake import Intake

router = routing.Router(reviews.router, fixes.router, commands.router, approvals.router, installations.router)


async def route(event: sansio.Event, intake: Intake) -> Intake:
    """Decide what one delivery creates; the handlers only append to `intake`."""
    if not isinstance(event.data, dict):
        intake.ignore("payload is not a JSON object")
        return intake
    # CI results on commits the bot pushed (fix branches, pushed fixes) are what fix follow-ups
    # are made of: for them only the App's own check runs count as its own events. A button
    # clicked on the App's own check run is the clicker's doing: only its sender counts.
    clicked = is_requested_action(event.event, event.data)
    bot_login = None if event.event in CI_EVENTS and not clicked else intake.bot_login
    data = {k: v for k, v in event.data.items() if k not in ("check_run", "check_suite")} if clicked else event.data
    if event.event not in ("installation", "installation_repositories") and is_own_event(
        data, app_id=intake.app_id, bot_login=bot_login
    ):
        intake.ignore("event caused by this App")
        return intake
    await router.dispatch(event, intake)
    if not intake.records_anything and not intake.ignored:
        intake.ignore("no handler for this event or action")
    return intake


__all__ = ["Intake", "route", "router"]
