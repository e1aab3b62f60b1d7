"""Custom tools: name → (pydantic input model, async handler) (docs/architecture.md, "Custom tools").

The session runner hands every `agent.custom_tool_use` to `ToolRegistry.call`, which validates
the input and runs the handler. The answer is always a short text plus an `is_error` flag:

- keys the tool's input model does not know (GitHub's own field names, mostly) are dropped
  before validation and listed after the answer as ignored, with their path;
- invalid input → `is_error` with every problem as `field.path: what was expected (got …)`, so
  the agent can correct the call;
- unknown tool → `is_error` naming the tools that exist;
- the handler raises `ToolError` (or `PermanentError`) → `is_error` with its message: the call
  was refused (e.g. a hunk does not apply) and the agent may adjust;
- the handler raises a transient GitHub failure (after the GitHub client's own retries, up to
  two minutes) → `is_error` saying GitHub is unavailable and the call may be retried later. We
  do not fail the job for it: the session would otherwise be abandoned mid-way, and the agent
  is the one who can decide whether the call still matters;
- `StoreUnavailable` propagates: without the store, at-most-once cannot be kept, so the job is
  retried (and resumes the session);
- any other exception is a bug: logged with its traceback, the agent gets a generic error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import pydantic
from gidgethub import BadRequest

from app.errors import PermanentError, is_transient
from app.logs import redact
from app.store import Job, Store, StoreUnavailable
from app.tools.schemas import split_unknown

if TYPE_CHECKING:  # the pipelines' own state, named for the reader; never imported at run time
    from gidgethub.abc import GitHubAPI

    from app.pipelines.commands.describe import DescribeTarget
    from app.pipelines.context import PipelineRun
    from app.pipelines.fix.ci_logs import CiLogs
    from app.pipelines.fix.propose import FixTarget
    from app.pipelines.fix.verify import Verification
    from app.pipelines.review.endings import ReviewPosts
    from app.pipelines.review.publish import ReviewSession

log = logging.getLogger("prmedic.tools")

M = TypeVar("M", bound=pydantic.BaseModel)
MAX_RESULT_CHARS = 16_000


class ToolError(Exception):
    """The call was understood but refused; the message goes back to the agent as is."""


class Progress(Protocol):
    """Where `report_progress` goes: the job's check run (`app.pipelines.checks.ProgressReporter`)."""

    async def report(self, message: str, done: list[str] | None = None, todo: list[str] | None = None) -> str: ...

    async def aclose(self) -> None: ...


@dataclass
class ToolContext:
    """What a tool handler gets: its job, the pipeline run it belongs to, and that pipeline's own
    state. A tool that works on a state its job does not have (e.g. `publish_review` without a
    review) is refused before its handler runs (`CustomTool.needs`).

    `github()` returns an installation client (gidgethub) for the job's installation.
    """

    job: Job
    store: Store
    github: Callable[[], Awaitable[GitHubAPI]] | None = None
    check_run_id: int | None = None
    session_id: str | None = None
    progress: Progress | None = None  # the check run's reporter, when the pipeline opened one
    answer: Callable[[str], Awaitable[str]] | None = None  # a command job: `reply` writes the command's answer
    run: PipelineRun | None = None
    review: ReviewSession | None = None  # a review job: what publish_review publishes
    review_posts: ReviewPosts | None = None  # a review job: review POSTs whose answer was lost
    fix: FixTarget | None = None  # a fix job: what propose_fix checks and delivers
    ci_logs: CiLogs | None = None  # a fix job: the failing checks read_ci_log reads
    describe: DescribeTarget | None = None  # a `/describe` job: where write_description writes
    verification: Verification | None = None  # a fix's verifier session: where report_verification reports

    @property
    def repo(self) -> str:
        return self.job.repo


Handler = Callable[[ToolContext, M], Awaitable[str]]


@dataclass(frozen=True)
class Tool(Generic[M]):
    name: str
    input_model: type[M]
    handler: Handler
    description: str = ""

    def definition(self) -> dict[str, Any]:
        """The custom-tool entry for an agent definition (`tools[]`)."""
        schema = self.input_model.model_json_schema()
        schema.pop("title", None)
        return {"type": "custom", "name": self.name,
                "description": self.description or (self.input_model.__doc__ or self.name).strip(),
                "input_schema": schema}


