"""What prmedic remembers about a pull request between jobs, in the store's meta table: shared by
the review pipeline (which obeys it) and the commands (which set it)."""

from __future__ import annotations

from dataclasses import dataclass

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


# -- a `/review` command running on a head ------------------------------------------------------
# `/review` runs the review pipeline inside its command job, which has no supersede key: the
# automatic review of the same head learns of it from this mark. The command writes it in two
# steps (before it looks for a running automatic review, then once it has decided to review), so
# that a command and an automatic review starting at the same moment never both review the head.

def command_review_key(repo: str, pr_number: int) -> str:
    return f"command_review:{repo}#{pr_number}"


@dataclass(frozen=True)
class CommandReview:
    """The mark of a `/review` command job on a PR: the head it reviews, and whether it has decided
    to review it (`reviewing`) or is still looking for a running automatic review of that head."""

    head_sha: str
    job_id: int
    reviewing: bool

    def encode(self) -> str:
        return f"{self.head_sha}:{self.job_id}:{'reviewing' if self.reviewing else 'checking'}"

    @classmethod
    def decode(cls, value: str | None) -> CommandReview | None:
        head, _, rest = (value or "").partition(":")
        job_id, _, phase = rest.partition(":")
        if not head or not job_id.isdigit() or phase not in ("checking", "reviewing"):
            return None
        return cls(head, int(job_id), phase == "reviewing")


async def command_review(store: Store, repo: str, pr_number: int) -> CommandReview | None:
    """The mark of the `/review` command last started on this PR, if it has not cleared it."""
    return CommandReview.decode(await store.get_meta(command_review_key(repo, pr_number)))


async def mark_command_review(store: Store, repo: str, pr_number: int, mark: CommandReview) -> None:
    await store.set_meta(command_review_key(repo, pr_number), mark.encode())


async def clear_command_review(store: Store, repo: str, pr_number: int, job_id: int) -> None:
    """Remove the mark of `job_id` (a mark a later `/review` wrote stays)."""
    mark = await command_review(store, repo, pr_number)
    if mark is not None and mark.job_id == job_id:
        await store.set_meta(command_review_key(repo, pr_number), "")
