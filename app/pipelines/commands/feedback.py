"""What a command shows on GitHub while it works: reactions on the command comment (👀 at the
start; 🚀 done, 😕 failed or refused) and one answer comment per command comment, marked
`<!-- prmedic:command:<comment id> -->` and updated in place."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gidgethub.abc import GitHubAPI

from app.errors import describe
from app.logs import redact
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
