"""Pull requests: list, create, get, update, files, commits, reviews listed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..common import HTTPError, MAX_COMMENT_BODY, MAX_PR_COMMITS, MAX_PR_FILES, ZERO_SHA, validation_failed
from ..routing import Ctx, _pr_or_404, paginate, route

if TYPE_CHECKING:
    from ..records import Repo


def _parse_head(ctx: Ctx, head: str, head_repo_name: str | None) -> tuple[Repo | None, str]:
    s = ctx.state
    base = ctx.repo
    if ":" in head:
        owner, ref = head.split(":", 1)
    else:
        owner, ref = base.owner, head
    if head_repo_name:
        hr = s.repos.get(head_repo_name.lower()) or s.repos.get(f"{owner}/{head_repo_name}".lower())
        return hr, ref
    if owner.lower() == base.owner.lower():
        return base, ref
    for r in s.repos.values():  # a fork in the same network owned by `owner`
        if r.owner.lower() == owner.lower() and r.fork_of is not None:
            root, broot = r, base
            while root.fork_of is not None:
                root = root.fork_of
            while broot.fork_of is not None:
                broot = broot.fork_of
            if root is broot:
                return r, ref
    return None, ref


@route("GET", "/repos/{owner}/{repo}/pulls", perms=[("pull_requests", "read")])
def list_pulls(ctx: Ctx):
    q = ctx.query
    state = q.get("state", "open")
    prs = [p for p in ctx.state.pulls.values() if p.repo is ctx.repo]
    if state != "all":
        prs = [p for p in prs if p.state == state]
    if q.get("head"):
        owner, _, ref = q["head"].partition(":")
        prs = [p for p in prs if p.head_repo.owner.lower() == owner.lower() and (not ref or p.head_ref == ref)]
    if q.get("base"):
        prs = [p for p in prs if p.base_ref == q["base"]]
    sort = q.get("sort", "created")
    direction = q.get("direction", "desc" if sort == "created" else "asc")
    keyf = {"created": lambda p: (p.created_at, p.number), "updated": lambda p: (p.updated_at, p.number)}.get(
        sort, lambda p: (p.created_at, p.number))
    prs.sort(key=keyf, reverse=direction == "desc")
    chunk, headers = paginate(ctx, prs)
    return 200, [ctx.render.pull(p, full=False) for p in chunk], headers


@route("POST", "/repos/{owner}/{repo}/pulls", perms=[("pull_requests", "write")])
def create_pull(ctx: Ctx):
    s = ctx.state
    body = ctx.body
    repo = ctx.repo
    if not body.get("title") and not body.get("issue"):
        raise validation_failed("PullRequest", "title", "missing_field")
    base_ref = body["base"]
    if repo.branch_sha(base_ref) is None:
        raise validation_failed("PullRequest", "base", "invalid")
    hrepo, head_ref = _parse_head(ctx, body["head"], body.get("head_repo"))
    if hrepo is None or hrepo.branch_sha(head_ref) is None:
        raise validation_failed("PullRequest", "head", "invalid")
    if hrepo is not repo:
        repo.store.objects.update(hrepo.store.objects)
    ahead = repo.store.commits_between(repo.branch_sha(base_ref), hrepo.branch_sha(head_ref))
    if not ahead:
        raise validation_failed("PullRequest", message=f"No commits between {base_ref} and {body['head']}")
    for p in s.pulls.values():
        if p.repo is repo and p.state == "open" and p.head_repo is hrepo and p.head_ref == head_ref \
                and p.base_ref == base_ref:
            raise validation_failed("PullRequest",
                                    message=f"A pull request already exists for {hrepo.owner}:{head_ref}.")
    login = s.bot_login
    pr = s.add_pull_request(repo, head_ref=head_ref, base_ref=base_ref, user=login, head_repo=hrepo,
                            title=body.get("title") or f"Issue {body.get('issue')}", body=body.get("body"),
                            draft=bool(body.get("draft", False)))
    pr.maintainer_can_modify = bool(body.get("maintainer_can_modify", False))
    out = ctx.render.pull(pr)
    return 201, out, {"Location": out["url"]}


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", perms=[("pull_requests", "read")])
def get_pull(ctx: Ctx):
    pr = _pr_or_404(ctx, ctx.params["pull_number"])
    accept = ctx.request.headers.get("Accept", "")
    if "vnd.github.diff" in accept or "vnd.github.v3.diff" in accept:
        _, files = ctx.state.pr_diff(pr)
        parts = []
        for f in files:
            oldp, newp = f.old_path or f.filename, f.filename
            parts.append(f"diff --git a/{oldp} b/{newp}")
            if f.status == "added":
                parts.append(f"new file mode {f.new_mode}")
            elif f.status == "removed":
                parts.append(f"deleted file mode {f.old_mode}")
            parts.append(f"index {(f.old_sha or ZERO_SHA)[:7]}..{(f.new_sha or ZERO_SHA)[:7]}")
            if f.patch:
                parts.append(f"--- {'a/' + oldp if f.old_sha else '/dev/null'}")
                parts.append(f"+++ {'b/' + newp if f.new_sha else '/dev/null'}")
                parts.append(f.patch)
        return 200, ("\n".join(parts) + "\n").encode(), {"Content-Type": "application/vnd.github.diff"}
    return 200, ctx.render.pull(pr)


@route("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}", perms=[("pull_requests", "write")])
def update_pull(ctx: Ctx):
    """Title, body and maintainer_can_modify; a change of state or base is not simulated (501)."""
    pr = _pr_or_404(ctx, ctx.params["pull_number"])
    body = ctx.body or {}
    if "state" in body or "base" in body:
        raise HTTPError(501, "The simulator does not change a pull request's state or base")
    if "title" in body:
        if not (body["title"] or "").strip():
            raise validation_failed("PullRequest", "title", "missing_field")
        pr.title = body["title"]
    if "body" in body:
        if body["body"] is not None and len(body["body"]) > MAX_COMMENT_BODY:
            raise validation_failed("PullRequest", "body",
                                    message=f"body is too long (maximum is {MAX_COMMENT_BODY} characters)")
        pr.body = body["body"]
    if "maintainer_can_modify" in body:
        pr.maintainer_can_modify = bool(body["maintainer_can_modify"])
    pr.updated_at = ctx.state.now()
    issue = ctx.state.issues.get((pr.repo.key, pr.number))
    if issue is not None:
        issue.title, issue.body, issue.updated_at = pr.title, pr.body, pr.updated_at
    return 200, ctx.render.pull(pr)


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files", perms=[("pull_requests", "read")])
def pull_files(ctx: Ctx):
    pr = _pr_or_404(ctx, ctx.params["pull_number"])
    _, files = ctx.state.pr_diff(pr)
    chunk, headers = paginate(ctx, files[:MAX_PR_FILES])
    return 200, [ctx.render.file(pr.repo, f, pr.head_sha) for f in chunk], headers


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/commits", perms=[("pull_requests", "read")])
def pull_commits(ctx: Ctx):
    pr = _pr_or_404(ctx, ctx.params["pull_number"])
    base = pr.repo.store.merge_base(pr.base_sha, pr.head_sha)
    commits = pr.repo.store.commits_between(base, pr.head_sha)[:MAX_PR_COMMITS]
    chunk, headers = paginate(ctx, commits)
    return 200, [ctx.render.commit_rest(pr.repo, c) for c in chunk], headers


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews", perms=[("pull_requests", "read")])
def list_reviews(ctx: Ctx):
    pr = _pr_or_404(ctx, ctx.params["pull_number"])
    reviews = sorted(ctx.state.reviews_of(pr.repo, pr.number), key=lambda r: r.id)
    chunk, headers = paginate(ctx, reviews)
    return 200, [ctx.render.review(r) for r in chunk], headers
