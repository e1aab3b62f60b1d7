"""The custom-tool contract (docs/architecture.md, "Custom tools"): the input models, and
`CUSTOM_TOOLS`, the one table of every tool (name → input model, description, handler) that
definitions and registries are built from.

The models' JSON schemas are what the agent definitions send as `input_schema`; the session runner
validates every `agent.custom_tool_use` against them. Names and fields are the contract: add
optional fields if needed, never rename.

Strict about meaning, tolerant about form: agents that know GitHub's API send GitHub's field
names. `split_unknown` runs before validation: a model's `aliases` (a GitHub name meaning exactly
the same thing) are renamed to the field, and every other key the contract does not know is
dropped and reported as ignored, at any depth, instead of refusing the call. Enumerated values
are accepted in any letter case.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Input(BaseModel):
    # "forbid" keeps `additionalProperties: false` in the schema the agent reads; unknown keys never
    # reach validation (split_unknown drops and reports them).
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    aliases: ClassVar[dict[str, str]] = {}  # another name → the field it means (used only when the field is absent)


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The one input model inside a field's type (`Model`, `list[Model]`, `Model | None`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    found = {m for arg in typing.get_args(annotation) if (m := _nested_model(arg)) is not None}
    return found.pop() if len(found) == 1 else None


def split_unknown(model: type[BaseModel], raw: Any, tool: str, path: str = "") -> tuple[Any, list[str]]:
    """`raw` with aliases renamed and unknown keys removed (recursively), and one line per removed key:
    `comments.2.position — not a field of publish_review`. Values are left for validation to judge."""
    if not isinstance(raw, dict):
        return raw, []
    fields = model.model_fields
    aliases: dict[str, str] = getattr(model, "aliases", {})
    cleaned: dict[str, Any] = {}
    ignored: list[str] = []
    for key, value in raw.items():
        name = key
        if key not in fields and key in aliases:
            name = aliases[key]
            if name in raw:
                ignored.append(f"{path}{key} — `{name}` is given, and {key} means the same here")
                continue
        if name not in fields:
            ignored.append(f"{path}{key} — not a field of {tool}")
            continue
        sub = _nested_model(fields[name].annotation)
        if sub is not None and isinstance(value, list):
            items = [split_unknown(sub, item, tool, f"{path}{name}.{i}.") for i, item in enumerate(value)]
            value = [item for item, _ in items]
            ignored += [line for _, lines in items for line in lines]
        elif sub is not None and isinstance(value, dict):
            value, lines = split_unknown(sub, value, tool, f"{path}{name}.")
            ignored += lines
        cleaned[name] = value
    return cleaned, ignored


class ReportProgressInput(_Input):
    """Report progress; shown on the pull request's check run."""

    message: str = Field(min_length=1, max_length=2000, description="What is happening now, one or two sentences.")
    done: list[str] = Field(default_factory=list, max_length=50, description="Steps finished so far.")
    todo: list[str] = Field(default_factory=list, max_length=50, description="Steps still to do.")


class ReviewComment(_Input):
    path: str = Field(min_length=1, description="File path relative to the repository root.")
    line: int = Field(ge=1, description="Line in the file (on `side`) the comment is about; the last line of a range.")
    start_line: int | None = Field(None, ge=1, description="First line of a multi-line comment.")
    side: Literal["RIGHT", "LEFT"] = Field("RIGHT", description="RIGHT: the new version; LEFT: the old one.")
    start_side: Literal["RIGHT", "LEFT"] | None = Field(
        None, description="Side of start_line (default: `side`). LEFT with side RIGHT: a range from deleted lines "
                          "into the lines that replace them, in one hunk.")
    severity: Literal["blocker", "major", "minor", "nit"]
    body: str = Field(min_length=1, description="The comment (Markdown).")
    suggestion: str | None = Field(None, description="Replacement text for the line(s), offered as a suggestion.")

    @field_validator("side", "start_side", mode="before")
    @classmethod
    def _side_case(cls, value: Any) -> Any:
        return _upper(value)

    @field_validator("severity", mode="before")
    @classmethod
    def _severity_case(cls, value: Any) -> Any:
        return _lower(value)

    @model_validator(mode="after")
    def _range(self) -> "ReviewComment":
        if self.start_line is None:
            if self.start_side not in (None, self.side):
                raise ValueError("start_side is given without start_line")
        elif (self.start_side or self.side) == self.side and self.start_line > self.line:
            raise ValueError("start_line must not be after line")
        return self


