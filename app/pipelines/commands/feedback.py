"""What a command shows on GitHub while it works: reactions on the command comment (👀 at the
start; 🚀 done, 😕 failed or refused) and one answer comment per command comment, marked
`<!-- prmedic:command:<comment id> -->` and updated in place.

A command written on the PR's conversation is answered there. A command written in a review
thread is answered in that thread, as a reply to its top-level comment (GitHub takes no reply to a
reply); if the thread is gone, the answer goes on the conversation under a quote of where it was
asked: an answer is never lost."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from gidgethub import BadRequest
from gidgethub.abc import GitHubAPI

from app.errors import describe
from app.logs import redact
from app.pipelines.progress import ThrottledProgress
from app.tools.comments import write_marked_comment

log = logging.getLogger("prmedic.commands")

REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
QUOTE_LIMIT = 500  # characters of the command quoted above an answer that left its thread


def marker(comment_id: int) -> str:
    return f"<!-- prmedic:command:{comment_id} -->"


def asked_in_thread(comment: dict[str, Any], command: str, args: str) -> str:
    """The quote that heads an answer moved from its review thread to the conversation (pure): who
    asked, in which thread, on which file and line, and what."""
    where = f"`{comment['path']}`" if comment.get("path") else "the diff"
    if comment.get("path") and comment.get("line"):
        where += f" line {comment['line']}"
    thread = f"[a review thread]({comment['html_url']})" if comment.get("html_url") else "a review thread"
    who = f"@{comment['author']}" if comment.get("author") else "Someone"
    request = f"/{command} {args}".strip()
    if len(request) > QUOTE_LIMIT:
        request = request[:QUOTE_LIMIT].rstrip() + " …"
    lines = [f"> {who} asked in {thread} on {where}:", ">", *(f"> {line}" for line in request.splitlines())]
    return "\n".join(lines) + "\n\n*That thread is no longer there to reply in, so the answer is here.*"


@dataclass
class Feedback:
    gh: GitHubAPI
    repo: str
    pr_number: int
    comment_id: int
    source: str  # "issue_comment" | "pull_request_review_comment"
    thread_id: int | None = None  # a review thread's top-level comment: the answer is a reply to it
    asked: str = ""  # heads the answer if it has to leave the thread (`asked_in_thread`)
    answer_url: str | None = None
    # The answer written in this attempt, so the many updates while agents work do not list again.
    _reply_id: int | None = field(default=None, repr=False)  # in the thread
    _issue_comment_id: int | None = field(default=None, repr=False)  # on the conversation
    _thread_gone: bool = field(default=False, repr=False)

    @classmethod
    def of_job(cls, gh: GitHubAPI, repo: str, pr_number: int, payload: dict[str, Any]) -> Feedback:
        """The feedback of a command job (`app.routing.commands.command_job`'s payload, or for a
        button on a check run `app.routing.approvals.approval_job`'s)."""
        if payload.get("source") == "check_run":
            return ClickFeedback.of_click(gh, repo, pr_number, payload)
        comment = payload.get("comment") or {}
        comment_id = int(comment["id"])
        source = payload.get("source", "issue_comment")
        if source != "pull_request_review_comment":
            return cls(gh, repo, pr_number, comment_id, source)
        return cls(gh, repo, pr_number, comment_id, source,
                   thread_id=int(comment.get("in_reply_to_id") or comment_id),
                   asked=asked_in_thread(comment, payload.get("command", "help"), payload.get("args") or ""))

    @property
    def marker(self) -> str:
        return marker(self.comment_id)

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
        """Post the command's answer, or update the one posted before (in its review thread when it
        was asked in one, else on the conversation); its URL."""
        body = redact(body)
        if self.thread_id is not None and not self._thread_gone:
            reply = await self._answer_in_thread(body)
            if reply is not None:
                self.answer_url = reply["html_url"]
                return self.answer_url
            self._thread_gone = True
        if self._thread_gone:
            body = f"{self.asked}\n\n{body}"
        comment = await write_marked_comment(self.gh, self.repo, self.pr_number, body, marker=self.marker,
                                             comment_id=self._issue_comment_id)
        self._issue_comment_id = comment["id"]
        self.answer_url = comment["html_url"]
        return self.answer_url

    async def _answer_in_thread(self, body: str) -> dict[str, Any] | None:
        """The answer as a reply in the thread, written or updated; None when the thread is gone."""
        text = f"{self.marker}\n{body}"
        if self._reply_id is None:
            self._reply_id = await self._earlier_reply()
        if self._reply_id is not None:
            try:
                return await self.gh.patch(f"/repos/{self.repo}/pulls/comments/{self._reply_id}", data={"body": text})
            except BadRequest as exc:
                if int(exc.status_code) != 404:
                    raise
                self._reply_id = None  # deleted since: answer with a new reply
        try:
            reply = await self.gh.post(f"/repos/{self.repo}/pulls/{self.pr_number}/comments/{self.thread_id}/replies",
                                       data={"body": text})
        except BadRequest as exc:
            if int(exc.status_code) not in (404, 422):
                raise
            log.info("%s#%s: review thread %s takes no reply (%s): answering on the conversation", self.repo,
                     self.pr_number, self.thread_id, exc.status_code)
            return None
        self._reply_id = int(reply["id"])
        return reply

    async def _earlier_reply(self) -> int | None:
        """prmedic's reply with this command's marker among the PR's review comments (an earlier attempt's)."""
        async for comment in self.gh.getiter(f"/repos/{self.repo}/pulls/{self.pr_number}/comments?per_page=100"):
            if (comment.get("body") or "").startswith(self.marker) and (comment.get("user") or {}).get("type") == "Bot":
                return int(comment["id"])
        return None


@dataclass
class ClickFeedback(Feedback):
    """A button clicked on a check run: no comment to react on, so no reactions; the answer is a PR
    comment of its own, one per check run and person (updated in place on a second click), headed
    by who clicked what."""

    key: str = ""

    @classmethod
    def of_click(cls, gh: GitHubAPI, repo: str, pr_number: int, payload: dict[str, Any]) -> ClickFeedback:
        who = (payload.get("comment") or {}).get("author") or "someone"
        asked = f"> @{who} clicked **{payload.get('button') or 'a button'}** on the `prmedic fix` check run."
        return cls(gh, repo, pr_number, 0, "check_run", asked=asked,
                   key=f"check_run:{payload.get('check_run_id')}:{who.lower()}")

    @property
    def marker(self) -> str:
        return f"<!-- prmedic:command:{self.key} -->"

    async def react(self, content: str) -> None:
        return None

    async def answer(self, body: str) -> str:
        return await super().answer(f"{self.asked}\n\n{body}")


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
        """The heading, at once; the agents' first report follows at once too (the plan is worth
        seeing even in a short session), later ones at most every `min_interval` seconds."""
        async with self._lock:
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
