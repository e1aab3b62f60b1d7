"""One review per head between `/review` and the automatic review.

`/review` runs the review pipeline inside its `command` job, which no supersede key ties to the
automatic review job of the PR. Each side therefore announces itself before it looks at the
other: the automatic job is `running` in the store before its pipeline starts, and the command
marks the head it reviews (`pr_state.CommandReview`, "checking") before it looks for a running
automatic review of that head and at the head's review record. So of two that start at the same
moment at least one sees the other, and the command decides between them: it backs off (clears
its mark) when it found the automatic review, or marks "reviewing" when it did not. An automatic
review that finds the mark still "checking" waits for that decision (a store read away) instead
of guessing; one that finds "reviewing" ends skipped. The automatic review reads the mark before
the head's record, so a `/review` that ended in between has recorded the head by then.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from app.pipelines.checks import complete_known_check
from app.pipelines.context import PipelineRun
from app.pipelines.pr_state import command_review
from app.store import Job, JobKind, JobState, Store

SETTLE_SECONDS = 10.0  # how long a command's decision may take before the automatic review goes ahead
POLL_SECONDS = 0.05


def overlap_reason(user: str) -> str:
    return f"a `/review` of this commit asked by @{user} is running"


async def running_command_review(store: Store, job: Job, *, settle_seconds: float = SETTLE_SECONDS,
                                 poll_seconds: float = POLL_SECONDS) -> str | None:
    """Who asked the `/review` of `job`'s head that is running on its PR now (the automatic review
    leaves the head to it), or None. A mark whose command job is not running (stopped, crashed,
    finished without clearing it) counts for nothing."""
    if job.pr_number is None or not job.head_sha:
        return None
    deadline = time.monotonic() + settle_seconds
    while True:
        mark = await command_review(store, job.repo, job.pr_number)
        if mark is None or mark.head_sha != job.head_sha:
            return None
        command = await store.get_job(mark.job_id)
        if (command is None or command.kind is not JobKind.command or command.state is not JobState.running
                or command.payload.get("command") != "review"):
            return None
        if mark.reviewing:
            return (command.payload.get("comment") or {}).get("author") or "someone"
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(poll_seconds)


async def leave_to_command(run: PipelineRun, user: str) -> dict[str, Any]:
    """End the automatic review skipped. It opens no check run: the command's review has its own
    `prmedic review` check run on this commit, and a newer one of the same name (even `skipped`)
    would stand in for it on the pull request. One an earlier attempt of this job opened is
    completed `skipped` (not left spinning)."""
    reason = overlap_reason(user)
    await complete_known_check(run, "skipped", f"Skipped: {reason}"[:200],
                               f"prmedic did not review this commit in this job: {reason}; that review is "
                               "the commit's review.")
    return {"skipped": reason}
