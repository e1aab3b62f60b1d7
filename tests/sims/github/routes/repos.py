"""Repositories, contents and collaborators."""

from __future__ import annotations

from urllib.parse import quote
from typing import TYPE_CHECKING

from ..common import HTML_BASE, HTTPError, b64_wrapped, not_found
from ..routing import Ctx, route

if TYPE_CHECKING:
    from ..gitstore import TreeEntry


@route("GET", "/repos/{owner}/{repo}", perms=[("metadata", "read")])
def get_repo(ctx: Ctx):
    return 200, ctx.render.repo(ctx.repo)


@route("GET", "/repos/{owner}/{repo}/contents/{path}", perms=[("contents", "read")])
def get_contents(ctx: Ctx):
    repo = ctx.repo
    ref = ctx.query.get("ref") or repo.default_branch
    sha = ctx.state.resolve(repo, ref)
    if sha is None:
        raise HTTPError(404, f"No commit found for the ref {ref}")
    path = ctx.params["path"].strip("/")
    entry = repo.store.lookup_path(repo.store.commit(sha).tree, path)
    if entry is None:
        raise not_found()
    url = ctx.render.repo_url(repo)

    def describe(e: TreeEntry, p: str) -> dict:
        kind = {"40000": "dir", "160000": "submodule", "120000": "symlink"}.get(e.mode, "file")
        size = len(repo.store.data(e.sha) or b"") if kind in ("file", "symlink") else 0
        self_url = f"{url}/contents/{quote(p)}?ref={quote(ref)}"
        git_url = f"{url}/git/{'trees' if kind == 'dir' else 'blobs'}/{e.sha}"
        html = f"{HTML_BASE}/{repo.full_name}/{'tree' if kind == 'dir' else 'blob'}/{ref}/{quote(p)}"
        return {"type": kind, "size": size, "name": p.rsplit("/", 1)[-1], "path": p, "sha": e.sha,
                "url": self_url, "git_url": git_url, "html_url": html,
                "download_url": None if kind == "dir" else
                f"https://raw.githubusercontent.com/{repo.full_name}/{ref}/{quote(p)}",
                "_links": {"self": self_url, "git": git_url, "html": html}}

    if entry.mode == "40000":
        return 200, [describe(e, f"{path}/{e.name}") for e in repo.store.tree(entry.sha) or []]
    data = repo.store.data(entry.sha) or b""
    accept = ctx.request.headers.get("Accept", "")
    if "vnd.github.raw" in accept or "vnd.github.v3.raw" in accept:
        if len(data) > 100 * 1024 * 1024:
            raise HTTPError(403, "This API returns blobs up to 100 MB in size.")
        return 200, data, {"Content-Type": "application/vnd.github.raw"}
    out = describe(entry, path)
    if len(data) > 1024 * 1024:
        out.update({"content": "", "encoding": "none"})
    else:
        out.update({"content": b64_wrapped(data), "encoding": "base64"})
    if entry.mode == "120000":
        out["target"] = data.decode("utf-8", "replace")
    return 200, out


@route("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission", perms=[("metadata", "read")])
def collaborator_permission(ctx: Ctx):
    repo = ctx.repo
    login = ctx.params["username"]
    role = repo.permissions.get(login)
    if role is None:
        role = "admin" if login.lower() == repo.owner.lower() else ("none" if repo.private else "read")
    perm = {"maintain": "write", "triage": "read"}.get(role, role)
    user = ctx.state.user(login)
    user["permissions"] = {"admin": perm == "admin", "maintain": role in ("admin", "maintain"),
                           "push": perm in ("admin", "write"), "triage": role in ("admin", "maintain", "write", "triage"),
                           "pull": perm != "none"}
    user["role_name"] = role
    return 200, {"permission": perm, "role_name": role, "user": user}
