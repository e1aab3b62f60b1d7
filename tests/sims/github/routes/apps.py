"""The App itself, installation tokens and the repositories an installation sees."""

from __future__ import annotations

from ..common import HTTPError, PERM_LEVEL, iso, not_found
from ..routing import Ctx, paginate, route


@route("GET", "/app", auth="jwt")
def get_app(ctx: Ctx):
    return 200, ctx.render.app()


@route("GET", "/repos/{owner}/{repo}/installation", auth="jwt")
def get_repo_installation(ctx: Ctx):
    """The App's installation that covers the repository; 404 when the repository does not exist or
    no installation of the App includes it (an installation on "selected" repositories without it)."""
    s = ctx.state
    repo = s.repos.get(f"{ctx.params['owner']}/{ctx.params['repo']}".lower())
    if repo is None:
        raise not_found()
    for inst in s.installations.values():
        if repo.key in {r.key for r in s.installation_repos(inst)}:
            return 200, ctx.render.installation(inst)
    raise not_found()


@route("POST", "/app/installations/{installation_id}/access_tokens", auth="jwt")
def create_token(ctx: Ctx):
    s = ctx.state
    inst = s.installations.get(int(ctx.params["installation_id"]))
    if inst is None:
        raise not_found()
    if inst.suspended:
        raise HTTPError(403, "This installation has been suspended")
    body = ctx.body or {}
    available = {r.key: r for r in s.installation_repos(inst)}
    selected: set[str] | None = None
    if body.get("repositories") or body.get("repository_ids"):
        selected = set()
        for name in body.get("repositories") or []:
            key = (name if "/" in name else f"{inst.account}/{name}").lower()
            if key not in available:
                raise HTTPError(422, "There is at least one repository that does not exist or is not "
                                     "accessible to the parent installation.")
            selected.add(key)
        for rid in body.get("repository_ids") or []:
            r = s.repos_by_id.get(rid)
            if r is None or r.key not in available:
                raise HTTPError(422, "There is at least one repository that does not exist or is not "
                                     "accessible to the parent installation.")
            selected.add(r.key)
        if len(selected) > 500:
            raise HTTPError(422, "Too many repositories")
    perms = dict(inst.permissions)
    if body.get("permissions"):
        for k, v in body["permissions"].items():
            if PERM_LEVEL.get(v, 0) > PERM_LEVEL.get(inst.permissions.get(k, "none"), 0):
                raise HTTPError(422, "The permissions requested are not granted to this installation.")
        perms = dict(body["permissions"])
        perms.setdefault("metadata", "read")
    token = s.issue_token(inst.id, permissions=perms)
    tok = s.tokens[token]
    tok.repositories = selected
    s.tokens_issued.append(tok)
    out = {"token": token, "expires_at": iso(tok.expires_at), "permissions": perms,
           "repository_selection": "selected" if selected is not None else inst.repository_selection}
    if selected is not None:
        out["repositories"] = [ctx.render.repo(available[k], full=False) for k in sorted(selected)]
    return 201, out


@route("GET", "/installation/repositories", auth="token")
def installation_repositories(ctx: Ctx):
    s = ctx.state
    inst = s.installations[ctx.token.installation_id]
    repos = [r for r in s.installation_repos(inst)
             if ctx.token.repositories is None or r.key in ctx.token.repositories]
    chunk, headers = paginate(ctx, repos)
    return 200, {"total_count": len(repos), "repositories": [ctx.render.repo(r, full=False) for r in chunk],
                 "repository_selection": "selected" if ctx.token.repositories is not None
                 else inst.repository_selection}, headers
