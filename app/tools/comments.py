"""The bot's own comments on a pull request: one per marker, updated in place on later calls."""

from __future__ import annotations

from gidgethub.abc import GitHubAPI


async def upsert_comment(gh: GitHubAPI, repo: str, number: int, body: str, *, marker: str) -> str:
    """Post prmedic's marker-tagged comment on the PR, or update the one posted before; its URL."""
    body = f"{marker}\n{body}"
    async for comment in gh.getiter(f"/repos/{repo}/issues/{number}/comments?per_page=100"):
        if marker in (comment.get("body") or "") and (comment.get("user") or {}).get("type") == "Bot":
            updated = await gh.patch(f"/repos/{repo}/issues/comments/{comment['id']}", data={"body": body})
            return updated["html_url"]
    created = await gh.post(f"/repos/{repo}/issues/{number}/comments", data={"body": body})
    return created["html_url"]
