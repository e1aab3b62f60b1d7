"""A fix waiting for approval, in words and rules (pure): the check run's buttons and summary, the
PR's fix comment, what a decision does (`plan`) and what the check run and the answer say after it.
The I/O is in `approval.py`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.routing.approvals import action_identifier
from app.routing.fixes import fix_branch_name
from app.store import FixProposal

AWAITING = "awaiting_approval"
HOW_TO_DECIDE = ("Someone with write permission on this repository decides, with the buttons on the `prmedic fix` "
                 "check run (**Apply fix**, **Open as PR**, **Discard**) or a comment on the pull request: `/apply` "
                 "pushes the fix onto the pull request's branch, `/apply pr` opens it as a pull request instead, "
                 "`/discard` deletes it.")
NOTHING_WAITING = ("No fix waits for approval on this pull request: there is nothing to apply or discard. A fix "
                   "waits for approval when the repository sets `fix.approval: required` (the default with "
                   "`fix.delivery: push`).")

# What happens to a fix awaiting approval when someone decides:
#   apply / open_pr / discard: do it; applied: the PR's head is already the fix commit (an earlier try
#   of a decision pushed it), so it counts as applied; stale / closed: nothing is applied, the PR moved
#   on or was closed; already: it was decided before, nothing is done twice.
Step = Literal["apply", "open_pr", "discard", "applied", "stale", "closed", "already"]


def approval_branch(pr_number: int, root_sha: str, job_id: int) -> str:
    """prmedic's branch for a fix awaiting approval: one per fix job, never the PR's own branch."""
    return f"{fix_branch_name(pr_number, root_sha)}-approval-{job_id}"


def approval_actions(proposal_id: int) -> list[dict[str, str]]:
    """The check run's three buttons (GitHub: label ≤ 20 characters, description ≤ 40, identifier ≤ 20)."""
    return [
        {"label": "Apply fix", "description": "Push the fix onto the PR's branch",
         "identifier": action_identifier("apply", proposal_id)},
        {"label": "Open as PR", "description": "Open the fix as a pull request",
         "identifier": action_identifier("open_pr", proposal_id)},
        {"label": "Discard", "description": "Delete the fix; change nothing",
         "identifier": action_identifier("discard", proposal_id)},
    ]


def commit_url(pr_url: str, sha: str) -> str:
    """The web page of a commit of the PR's repository (`…/pull/7` → `…/commit/<sha>`)."""
    return f"{pr_url.rsplit('/pull/', 1)[0]}/commit/{sha}"


@dataclass(frozen=True)
class Waiting:
    """A fix committed and waiting: what its check run and comment show."""

    fix_sha: str
    branch: str
    head_ref: str
    commit_url: str
    title: str
    body: str
    changes: str  # "1 file(s), +1 −1"


def waiting_title() -> str:
    return "A fix waits for approval: nothing applied yet"


def waiting_summary(w: Waiting, *, purpose: str = "a fix") -> str:
    return (f"prmedic committed {purpose} as [{w.fix_sha[:7]}]({w.commit_url}) on its own branch "
            f"`{w.branch}` ({w.changes}). **Nothing was applied yet**: the pull request's branch `{w.head_ref}` "
            f"is unchanged.\n\n**{w.title}**\n\n{w.body}\n\n{HOW_TO_DECIDE}")


def waiting_comment(w: Waiting, why: str) -> str:
    """The PR's fix comment while the fix waits (`why`: the attempt it was)."""
    return (f"### prmedic has a fix waiting for approval\n\nprmedic committed a fix as [{w.fix_sha[:7]}]"
            f"({w.commit_url}) on its branch `{w.branch}` ({why}); **nothing was applied yet**.\n\n"
            f"**{w.title}**\n\n{w.body}\n\n{HOW_TO_DECIDE}\n")


