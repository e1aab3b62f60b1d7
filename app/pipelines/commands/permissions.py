"""Who may run a command here: the rule (pure) and the commenter's permission (one cached GitHub call).

Each command has a lowest repository permission (`commands.permissions` in `.github/prmedic.yml`);
the PR's author may always review, ask about and describe their own PR.
"""

from __future__ import annotations

from cachetools import TTLCache
from gidgethub import BadRequest
from gidgethub.abc import GitHubAPI

from app.repo_config import CommandsConfig

ORDER = ("none", "read", "triage", "write", "maintain", "admin")  # lowest first
AUTHOR_MAY = frozenset({"review", "ask", "describe"})
CACHE_SECONDS = 60

_cache: TTLCache[tuple[str, str], str] = TTLCache(maxsize=4096, ttl=CACHE_SECONDS)


def rank(permission: str | None) -> int:
    return ORDER.index(permission) if permission in ORDER else 0


def allows(have: str | None, needed: str) -> bool:
    return rank(have) >= rank(needed)


def needed_permission(config: CommandsConfig, command: str) -> str:
    return config.permissions.get(command, "write")  # type: ignore[call-overload]


def author_may(command: str, user: str | None, pr_author: str | None) -> bool:
    """The PR's author may always run `/review`, `/ask` and `/describe` on their own PR."""
    return bool(user and pr_author) and command in AUTHOR_MAY and user.lower() == pr_author.lower()


def clear_cache() -> None:
    _cache.clear()


async def repo_permission(gh: GitHubAPI, repo: str, user: str) -> str:
    """`user`'s permission on `repo` (admin, maintain, write, triage, read or none), cached for a minute."""
    key = (repo.lower(), user.lower())
    if key in _cache:
        return _cache[key]
    try:
        answer = await gh.getitem(f"/repos/{repo}/collaborators/{user}/permission")
    except BadRequest as exc:
        if int(exc.status_code) != 404:  # 404: not a collaborator GitHub knows of
            raise
        answer = {"permission": "none"}
    role, permission = answer.get("role_name"), answer.get("permission")
    # `permission` folds maintain into write and triage into read; `role_name` keeps them (custom
    # roles have other names: then the folded one counts).
    found = role if role in ORDER else (permission if permission in ORDER else "none")
    _cache[key] = found
    return found
