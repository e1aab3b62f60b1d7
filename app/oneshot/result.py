"""How a one-shot run ended, in the terms a terminal or a GitHub Action reads (pure): the
conclusion, the links, the cost, and the exit status.

Exit status: 0 done (also when there was nothing to do), 1 findings at or above `review.fail_on`
(the review's conclusion is `failure`), 2 a usage or configuration error (raised as `UsageError`
before any work), 3 the job failed or did not deliver what it was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.sessions.cost import cost_from_result

EXIT_DONE, EXIT_FINDINGS, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3


class UsageError(Exception):
    """The run cannot start as asked (a bad reference, missing credentials, a private repository
    without the App's settings…): one clear message, exit status 2, no traceback."""


@dataclass
class RunResult:
    """What one run produced; `result` is the job's own result as the pipeline returned it."""

    conclusion: str  # success | neutral | failure | skipped | cancelled
    exit_code: int
    review_url: str | None = None
    fix_pr_url: str | None = None
    fix_url: str | None = None  # the fix however it was delivered (a PR, a pushed commit, suggestions, a patch)
    comment_url: str | None = None
    cost_usd: float | None = None
    session_id: str | None = None
    job_id: int | None = None
    kind: str = "review"
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def outputs(self) -> dict[str, str]:
        """The values as GitHub Action outputs (empty strings for what is unknown)."""
        values = {"conclusion": self.conclusion, "review_url": self.review_url, "fix_pr_url": self.fix_pr_url,
                  "comment_url": self.comment_url, "session_id": self.session_id,
                  "cost_usd": None if self.cost_usd is None else f"{self.cost_usd:.2f}"}
        return {key: value or "" for key, value in values.items()}


# A command job's `result` words (`app/pipelines/commands/`): what it delivered, and where there was
# nothing for it to do (a refusal, a closed pull request…): neither is a failure of the run.
DELIVERED = frozenset({"answered", "described", "proposed", "reviewed", "paused", "resumed", "stopped",
                       "already_running", "already_reviewed"})
NOTHING_TO_DO = frozenset({"skipped", "closed", "refused", "disabled", "unknown", "not_available", "usage"})


def _skipped(result: dict[str, Any]) -> bool:
    return bool(result.get("skipped")) or result.get("result") in NOTHING_TO_DO


def conclusion_and_exit(kind: str, result: dict[str, Any] | None, *, failed: bool = False,
                        cancelled: bool = False) -> tuple[str, int]:
    """The run's conclusion and exit status from the job's end (pure).

    - failed (the pipeline raised, no retry left): `neutral`, 3 — a run that could not finish
      claims nothing about the pull request, as its check run says;
    - cancelled: `cancelled`, 3;
    - skipped (nothing to do: a closed pull request, nothing failing for `fix`): `skipped`, 0;
    - review: its check-run conclusion; `failure` (findings at or above `review.fail_on`) → 1;
      a review that did not finish otherwise → 3;
    - a command: `success` when it delivered (`ok`, or a delivering `result` for a command from a
      comment), `failure`/1 when its `/review` failed the check, else `neutral`, 3 (no answer, no
      fix, …); a refusal or a command with nothing to do is `skipped`.
    """
    if cancelled:
        return "cancelled", EXIT_FAILED
    if failed or result is None:
        return "neutral", EXIT_FAILED
    if _skipped(result):
        return "skipped", EXIT_DONE
    if kind == "review":
        conclusion = result.get("conclusion") or "neutral"
        if conclusion == "failure":
            return conclusion, EXIT_FINDINGS
        return conclusion, EXIT_FAILED if result.get("unfinished") else EXIT_DONE
    if (result.get("review") or {}).get("conclusion") == "failure":  # `/review` found what fails the check
        return "failure", EXIT_FINDINGS
    if result.get("ok", result.get("result") in DELIVERED):
        return "success", EXIT_DONE
    return "neutral", EXIT_FAILED


def run_result(kind: str, result: dict[str, Any] | None, *, job_id: int | None = None, error: str | None = None,
               cancelled: bool = False) -> RunResult:
    """The `RunResult` of a job of `kind` that ended with `result` (or `error`) (pure)."""
    body = dict(result or {})
    conclusion, code = conclusion_and_exit(kind, result, failed=error is not None, cancelled=cancelled)
    fix_url = body.get("fix_url")
    return RunResult(
        conclusion=conclusion, exit_code=code, review_url=body.get("review_url"),
        fix_pr_url=fix_url if body.get("delivered_as") == "pull_request" else None, fix_url=fix_url,
        comment_url=body.get("answer_url"), cost_usd=cost_from_result(body), session_id=body.get("session_id"),
        job_id=job_id, kind=kind, result=body, error=error)
