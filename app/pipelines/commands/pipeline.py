"""The `command` job: who may run it, the feedback on GitHub, and the command itself.

GitHub calls of a command without an agent: config (1) · 👀 (1) · the commenter's permission
(1, cached for a minute; none for the PR author's own review) · list + post or update the answer
comment (2) · the final reaction (1); `/review` adds the PR (1) and the review's own calls.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from app.errors import describe, will_retry
from app.pipelines.commands import actions, agents, approve, change, texts
from app.pipelines.commands import describe as describe_command
from app.pipelines.commands.feedback import CommandAnswer, Feedback
from app.pipelines.commands.permissions import (
    allows,
    author_may,
    needed_permission,
    repo_permission,
)
from app.pipelines.context import JobContext, Pipeline, PipelineRun, prepare
from app.pipelines.fix_request import FixRunner
from app.pipelines.pr_state import stopped_by
from app.store import JobState

log = logging.getLogger("prmedic.commands")


@dataclass
class Outcome:
    """How a command ended: `ok` picks the final reaction (🚀 or 😕); `result` is the job's result."""

    ok: bool
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class Command:
    run: PipelineRun
    feedback: Feedback
    review: Pipeline
    name: str
    args: str
    user: str | None
    pr_author: str | None
    answer: CommandAnswer  # the answer comment as the agents' channel (`JobContext.command_answer`)
    fix: FixRunner | None = None  # the fix pipeline's entry `/fix` and `/test` run (wired in `app.runtime`)

    @property
    def ctx(self) -> JobContext:
        return self.run.ctx


def make_command_pipeline(review: Pipeline, fix: FixRunner | None = None) -> Pipeline:
    """The command pipeline; `review` is the review pipeline `/review` runs, `fix` the fix
    pipeline's entry for `/fix` and `/test` (wired in `app.runtime`, since one pipeline feature
    does not import another)."""

    async def command_pipeline(ctx: JobContext) -> dict[str, Any]:
        return await run_command(ctx, review, fix)

    return command_pipeline


async def run_command(ctx: JobContext, review: Pipeline, fix: FixRunner | None = None) -> dict[str, Any]:
    job, payload = ctx.job, ctx.job.payload
    comment = payload.get("comment") or {}
    run = await prepare(ctx)
    assert job.pr_number is not None
    feedback = Feedback.of_job(run.gh, job.repo, job.pr_number, payload)
    name, user = payload.get("command", "help"), comment.get("author")
    answer = CommandAnswer(feedback, f"`/{name}` asked by @{user}: working on it…")
    ctx.command_answer = answer
    command = Command(run, feedback, review, name, payload.get("args") or "", user, payload.get("pr_author"), answer,
                      fix)
    await feedback.react("eyes")
    try:
        outcome = await dispatch(command)
    except asyncio.CancelledError:
        await asyncio.shield(_stopped(command))
        raise
    except Exception as exc:
        if not will_retry(job.attempts, job.max_attempts, exc):
            await _failed(command, exc)
        raise
    await feedback.react("rocket" if outcome.ok else "confused")
    result = {"command": command.name, **outcome.result}
    if feedback.answer_url:
        result["answer_url"] = feedback.answer_url
    return result


async def dispatch(command: Command) -> Outcome:
    run, name, payload = command.run, command.name, command.ctx.job.payload
    config = run.config
    # A button on the fix check run is no comment: `commands.enabled` is about comments.
    clicked = payload.get("source") == "check_run"
    if name != "help" and not config.commands.enabled and not clicked:
        await command.feedback.answer(texts.disabled())
        return Outcome(False, {"result": "disabled"})
    needed = needed_permission(config.commands, name)
    if not author_may(name, command.user, command.pr_author):
        have = await repo_permission(run.gh, run.repo, command.user) if command.user else "none"
        if not allows(have, needed):
            await command.feedback.answer(texts.refusal(command.user, name, needed, have))
            return Outcome(False, {"result": "refused", "needed": needed, "permission": have})
    if name == "help":
        slug = command.ctx.bot_login.removesuffix("[bot]") if command.ctx.bot_login else None
        unknown = payload.get("unknown")
        await command.feedback.answer(texts.help_text(config, slug, unknown=unknown))
        return Outcome(unknown is None, {"result": "unknown" if unknown is not None else "answered"})
    if name in texts.NOT_YET:
        await command.feedback.answer(texts.not_available(name))
        return Outcome(False, {"result": "not_available"})
    handler = {**actions.HANDLERS, **agents.HANDLERS, **describe_command.HANDLERS, **change.HANDLERS,
               **approve.HANDLERS}.get(name)
    if handler is None:  # a command routing knows and this version does not
        await command.feedback.answer(texts.not_available(name))
        return Outcome(False, {"result": "not_available"})
    ok, result = await handler(command)
    return Outcome(ok, result)


async def _failed(command: Command, exc: BaseException) -> None:
    """No retry follows: say so on the PR, and 😕."""
    try:
        await command.feedback.answer(f"`/{command.name}` failed: {describe(exc)}")
        await command.feedback.react("confused")
    except Exception as inner:  # noqa: BLE001 - the job's own error is what gets recorded
        log.warning("job %s: could not answer the failure: %s", command.ctx.job.id, describe(inner))


async def _stopped(command: Command) -> None:
    """The command job itself was stopped (`/stop`): say who stopped it, best effort."""
    job = await command.ctx.store.get_job(command.ctx.job.id)
    if job is None or job.state is not JobState.cancelled:
        return  # the worker is shutting down: a later attempt takes the command up again
    try:
        by = await stopped_by(command.ctx.store, job.id)
        await asyncio.wait_for(command.feedback.answer(f"`/{command.name}` was stopped" +
                                                       (f" by @{by}." if by else ".")), 15)
        await asyncio.wait_for(command.feedback.react("confused"), 15)
    except Exception as exc:  # noqa: BLE001 - best effort
        log.warning("job %s: could not answer the stop: %s", command.ctx.job.id, describe(exc))
