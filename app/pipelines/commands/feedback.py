"""What a command shows on GitHub while it works: reactions on the command comment (👀 at the
start; 🚀 done, 😕 failed or refused) and one answer comment per command comment, marked
`<!-- prmedic:command:<comment id> -->` and updated in place."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from gidgethub.abc import GitHubAPI

from app.errors import describe
from app.logs import redact
from app.pipelines.progress import ThrottledProgress
from app.tools.comments import upsert_comment

log = logging.getLogger("prmedic.commands")

REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")


def marker(comment_id: int) -> str:
    return f"<!-- prmedic:command:{comment_id} -->"


@dataclass
class Feedback:
    gh: GitHubAPI
    repo: str
    pr_number: int
    comment_id: int
    source: str  # "issue_comment" | "pull_request_review_comment"
    answer_url: str | None = None

    def _reactions_url(self) -> str:
        kind = "pulls" if self.source == "pull_request_review_comment" else "issues"
        return f"/repos/{self.repo}/{kind}/comments/{self.comment_id}/reactions"

    async def react(self, content: str) -> None:
        """Best effort: a reaction that cannot be added does not fail the command."""
        assert content in REACTIONS, content
        try:
            await self.gh.post(self._reactions_url(), data={"content": content})
        except Exception as exc:  # noqa: BLE001 - feedback only
            log.warning("%s#%s: could not react %s on comment %s: %s", self.repo, self.pr_number, content,
                        self.comment_id, redact(describe(exc)))

    async def answer(self, body: str) -> str:
        """Post the command's answer comment, or update the one posted before; its URL."""
        self.answer_url = await upsert_comment(self.gh, self.repo, self.pr_number, redact(body),
                                               marker=marker(self.comment_id))
        return self.answer_url


def render_answer(heading: str, *, status: dict[str, str] | None, reply: str | None, footer: str | None) -> str:
    """The answer comment of a command that runs agents (pure): the agents' answer once they gave
    one (`reply`), else the heading and their latest progress as a checklist; then the outcome."""
    if reply is not None:
        parts = [reply.strip()]
    else:
        parts = [heading, status["summary"] if status else "Starting the agents…"]
    if footer:
        parts.append(f"---\n{footer}")
    elif reply is not None:
        parts.append("---\n*Still working…*")
    return "\n\n".join(parts)


class CommandAnswer(ThrottledProgress):
    """A command's answer comment while its agents work: their progress (`report_progress`,
    throttled) as a checklist, their answer (`reply`) in place of it, and the outcome under it
    (`finish`). It is the job's `JobContext.command_answer`."""

    def __init__(self, feedback: Feedback, heading: str, *, min_interval: float = 5.0) -> None:
        super().__init__(min_interval=min_interval, flush_on_close=False, where="the command's answer comment")
        self.feedback = feedback
        self.heading = heading
        self.status: dict[str, str] | None = None
        self.reply_body: str | None = None
        self.footer: str | None = None

    @property
    def progress(self) -> CommandAnswer:
        return self

    def render(self) -> str:
        return render_answer(self.heading, status=self.status, reply=self.reply_body, footer=self.footer)

    async def write(self, output: dict[str, str]) -> None:
        self.status = output
        await self.feedback.answer(self.render())

    async def start(self) -> None:
        async with self._lock:
            self._last_sent = time.monotonic()
            await self.feedback.answer(self.render())

    async def reply(self, body: str) -> str:
        async with self._lock:
            self.reply_body = body
            return await self.feedback.answer(self.render())

    async def finish(self, footer: str, *, body: str | None = None) -> str:
        """The final state: `body` replaces the answer when given (e.g. why there is none)."""
        self._pending = None
        async with self._lock:
            if body is not None:
                self.reply_body = body
            self.footer = footer
            return await self.feedback.answer(self.render())