class TestRun(_Input):
    __test__ = False  # not a pytest test class

    command: str = Field(min_length=1, max_length=500, description="The command the tester ran, as typed.")
    outcome: Literal["passed", "failed", "error", "skipped"] = Field(
        description="passed/failed: the tests ran; error: the command could not run them; skipped: not run.")
    details: str | None = Field(None, max_length=2000, description="One line, e.g. '212 passed' or the failing test.")

    @field_validator("outcome", mode="before")
    @classmethod
    def _outcome_case(cls, value: Any) -> Any:
        return _lower(value)


class PublishReviewInput(_Input):
    """Publish the review: one summary and inline comments on the diff."""

    summary: str = Field(min_length=1, description="The review summary (Markdown).")
    event: Literal["COMMENT", "REQUEST_CHANGES", "APPROVE"] = Field(
        "COMMENT", description="APPROVE only if the repository config allows it."
    )
    comments: list[ReviewComment] = Field(default_factory=list, max_length=100)
    tests_run: list[TestRun] = Field(default_factory=list, max_length=50,
                                     description="The test commands the tester ran and their outcomes.")

    aliases: ClassVar[dict[str, str]] = {"body": "summary"}  # GitHub's name for a review's text

    @field_validator("event", mode="before")
    @classmethod
    def _event_case(cls, value: Any) -> Any:
        return _upper(value)


class ProposeFixInput(_Input):
    """Propose a fix as a unified diff; the app checks it and opens a fix PR (or pushes)."""

    title: str = Field(min_length=1, max_length=256)
    body: str = Field("", description="What the fix does and why (Markdown).")
    patch: str = Field(min_length=1, description="A unified diff as `git diff` writes it.")
    verify_commands: list[str] = Field(
        default_factory=list, max_length=10,
        description="The command(s) that show the fix works, exactly as you ran them in the container: the failing "
                    "CI command first (e.g. `pytest -q tests/test_calc.py`). An independent verifier runs them at the "
                    "fix commit before anything is delivered.")

    @field_validator("verify_commands")
    @classmethod
    def _commands(cls, commands: list[str]) -> list[str]:
        cleaned = [c.strip() for c in commands]
        for command in cleaned:
            if not command or len(command) > 1000 or "\n" in command:
                raise ValueError("each command is one non-empty line of at most 1000 characters")
        return list(dict.fromkeys(cleaned))


class VerifiedCommand(_Input):
    command: str = Field(min_length=1, max_length=1000, description="The command, exactly as run.")
    exit_code: int = Field(strict=True, description="Its exit status (0: success).")
    output_tail: str = Field("", max_length=20_000, description="The last lines of its output (at most ~40).")

    aliases: ClassVar[dict[str, str]] = {"cmd": "command", "exit_status": "exit_code", "output": "output_tail"}


class ReportVerificationInput(_Input):
    """The verifier's report: each command run at the fix commit, and whether the fix holds."""

    passed: bool = Field(strict=True, description="true only if every command exited 0 and showed the fix works.")
    commands: list[VerifiedCommand] = Field(min_length=1, max_length=30,
                                            description="Every command you ran to verify, in order.")

    @model_validator(mode="after")
    def _consistent(self) -> ReportVerificationInput:
        failed = [c.command for c in self.commands if c.exit_code != 0]
        if self.passed and failed:
            raise ValueError(f"passed is true but {failed[0]!r} exited non-zero; report passed: false")
        return self


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


class WriteDescriptionInput(_Input):
    """Write the pull request's description (`/describe`)."""

    body: str = Field(min_length=1, description="The description (Markdown), without a title.")


# -- the contract: one entry per custom tool ---------------------------------------------------


