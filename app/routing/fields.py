"""Pure helpers: the few payload fields a job keeps, and the loop guard."""

from __future__ import annotations

from typing import Any

PR_BODY_LIMIT = 20_000


def repository_fields(repo: dict[str, Any]) -> dict[str, Any]:
    return {
        "full_name": repo["full_name"],
        "id": repo.get("id"),
        "private": repo.get("private", False),
        "default_branch": repo.get("default_branch"),
        "html_url": repo.get("html_url"),
        "language": repo.get("language"),
    }


def pull_request_fields(pr: dict[str, Any]) -> dict[str, Any]:
    """What a review needs from the PR, so the pipeline does not fetch it again."""
    head, base = pr.get("head") or {}, pr.get("base") or {}
    head_repo, base_repo = head.get("repo") or {}, base.get("repo") or {}
    user = pr.get("user") or {}
    return {
        "number": pr["number"],
        "title": pr.get("title") or "",
        "body": (pr.get("body") or "")[:PR_BODY_LIMIT],
        "draft": bool(pr.get("draft")),
        "state": pr.get("state"),
        "html_url": pr.get("html_url"),
        "author": user.get("login"),
        "author_type": user.get("type"),
        "author_association": pr.get("author_association"),
        "labels": [label.get("name") for label in pr.get("labels") or [] if isinstance(label, dict)],
        "head_sha": head.get("sha"),
        "head_ref": head.get("ref"),
        "head_repo": head_repo.get("full_name"),
        "base_sha": base.get("sha"),
        "base_ref": base.get("ref"),
        "base_repo": base_repo.get("full_name"),
        "is_fork": bool(head_repo) and head_repo.get("full_name") != base_repo.get("full_name"),
        "changed_files": pr.get("changed_files"),
        "additions": pr.get("additions"),
        "deletions": pr.get("deletions"),
    }


def installation_id(data: dict[str, Any]) -> int | None:
    installation = data.get("installation")
    return installation.get("id") if isinstance(installation, dict) else None


def is_own_event(data: dict[str, Any], *, app_id: int, bot_login: str | None) -> bool:
    """True when the App itself caused this event: it must never react to itself."""
    sender = data.get("sender") or {}
    if bot_login and sender.get("login") == bot_login:
        return True
    for key in ("comment", "issue", "pull_request", "review"):
        via = (data.get(key) or {}).get("performed_via_github_app") if isinstance(data.get(key), dict) else None
        if isinstance(via, dict) and via.get("id") == app_id:
            return True
    for key in ("check_run", "check_suite"):
        obj = data.get(key)
        if isinstance(obj, dict) and (obj.get("app") or {}).get("id") == app_id:
            return True
    return False
