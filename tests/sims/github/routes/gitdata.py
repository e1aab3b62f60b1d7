"""The Git database: blobs, trees, commits and refs."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re

from ..common import HTTPError, b64_wrapped, node_id, not_found, parse_iso, validation_failed
from ..gitstore import Signature
from ..routing import Ctx, _commit_or, route


def _sha_param(ctx: Ctx, name: str) -> str:
    sha = ctx.params[name]
    if not re.fullmatch(r"[0-9a-f]{40}", sha):
        raise not_found()
    return sha


@route("GET", "/repos/{owner}/{repo}/git/commits/{commit_sha}", perms=[("contents", "read")])
def get_git_commit(ctx: Ctx):
    sha = _commit_or(ctx, _sha_param(ctx, "commit_sha"))
    return 200, ctx.render.commit_api(ctx.repo, sha)


@route("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}", perms=[("contents", "read")])
def get_git_tree(ctx: Ctx):
    store = ctx.repo.store
    sha = ctx.params["tree_sha"]
    resolved = sha if store.kind(sha) else ctx.state.resolve(ctx.repo, sha)
    if resolved is None:
        raise not_found()
    if store.kind(resolved) == "commit":
        resolved = store.commit(resolved).tree
    if store.kind(resolved) != "tree":
        raise HTTPError(422, "Invalid tree info")
    url = ctx.render.repo_url(ctx.repo)
    recursive = ctx.query.get("recursive") not in (None, "", "0", "false")

    def entries(tree: str, prefix: str) -> list[dict]:
        out = []
        for e in store.tree(tree) or []:
            p = prefix + e.name
            item = {"path": p, "mode": e.api_mode, "type": e.type, "sha": e.sha}
            if e.type == "blob":
                item["size"] = len(store.data(e.sha) or b"")
                item["url"] = f"{url}/git/blobs/{e.sha}"
            elif e.type == "tree":
                item["url"] = f"{url}/git/trees/{e.sha}"
            out.append(item)
            if recursive and e.type == "tree":
                out += entries(e.sha, p + "/")
        return out

    items = entries(resolved, "")
    truncated = len(items) > 100000
    return 200, {"sha": resolved, "url": f"{url}/git/trees/{resolved}", "tree": items[:100000],
                 "truncated": truncated}


@route("GET", "/repos/{owner}/{repo}/git/blobs/{file_sha}", perms=[("contents", "read")])
def get_git_blob(ctx: Ctx):
    sha = _sha_param(ctx, "file_sha")
    data = ctx.repo.store.data(sha, "blob")
    if data is None:
        raise not_found()
    accept = ctx.request.headers.get("Accept", "")
    if "vnd.github.raw" in accept:
        return 200, data, {"Content-Type": "application/vnd.github.raw"}
    url = ctx.render.repo_url(ctx.repo)
    return 200, {"sha": sha, "node_id": node_id("B", sha), "size": len(data), "url": f"{url}/git/blobs/{sha}",
                 "content": b64_wrapped(data), "encoding": "base64"}


@route("POST", "/repos/{owner}/{repo}/git/blobs", perms=[("contents", "write")])
def create_git_blob(ctx: Ctx):
    body = ctx.body
    enc = body.get("encoding", "utf-8")
    if enc in ("utf-8", "utf8"):
        data = body["content"].encode()
    elif enc == "base64":
        try:
            data = base64.b64decode(body["content"], validate=False)
        except (binascii.Error, ValueError):
            raise HTTPError(422, "Invalid base64 content")
    else:
        raise validation_failed("Blob", "encoding", "invalid", message=f"encoding {enc!r} is not supported")
    sha = ctx.repo.store.put_blob(data)
    url = f"{ctx.render.repo_url(ctx.repo)}/git/blobs/{sha}"
    return 201, {"url": url, "sha": sha}, {"Location": url}


@route("POST", "/repos/{owner}/{repo}/git/trees", perms=[("contents", "write")])
def create_git_tree(ctx: Ctx):
    store = ctx.repo.store
    base = ctx.body.get("base_tree")
    if base is not None and store.kind(base) != "tree":
        raise HTTPError(404, "Not Found") if store.kind(base) is None else \
            HTTPError(422, f"base_tree {base} is not a valid tree oid")
    sha = ctx.state.build_tree(ctx.repo, base, ctx.body["tree"])
    return 201, get_git_tree(dataclasses.replace(ctx, params={**ctx.params, "tree_sha": sha}, query={}))[1]


@route("POST", "/repos/{owner}/{repo}/git/commits", perms=[("contents", "write")])
def create_git_commit(ctx: Ctx):
    s = ctx.state
    store = ctx.repo.store
    body = ctx.body
    if store.kind(body["tree"]) != "tree":
        raise HTTPError(422, "Tree SHA does not exist")
    parents = body.get("parents", [])
    for p in parents:
        if store.kind(p) != "commit":
            raise HTTPError(422, "Parent SHA does not exist or is not a commit object")
    now = int(s.now())

    def sig(d: dict | None, fallback: Signature) -> Signature:
        if not d:
            return fallback
        ts, tz = parse_iso(d["date"]) if d.get("date") else (now, 0)
        return Signature(d.get("name", fallback.name), d.get("email", fallback.email), ts, tz)

    bot = Signature(s.bot_login, s.bot_email, now, 0)
    author = sig(body.get("author"), bot)
    committer = sig(body.get("committer"), author if body.get("author") else bot)
    sha = store.put_commit(body["tree"], parents, author, committer, body["message"], body.get("signature"))
    out = ctx.render.commit_api(ctx.repo, sha)
    return 201, out, {"Location": out["url"]}


def _ref_json(ctx: Ctx, ref: str) -> dict:
    sha = ctx.repo.refs[ref]
    url = ctx.render.repo_url(ctx.repo)
    kind = ctx.repo.store.kind(sha) or "commit"
    return {"ref": ref, "node_id": node_id("REF", f"{ctx.repo.id}:{ref}"), "url": f"{url}/git/{ref}",
            "object": {"type": kind, "sha": sha, "url": f"{url}/git/{kind}s/{sha}"}}


@route("GET", "/repos/{owner}/{repo}/git/ref/{ref}", perms=[("contents", "read")])
def get_ref(ctx: Ctx):
    ref = ctx.params["ref"]
    if ref.startswith("refs/"):
        raise not_found()  # GitHub wants "heads/main", not "refs/heads/main"
    full = f"refs/{ref}"
    if full not in ctx.repo.refs:
        raise not_found()
    return 200, _ref_json(ctx, full)


@route("POST", "/repos/{owner}/{repo}/git/refs", perms=[("contents", "write")])
def create_ref(ctx: Ctx):
    ref, sha = ctx.body["ref"], ctx.body["sha"]
    if not ref.startswith("refs/") or ref.count("/") < 2:
        raise HTTPError(422, "Reference name must start with 'refs/' and have at least two slashes.")
    if (not re.fullmatch(r"refs/[A-Za-z0-9._/\-]+", ref) or ".." in ref or ref.endswith((".lock", "/", "."))
            or "//" in ref):
        raise HTTPError(422, f"{ref} is not a valid ref name.")
    if ref in ctx.repo.refs:
        raise HTTPError(422, "Reference already exists")
    if ctx.repo.store.kind(sha) is None:
        raise HTTPError(422, "Object does not exist")
    if ref.startswith("refs/heads/") and ctx.repo.store.kind(sha) != "commit":
        raise HTTPError(422, "Object is not a commit")
    ctx.repo.refs[ref] = sha
    out = _ref_json(ctx, ref)
    return 201, out, {"Location": out["url"]}


@route("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}", perms=[("contents", "write")])
def update_ref(ctx: Ctx):
    repo = ctx.repo
    full = "refs/" + ctx.params["ref"].removeprefix("refs/")
    if full not in repo.refs:
        raise HTTPError(422, "Reference does not exist")
    sha = ctx.body["sha"]
    if repo.store.kind(sha) != "commit":
        raise HTTPError(422, "Object does not exist")
    old = repo.refs[full]
    if not ctx.body.get("force", False) and old not in repo.store.ancestors(sha):
        raise HTTPError(422, "Update is not a fast forward")
    repo.refs[full] = sha
    if full.startswith("refs/heads/"):
        branch = full[len("refs/heads/"):]
        for pr in ctx.state.pulls.values():
            if pr.head_repo is repo and pr.head_ref == branch and pr.state == "open":
                if pr.repo is not repo:
                    pr.repo.store.objects.update(repo.store.objects)
                pr.repo.refs[f"refs/pull/{pr.number}/head"] = sha
                pr.head_sha_fixed = sha
                pr.updated_at = ctx.state.now()
    return 200, _ref_json(ctx, full)


@route("DELETE", "/repos/{owner}/{repo}/git/refs/{ref}", perms=[("contents", "write")])
def delete_ref(ctx: Ctx):
    full = "refs/" + ctx.params["ref"].removeprefix("refs/")
    if full not in ctx.repo.refs:
        raise HTTPError(422, "Reference does not exist")
    del ctx.repo.refs[full]
    return 204, None