def plan(decision: str, *, outcome: str, pr_open: bool, pr_head: str, base_sha: str, fix_sha: str | None) -> Step:
    """What a decision on a fix does, from the fix's record and the pull request now."""
    if outcome != AWAITING:
        return "already"
    if decision == "discard":
        return "discard"
    if fix_sha is not None and pr_head == fix_sha:
        return "applied"
    if not pr_open:
        return "closed"
    if pr_head != base_sha:
        return "stale"
    return "open_pr" if decision == "open_pr" else "apply"


def recorded(step: Step) -> tuple[str, str | None]:
    """(outcome, delivery) a decision records; `pending`: delivered, its CI still to come."""
    return {"apply": ("pending", "push"), "applied": ("pending", "push"), "open_pr": ("pending", "pull_request"),
            "discard": ("discarded", None), "stale": ("stale", None), "closed": ("stale", None)}[step]


def decided_check(step: Step, *, by: str, head_ref: str, fix_sha: str, pr_head: str,
                  fix_pr: tuple[int, str] | None = None) -> tuple[str, str, str]:
    """(conclusion, title, summary) of the fix's check run after the decision."""
    if step in ("apply", "applied"):
        return ("success", f"Fix applied by @{by}",
                (f"@{by} applied the fix: commit {fix_sha[:7]} is now the head of `{head_ref}`. prmedic watches "
                "its CI."))
    if step == "open_pr":
        number, url = fix_pr or (0, "")
        return ("neutral", f"Opened as #{number}",
                (f"@{by} chose to open the fix as a pull request: [#{number}]({url}), onto `{head_ref}`. Nothing "
                "was pushed to the pull request's branch; merging the fix pull request applies it."))
    if step == "discard":
        return ("neutral", f"Discarded by @{by}",
                f"@{by} discarded the fix: its branch is deleted and nothing was applied.")
    if step == "closed":
        return ("neutral", "Not applied: the pull request is closed",
                f"@{by} asked for the fix, but the pull request is closed: nothing was applied.")
    return ("neutral", "Not applied: the head moved",
            (f"The pull request's head moved to {pr_head[:7]} since the fix was made, so @{by}'s decision applied "
            "nothing: the fix no longer fits it. Its branch is deleted; a failing check on the new head starts a "
            "new fix."))


def decided_answer(step: Step, *, by: str, head_ref: str, fix_sha: str, pr_head: str, commit: str,
                   fix_pr: tuple[int, str] | None = None) -> str:
    """The answer on the PR after the decision."""
    if step in ("apply", "applied"):
        return (f"Applied the fix (asked by @{by}): [commit `{fix_sha[:7]}`]({commit}) is now the head of "
                f"`{head_ref}`.")
    if step == "open_pr":
        number, url = fix_pr or (0, "")
        return f"Opened the fix as [#{number}]({url}) onto `{head_ref}` (asked by @{by}): merge it to apply it."
    if step == "discard":
        return f"Discarded the fix [`{fix_sha[:7]}`]({commit}) (asked by @{by}): nothing was applied."
    if step == "closed":
        return "Nothing applied: the pull request is closed."
    return (f"Nothing applied: the pull request's head moved to `{pr_head[:7]}` since the fix was made, so the fix "
            "no longer fits it. A failing check on the new head starts a new fix.")


def decided_as(p: FixProposal) -> str:
    """How a fix no longer awaiting approval was decided, in words."""
    if p.outcome == "discarded":
        return "discarded"
    if p.outcome == "stale":
        return "not applied (the pull request had moved on)"
    if p.delivery == "push":
        return "applied"
    if p.delivery == "pull_request":
        return f"opened as a pull request ({p.url})" if p.url else "opened as a pull request"
    return p.outcome


def already_answer(p: FixProposal, by: str | None) -> str:
    who = f" by @{by}" if by else ""
    return f"Nothing done: this fix (`{(p.fix_sha or '')[:7]}`) was already {decided_as(p)}{who}."
