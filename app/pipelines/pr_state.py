"""What prmedic remembers about a pull request between jobs, in the store's meta table: shared by
the review pipeline (which obeys it) and the commands (which set it)."""

from __future__ import annotations

from app.store import Store


def paused_key(repo: str, pr_number: int) -> str:
    return f"paused:{repo}#{pr_number}"


def stopped_by_key(job_id: int) -> str:
    return f"stopped_by:job:{job_id}"


async def paused_by(store: Store, repo: str, pr_number: int | None) -> str | None:
    """Who paused automatic reviews on this PR (`/pause`), or None when they are not paused."""
    if pr_number is None:
        return None
    return await store.get_meta(paused_key(repo, pr_number)) or None


async def set_paused(store: Store, repo: str, pr_number: int, by: str | None) -> None:
    """Pause automatic reviews on the PR (`by`: who asked), or resume them (`by=None`)."""
    await store.set_meta(paused_key(repo, pr_number), by or "")


async def stopped_by(store: Store, job_id: int) -> str | None:
    """Who stopped this job with `/stop`, if a command did."""
    return await store.get_meta(stopped_by_key(job_id)) or None


PAUSED_REASON = "automatic reviews are paused on this PR (/resume)"
