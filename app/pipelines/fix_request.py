"""What a fix job is asked to do (`FixRequest`), shared by the fix pipeline (which does the work)
and the commands (which ask for it, through a `FixRunner` wired in `app.runtime`, since one
pipeline feature does not import another).

A CI fix job repairs the failing checks of a head commit. A slash-command asks for one of three
things on the PR's head: a repair (`/fix`), a change the user describes (`/fix <instructions>`,
also when nothing failed), or tests (`/test [what]`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, model_validator

if TYPE_CHECKING:
    from app.pipelines.context import JobContext

Purpose = Literal["repair", "change", "tests"]
Trigger = Literal["ci", "command"]

# What each purpose's result is called where people read it: in titles ("Tests proposed"), and
# in sentences ("prmedic proposed tests").
NOUN: dict[str, str] = {"repair": "fix", "change": "change", "tests": "tests"}
PHRASE: dict[str, str] = {"repair": "a fix", "change": "the change", "tests": "tests"}
SLASH: dict[str, str] = {"repair": "/fix", "change": "/fix", "tests": "/test"}


class FixRequest(BaseModel):
    """What to fix: a head commit of a repository, and the PR if known; for a command, what it asks."""

    repo: str
    head_sha: str
    pr_number: int | None = None
    pr_candidates: list[int] = []
    head_branch: str | None = None
    run_ids: list[int] = []
    follow_up: bool = False
    trigger: Trigger = "ci"
    requested_by: str | None = None
    purpose: Purpose = "repair"
    instructions: str | None = None  # `/fix <instructions>`, `/test <what>`: untrusted, fenced in the task
    budget_usd: float | None = None  # the session's budget; None: `budget.fix_usd`

    @model_validator(mode="after")
    def _consistent(self) -> FixRequest:
        if self.instructions is not None and not self.instructions.strip():
            self.instructions = None
        if self.purpose == "change" and self.instructions is None:
            raise ValueError("a change needs instructions (`/fix <instructions>`)")
        if self.purpose != "repair" and self.trigger != "command":
            raise ValueError(f"only a command asks for {self.purpose!r}; CI asks for repairs")
        return self

    @property
    def slash(self) -> str:
        """The command that asked (`/fix`, `/test`)."""
        return SLASH[self.purpose]

    @classmethod
    def from_job(cls, job: Any) -> FixRequest:
        """A CI fix job's request (`app.routing.fixes.fix_job`'s payload)."""
        p = job.payload
        failure = p.get("failure") or {}
        return cls(repo=job.repo, head_sha=job.head_sha or p.get("head_sha"), pr_number=job.pr_number,
                   pr_candidates=[pr["number"] for pr in p.get("pull_requests") or []],
                   head_branch=p.get("head_branch"),
                   run_ids=[failure["id"]] if failure.get("source") == "workflow_run" else [],
                   follow_up=bool(p.get("follow_up")))


Decision = Literal["apply", "open_pr", "discard"]


class FixDecision(BaseModel):
    """A person's decision on a fix waiting for approval (`fix.approval`): `/apply` (`apply`),
    `/apply pr` (`open_pr`), `/discard`, or the same from a button on the fix's check run. Whoever
    decides has passed the command's permission check."""

    repo: str
    pr_number: int
    decision: Decision
    decided_by: str
    proposal_id: int | None = None  # the fix a button names; None: the PR's newest fix awaiting approval
    check_run_id: int | None = None  # the check run whose button was clicked


# The fix pipeline's entry for an explicit request or decision (`app.pipelines.fix.pipeline.run_fix`).
FixRunner = Callable[["JobContext", "FixRequest | FixDecision"], Awaitable[dict[str, Any]]]


def nothing_failing(head_sha: str) -> str:
    """The skip reason of a plain `/fix` on a head with no failing check."""
    return f"no failing checks on `{head_sha[:7]}`: say what to change with `/fix <instructions>`"
