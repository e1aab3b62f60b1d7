"""Commits seen from pulls and comparisons."""

from __future__ import annotations


from ..common import HTML_BASE, HTTPError, not_found
from ..routing import Ctx, paginate, route


@route("GET", "/repos/{owner}/{repo}/commits/{commit_sha}/pulls", perms=[("pull_requests", "read")])
def pulls_for_commit(ctx: Ctx):
    s = ctx.state
    sha = s.resolve(ctx.repo, ctx.params["commit_sha"])
    if sha is None:
        raise HTTPError(422, f"No commit found for SHA: {ctx.params['commit_sha']}")
    prs = []
    for p in sorted(s.pulls.values(), key=lambda p: p.number, reverse=True):
        if p.repo is not ctx.repo:
            continue
        if p.head_repo is not p.repo and not p.merged:
            continue  # like GitHub: a fork's unmerged commits list no pull request on the base repository
        if sha == p.head_sha or sha in p.repo.store.commits_between(p.repo.store.merge_base(p.base_sha, p.head_sha),
                                                                    p.head_sha):
            prs.append(p)
    chunk, headers = paginate(ctx, prs)
    return 200, [ctx.render.pull(p, full=False) for p in chunk], headers


@route("GET", "/repos/{owner}/{repo}/compare/{basehead}", perms=[("contents", "read")])
def compare(ctx: Ctx):
    s = ctx.state
    bh = ctx.params["basehead"]
    if "..." not in bh:
        raise not_found()
    base_spec, head_spec = bh.split("...", 1)

    def side(spec: str) -> str:
        repo = ctx.repo
        parts = spec.split(":")
        if len(parts) == 3:
            repo = s.repos.get(f"{parts[0]}/{parts[1]}".lower())
        elif len(parts) == 2:
            repo = next((r for r in s.repos.values()
                         if r.owner.lower() == parts[0].lower() and r.name.lower() == ctx.repo.name.lower()), None)
        if repo is None:
            raise not_found()
        if repo is not ctx.repo:
            ctx.repo.store.objects.update(repo.store.objects)
        sha = s.resolve(repo, parts[-1])
        if sha is None:
            raise not_found()
        return sha

    base, head = side(base_spec), side(head_spec)
    store = ctx.repo.store
    mb = store.merge_base(base, head)
    ahead = store.commits_between(base, head)
    behind = store.commits_between(head, base)
    status = "identical" if base == head else ("ahead" if not behind else ("behind" if not ahead else "diverged"))
    files = s.diff(ctx.repo, mb, head) if mb else []
    url = ctx.render.repo_url(ctx.repo)
    if "page" in ctx.query or "per_page" in ctx.query:
        chunk, headers = paginate(ctx, ahead)
    else:
        chunk, headers = ahead[:250], {}
    return 200, {
        "url": f"{url}/compare/{bh}", "html_url": f"{HTML_BASE}/{ctx.repo.full_name}/compare/{bh}",
        "permalink_url": f"{HTML_BASE}/{ctx.repo.full_name}/compare/{base[:7]}...{head[:7]}",
        "diff_url": f"{HTML_BASE}/{ctx.repo.full_name}/compare/{bh}.diff",
        "patch_url": f"{HTML_BASE}/{ctx.repo.full_name}/compare/{bh}.patch",
        "base_commit": ctx.render.commit_rest(ctx.repo, base),
        "merge_base_commit": ctx.render.commit_rest(ctx.repo, mb) if mb else None,
        "status": status, "ahead_by": len(ahead), "behind_by": len(behind), "total_commits": len(ahead),
        "commits": [ctx.render.commit_rest(ctx.repo, c) for c in chunk],
        "files": [ctx.render.file(ctx.repo, f, head) for f in files[:300]],
    }, headers
