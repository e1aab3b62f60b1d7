"""`prmedic run ask|describe|fix|test`: a command without a comment.

A slash-command answers under the comment that asked and reacts on it (`Feedback`). Run from a
terminal there is neither, so `TerminalFeedback` is the seam: reactions become lines on the
terminal, and so does the answer. Only `ask`'s answer is also posted on the pull request (its
answer is what the run is for; a run that only printed it could as well not have asked GitHub),
as one comment of its own, marked `<!-- prmedic:run:<nonce> -->` so it is updated in place while
the agents work, and headed by the question, since no comment on the PR asks it. `describe`,
`fix` and `test` deliver on the pull request themselves (its description, a fix PR), so their
progress and outcome stay on the terminal. In a dry run the posted answer, too, is only recorded.

The command's own handlers do the work (`app/pipelines/commands/`: agents, describe, change),
with the same tools, budget (`budget.command_usd`) and checks. What the comment route adds is
left out: the permission check (whoever runs this holds the credentials, and GitHub holds the
token to its own permissions) and `commands.enabled` (it governs comments).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from app.errors import describe, will_retry
from app.logs import redact
from app.oneshot.display import Display
from app.pipelines.commands import agents, change
from app.pipelines.commands import describe as describe_command
from app.pipelines.commands.feedback import CommandAnswer, Feedback
from app.pipelines.commands.pipeline import Command
from app.pipelines.context import JobContext, Pipeline, prepare
from app.pipelines.fix_request import FixRunner
from app.tools.comments import write_marked_comment

log = logging.getLogger("prmedic.oneshot")

CLI_SOURCE = "cli"  # a command job's `payload.source` when `prmedic run` made it (no comment)
HANDLERS = {**agents.HANDLERS, **describe_command.HANDLERS, **change.HANDLERS}
POSTS_ANSWER = frozenset({"ask"})
QUOTE_LIMIT = 2_000


def run_marker(nonce: str) -> str:
    return f"<!-- prmedic:run:{nonce} -->"


def question_quote(user: str | None, command: str, args: str) -> str:
    """What heads an answer posted without a comment that asked (pure)."""
    words = args.strip()
    if len(words) > QUOTE_LIMIT:
        words = words[:QUOTE_LIMIT].rstrip() + " …"
    who = f"@{user}" if user else "Someone"
    lines = [f"> {who} asked with `prmedic run {command}`:", ">", *(f"> {line}" for line in words.splitlines())]
    return "\n".join(lines)


@dataclass
class TerminalFeedback(Feedback):
    """A command's feedback on the terminal; with `post`, its answer also as a marked PR comment."""

    display: Display | None = None
    post: bool = False
    nonce: str = field(default_factory=lambda: secrets.token_hex(6))

    @property
    def marker(self) -> str:
        return run_marker(self.nonce)

    async def react(self, content: str) -> None:
        if self.display is not None:
            self.display.reaction(content)

    async def answer(self, body: str) -> str:
        body = redact(body)
        if self.display is not None:
            self.display.answer(body)
        if not self.post:
            return self.answer_url or "the terminal that ran `prmedic run` (the answer is not posted)"
        text = f"{self.asked}\n\n{body}" if self.asked else body
        comment = await write_marked_comment(self.gh, self.repo, self.pr_number, text, marker=self.marker,
                                             comment_id=self._issue_comment_id)
        self._issue_comment_id = comment["id"]
        self.answer_url = comment["html_url"]
        return self.answer_url


def command_payload(name: str, args: str, *, repository: dict[str, Any], pr_author: str | None,
                    user: str | None) -> dict[str, Any]:
    """The payload of a command job made by `prmedic run` (pure)."""
    return {"command": name, "args": args, "source": CLI_SOURCE, "repository": repository,
            "pr_author": pr_author, "user": user}


def terminal_command_pipeline(review: Pipeline, fix: FixRunner, display: Display) -> Pipeline:
    """The pipeline of a `prmedic run` command job: its handler, with `TerminalFeedback`."""

    async def pipeline(ctx: JobContext) -> dict[str, Any]:
        return await run_terminal_command(ctx, review, fix, display)

    return pipeline


async def run_terminal_command(ctx: JobContext, review: Pipeline, fix: FixRunner, display: Display) -> dict[str, Any]:
    job, payload = ctx.job, ctx.job.payload
    name, user, args = payload["command"], payload.get("user"), payload.get("args") or ""
    handler = HANDLERS[name]
    run = await prepare(ctx)
    assert job.pr_number is not None
    feedback = TerminalFeedback(run.gh, job.repo, job.pr_number, 0, CLI_SOURCE, display=display,
                                post=name in POSTS_ANSWER, asked=question_quote(user, name, args))
    answer = CommandAnswer(feedback, f"`prmedic run {name}` by @{user}: working on it…")
    ctx.command_answer = answer
    command = Command(run, feedback, review, name, args, user, payload.get("pr_author"), answer, fix)
    await feedback.react("eyes")
    try:
        ok, result = await handler(command)
    except Exception as exc:
        if not will_retry(job.attempts, job.max_attempts, exc) and feedback.answer_url:
            try:  # the posted answer must not stay "working on it…"
                await feedback.answer(f"`prmedic run {name}` failed: {describe(exc)}")
            except Exception as inner:  # noqa: BLE001 - the job's own error is what counts
                log.warning("could not answer the failure: %s", describe(inner))
        raise
    await feedback.react("rocket" if ok else "confused")
    out = {"command": name, "ok": ok, **result, "answer": display.answer_text}
    if feedback.answer_url:
        out["answer_url"] = feedback.answer_url
    return out