@dataclass(frozen=True)
class CustomTool:
    name: str
    input_model: type[BaseModel]
    description: str  # what the agent reads; the input schema adds the per-field descriptions
    handler: str  # "module:function", an async (ToolContext, input) -> str
    needs: str | None = None  # the ToolContext attribute the handler works on; None there → refused
    instead: str = ""  # the refusal's advice, when `needs` is absent

    def param(self) -> dict[str, Any]:
        """The `tools[]` entry of an agent definition; the input schema is the model's JSON schema."""
        schema = self.input_model.model_json_schema()
        schema.pop("title", None)
        return {"type": "custom", "name": self.name, "description": self.description, "input_schema": schema}


CUSTOM_TOOLS: dict[str, CustomTool] = {tool.name: tool for tool in (
    CustomTool(
        "report_progress", ReportProgressInput,
        "Update the pull request's check run with what you are doing. Call it when you have a plan, at real "
        "milestones (e.g. 'tests reproduced the failure'), and at the end; not for every step. It posts no comment "
        "on the pull request.",
        "app.tools.progress:report_progress"),
    CustomTool(
        "publish_review", PublishReviewInput,
        "Publish the one review of this run: a short Markdown summary plus inline comments, each anchored on a line "
        "of the pull request's diff with a severity. Call it at most once per job, after you have checked every "
        "finding. Comments on lines outside the diff are folded into the summary. The answer gives the review's URL "
        "and what was folded; an error says what to fix before calling again.",
        "app.pipelines.review.endings:publish_review_once", needs="review",
        instead="Only a review job publishes a review. Deliver a fix with propose_fix, and say anything else with "
                "reply or in your final report_progress."),
    CustomTool(
        "propose_fix", ProposeFixInput,
        "Propose a fix as one unified diff (the output of `git diff` run at the repository root in the container, "
        "paths relative to that root). The app checks the paths and size, applies it to the pull request's head "
        "commit, and opens a fix pull request (or pushes, if the repository's config says so). Before anything is "
        "delivered, an independent verifier runs `verify_commands` (and the tests of the touched code) at the fix "
        "commit. The answer is the URL, or the reason it was refused (a hunk does not apply, the verification "
        "failed, with its output) so you can correct it.",
        "app.pipelines.fix.propose:propose_fix", needs="fix",
        instead="Only a fix job (a failing CI check) delivers patches. In a review, put the fix in the finding's "
                "`suggestion` (publish_review) or describe it in the comment's body."),
    CustomTool(
        "report_verification", ReportVerificationInput,
        "Report the independent verification of a fix, once, when you are done: each command you ran at the fix "
        "commit with its exit code and the last lines of its output, and `passed` (true only if every command "
        "succeeded). The fix is delivered only if it passed; otherwise your report goes back to the agents that "
        "made it.",
        "app.pipelines.fix.verify:report_verification", needs="verification",
        instead="Only the verifier of a fix reports a verification. Deliver a fix with propose_fix; an independent "
                "verifier checks it."),
    CustomTool(
        "read_ci_log", ReadCiLogInput,
        "Read a slice of a failing CI job's log, by the job id or check run id named in the task message (exactly "
        "one of the two). Page through long logs with start_line and max_lines; start near the end, where failures "
        "usually are, if the task message does not point elsewhere.",
        "app.pipelines.fix.ci_logs:read_ci_log", needs="ci_logs",
        instead="Only a fix job has failing CI logs to read. Run the project's tests in the container (through the "
                "tester) to see failures yourself."),
    CustomTool(
        "reply", ReplyInput,
        "Post (or update) the bot's answer comment on the pull request, in Markdown. Use it to answer a slash-command "
        "or a question addressed to the bot; reviews go through publish_review instead.",
        "app.tools.reply:reply"),
    CustomTool(
        "write_description", WriteDescriptionInput,
        "Write the pull request's description (a `/describe` job), in Markdown. The app puts it into the pull "
        "request's body between its own markers, keeping every word the author wrote outside them (or posts it as "
        "one comment, if the repository says so). Calling it again replaces what the last call wrote. The answer "
        "says where it was written.",
        "app.pipelines.commands.describe:write_description", needs="describe",
        instead="Only a `/describe` job writes the pull request's description. Answer with reply, or say it in your "
                "final report_progress."),
)}


TOOL_INPUTS: dict[str, type[BaseModel]] = {name: tool.input_model for name, tool in CUSTOM_TOOLS.items()}
