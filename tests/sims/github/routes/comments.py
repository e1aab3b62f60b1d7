"""Issue comments and reactions."""

from __future__ import annotations


from ..common import HTTPError, PERM_LEVEL, REACTIONS, iso, node_id, not_found, parse_iso, validation_failed
from ..records import IssueComment
from .reviews import _check_body_length
from ..routing import Ctx, paginate, route


def _issue_or_404(ctx: Ctx) -> int:
    number = int(ctx.params["issue_number"])
    if (ctx.repo.key, number) not in ctx.state.issues:
        raise not_found()
    return number


@route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments",
       perms=[("issues", "read"), ("pull_requests", "read")])
def list_issue_comments(ctx: Ctx):
    number = _issue_or_404(ctx)
    comments = sorted(ctx.state.issue_comments_of(ctx.repo, number), key=lambda c: c.id)
    if ctx.query.get("since"):
        since = parse_iso(ctx.query["since"])[0]
        comments = [c for c in comments if c.updated_at >= since]
    chunk, headers = paginate(ctx, comments)
    return 200, [ctx.render.issue_comment(c) for c in chunk], headers


@route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments",
       perms=[("issues", "write"), ("pull_requests", "write")])
def create_issue_comment(ctx: Ctx):
    s = ctx.state
    number = _issue_or_404(ctx)
    if (ctx.repo.key, number) not in s.pulls and PERM_LEVEL.get(ctx.token.permissions.get("issues", "none")) < 2:
        raise HTTPError(403, "Resource not accessible by integration")
    _check_body_length(ctx.body["body"], "IssueComment")
    if not ctx.body["body"].strip():
        raise validation_failed("IssueComment", "body", "missing_field")
    now = s.now()
    c = IssueComment(s.next_id("issue_comment", 3000000000), ctx.repo, number, s.bot_login, ctx.body["body"],
                     now, now, via_app=True)
    s.issue_comments[c.id] = c
    out = ctx.render.issue_comment(c)
    return 201, out, {"Location": out["url"]}


@route("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}",
       perms=[("issues", "write"), ("pull_requests", "write")])
def update_issue_comment(ctx: Ctx):
    s = ctx.state
    c = s.issue_comments.get(int(ctx.params["comment_id"]))
    if c is None or c.repo is not ctx.repo:
        raise not_found()
    if c.user != s.bot_login:
        raise HTTPError(403, "Resource not accessible by integration")
    _check_body_length(ctx.body["body"], "IssueComment")
    c.body = ctx.body["body"]
    c.updated_at = s.now()
    return 200, ctx.render.issue_comment(c)


def _react(ctx: Ctx, reactions: list[dict]):
    s = ctx.state
    content = ctx.body["content"]
    if content not in REACTIONS:  # GitHub knows these eight and refuses any other
        raise validation_failed("Reaction", "content", "invalid")
    for r in reactions:
        if r["user"]["login"] == s.bot_login and r["content"] == content:
            return 200, r
    r = {"id": s.next_id("reaction", 100000000), "node_id": None, "user": s.user(s.bot_login),
         "content": content, "created_at": iso(s.now())}
    r["node_id"] = node_id("REA", r["id"])
    reactions.append(r)
    return 201, r


@route("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
       perms=[("issues", "write"), ("pull_requests", "write")])
def react_issue_comment(ctx: Ctx):
    c = ctx.state.issue_comments.get(int(ctx.params["comment_id"]))
    if c is None or c.repo is not ctx.repo:
        raise not_found()
    return _react(ctx, c.reactions)


@route("POST", "/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions", perms=[("pull_requests", "write")])
def react_review_comment(ctx: Ctx):
    c = ctx.state.review_comments.get(int(ctx.params["comment_id"]))
    if c is None or c.pr.repo is not ctx.repo:
        raise not_found()
    return _react(ctx, c.reactions)
