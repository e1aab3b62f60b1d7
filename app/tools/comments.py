"""The bot's own comments on a pull request: one per marker, updated in place on later calls."""

from __future__ import annotations

from typing import Any

from gidgethub import BadRequest
from gidgethub.abc import GitHubAPI


async def write_marked_comment(gh: GitHubAPI, repo: str, number: int, body: str, *, marker: str,
                               comment_id: int | None = None) -> dict[str, Any]:
    """Post prmedic's marker-tagged comment on the PR, or update the one posted before; the comment
    as GitHub answered. `comment_id`, when the caller already knows that comment (it wrote it
    earlier), is updated without listing the PR's comments; if it is gone (404), as if unknown."""
    body = f"{marker}\n{body}"
    if comment_id is not None:
        try:
            return await gh.patch(f"/repos/{repo}/issues/comments/{comment_id}", data={"body": body})
        except BadRequest as exc:
            if int(exc.status_code) != 404:
                raise
    async for comment in gh.getiter(f"/repos/{repo}/issues/{number}/comments?per_page=100"):
        # The marker opens the body prmedic wrote; one quoted inside other text is not this comment.
        if (comment.get("body") or "").startswith(marker) and (comment.get("user") or {}).get("type") == "Bot":
            return await gh.patch(f"/repos/{repo}/issues/comments/{comment['id']}", data={"body": body})
    return await gh.post(f"/repos/{repo}/issues/{number}/comments", data={"body": body})


async def upsert_comment(gh: GitHubAPI, repo: str, number: int, body: str, *, marker: str) -> str:
    """Post prmedic's marker-tagged comment on the PR, or update the one posted before; its URL."""
    return (await write_marked_comment(gh, repo, number, body, marker=marker))["html_url"]
