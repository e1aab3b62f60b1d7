"""installation and installation_repositories events → kept in the store."""

from __future__ import annotations

from gidgethub import routing, sansio

from app.routing.intake import Intake
from app.store.models import InstallationChange

router = routing.Router()


def _names(repos: list | None) -> list[str]:
    return [r["full_name"] for r in repos or [] if isinstance(r, dict) and "full_name" in r]


@router.register("installation")
async def on_installation(event: sansio.Event, intake: Intake) -> None:
    data = event.data
    installation = data["installation"]
    account = installation.get("account") or {}
    action = data.get("action")
    intake.installations.append(InstallationChange(
        installation_id=installation["id"],
        account=account.get("login"),
        account_type=account.get("type"),
        active=action != "deleted",
        suspended=action == "suspend" or (action != "unsuspend" and bool(installation.get("suspended_at"))),
        repository_selection=installation.get("repository_selection"),
        repositories_added=_names(data.get("repositories")) if action == "created" else [],
        repositories_removed=_names(data.get("repositories")) if action == "deleted" else [],
    ))


@router.register("installation_repositories")
async def on_installation_repositories(event: sansio.Event, intake: Intake) -> None:
    data = event.data
    installation = data["installation"]
    account = installation.get("account") or {}
    intake.installations.append(InstallationChange(
        installation_id=installation["id"],
        account=account.get("login"),
        account_type=account.get("type"),
        repository_selection=data.get("repository_selection"),
        repositories_added=_names(data.get("repositories_added")),
        repositories_removed=_names(data.get("repositories_removed")),
    ))
