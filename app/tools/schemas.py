"""Pydantic input models of the custom tools (DESIGN §3.3).

Their JSON schemas are what the agent definitions send as `input_schema`; the session runner
validates every `agent.custom_tool_use` against them. Names and fields are the contract: add
optional fields if needed, never rename.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ReportProgressInput(_Input):
    """Report progress; shown on the pull request's check run."""

    message: str = Field(min_length=1, max_length=2000, description="What is happening now, one or two sentences.")
    done: list[str] = Field(default_factory=list, max_length=50, description="Steps finished so far.")
    todo: list[str] = Field(default_factory=list, max_length=50, description="Steps still to do.")


class ReviewComment(_Input):
    path: str = Field(min_length=1, description="File path relative to the repository root.")
    line: int = Field(ge=1, description="Line in the file (on `side`) the comment is about.")
    start_line: int | None = Field(None, ge=1, description="First line of a multi-line comment.")
    side: Literal["RIGHT", "LEFT"] = Field("RIGHT", description="RIGHT: the new version; LEFT: the old one.")
    severity: Literal["blocker", "major", "minor", "nit"]
    body: str = Field(min_length=1, description="The comment (Markdown).")
    suggestion: str | None = Field(None, description="Replacement text for the line(s), offered as a suggestion.")

    @model_validator(mode="after")
    def _range(self) -> "ReviewComment":
        if self.start_line is not None and self.start_line > self.line:
            raise ValueError("start_line must not be after line")
        return self


class TestRun(_Input):
    __test__ = False  # not a pytest test class

    command: str = Field(min_length=1, max_length=500, description="The command the tester ran, as typed.")
    outcome: Literal["passed", "failed", "error", "skipped"] = Field(
        description="passed/failed: the tests ran; error: the command could not run them; skipped: not run.")
    details: str | None = Field(None, max_length=2000, description="One line, e.g. '212 passed' or the failing test.")


class PublishReviewInput(_Input):
    """Publish the review: one summary and inline comments on the diff."""

    summary: str = Field(min_length=1, description="The review summary (Markdown).")
    event: Literal["COMMENT", "REQUEST_CHANGES", "APPROVE"] = Field(
        "COMMENT", description="APPROVE only if the repository config allows it."
    )
    comments: list[ReviewComment] = Field(default_factory=list, max_length=100)
    tests_run: list[TestRun] = Field(default_factory=list, max_length=50,
                                     description="The test commands the tester ran and their outcomes.")


class ProposeFixInput(_Input):
    """Propose a fix as a unified diff; the app checks it and opens a fix PR (or pushes)."""

    title: str = Field(min_length=1, max_length=256)
    body: str = Field("", description="What the fix does and why (Markdown).")
    patch: str = Field(min_length=1, description="A unified diff as `git diff` writes it.")


class ReadCiLogInput(_Input):
    """Read a slice of a failing CI job's log."""

    job_id: int | None = Field(None, description="The Actions job id.")
    check_run_id: int | None = Field(None, description="The check run id (instead of job_id).")
    start_line: int = Field(1, ge=1)
    max_lines: int = Field(400, ge=1, le=5000)

    @model_validator(mode="after")
    def _one_id(self) -> "ReadCiLogInput":
        if (self.job_id is None) == (self.check_run_id is None):
            raise ValueError("give exactly one of job_id or check_run_id")
        return self


class ReplyInput(_Input):
    """Post (or update) the bot's answer comment on the pull request."""

    body: str = Field(min_length=1, description="The answer (Markdown).")


TOOL_INPUTS: dict[str, type[BaseModel]] = {
    "report_progress": ReportProgressInput,
    "publish_review": PublishReviewInput,
    "propose_fix": ProposeFixInput,
    "read_ci_log": ReadCiLogInput,
    "reply": ReplyInput,
}