@dataclass(frozen=True)
class ToolAnswer:
    text: str
    is_error: bool = False


def describe_validation_error(name: str, exc: pydantic.ValidationError) -> str:
    """`field.path: message (got value)` per problem, for the agent to act on."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(input)"
        message = err.get("msg", "is invalid").removeprefix("Value error, ")
        if err.get("type") == "missing":
            message = "is required but missing"
        elif err.get("type") == "extra_forbidden":
            message = "is not a field of this tool"
        got = err.get("input")
        shown = "" if err.get("type") == "missing" or isinstance(got, dict) else f" (got {_short(got)})"
        lines.append(f"- {loc}: {message}{shown}")
    return f"Invalid input for {name}; nothing was done. Fix these and call {name} again:\n" + "\n".join(lines)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class ToolRegistry:
    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.add(tool)

    def add(self, tool: Tool) -> None:
        self._tools[tool.name] = tool

    def register(self, name: str, input_model: type[M], handler: Handler, *, description: str = "") -> None:
        self.add(Tool(name, input_model, handler, description))

    def __contains__(self, name: str) -> bool:
        return name in self._tools

    def tools(self) -> list[Tool]:
        return list(self._tools.values())

    def names(self) -> list[str]:
        return sorted(self._tools)

    def definitions(self) -> list[dict[str, Any]]:
        return [self._tools[n].definition() for n in self.names()]

    def validate(self, name: str, raw: Any) -> tuple[pydantic.BaseModel | ToolAnswer, list[str]]:
        """The checked input (or the refusal naming every field at fault) and the ignored keys."""
        tool = self._tools.get(name)
        if tool is None:
            return ToolAnswer(f"Unknown tool {name!r}. The tools of this app are: {', '.join(self.names())}.", True), []
        known, ignored = split_unknown(tool.input_model, raw if raw is not None else {}, name)
        try:
            return tool.input_model.model_validate(known), ignored
        except pydantic.ValidationError as exc:
            return ToolAnswer(describe_validation_error(name, exc), True), ignored

    async def call(self, ctx: ToolContext, name: str, raw: Any) -> ToolAnswer:
        checked, ignored = self.validate(name, raw)
        if isinstance(checked, ToolAnswer):
            return _with_ignored(checked, ignored)
        handler = self._tools[name].handler
        try:
            text = await handler(ctx, checked)
        except asyncio.CancelledError:
            raise
        except StoreUnavailable:
            raise
        except (ToolError, PermanentError) as exc:
            return _with_ignored(ToolAnswer(redact(str(exc)) or f"{name} was refused.", True), ignored)
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the agent as an answer
            return _with_ignored(self._failure(name, exc), ignored)
        return _with_ignored(ToolAnswer(text or "OK", False), ignored)

    @staticmethod
    def _failure(name: str, exc: Exception) -> ToolAnswer:
        # Transient first: a rate limit is a BadRequest too, but it means "later", not "no".
        if is_transient(exc):
            log.warning("tool %s: GitHub unavailable: %s", name, redact(str(exc)))
            return ToolAnswer(
                f"{name} failed because GitHub is temporarily unavailable ({exc.__class__.__name__}); it may not "
                "have taken effect. Retry the call in a minute, or carry on without it.", True)
        if isinstance(exc, BadRequest):  # 4xx from GitHub: the request itself was refused
            return ToolAnswer(_clip(f"GitHub refused the request made for {name}: {redact(str(exc))}"), True)
        log.exception("tool %s raised", name, exc_info=exc)
        return ToolAnswer(f"{name} failed with an internal error in the app; it was logged. Do not retry it.", True)


def _with_ignored(answer: ToolAnswer, ignored: list[str]) -> ToolAnswer:
    """The answer, clipped, followed by the keys that were not part of the call."""
    text = answer.text
    if ignored:
        text += "\n\n" + "\n".join(f"ignored: {line}" for line in ignored)
    return ToolAnswer(_clip(text), answer.is_error)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_RESULT_CHARS else text[: MAX_RESULT_CHARS - 20] + "\n…(truncated)"
