"""Reviews and review comments, with GitHub's checks on where a comment may land."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..common import HTTPError, MAX_COMMENT_BODY, not_found, parse_iso, unprocessable, validation_failed
from ..records import Review, ReviewComment
from ..routing import Ctx, _pr_or_404, paginate, route

if TYPE_CHECKING:
    from ..diffs import FileDiff, Hunk, HunkLine


def _diff_hunk_text(f: FileDiff, hunk: Hunk, upto_position: int) -> str:
    lines = f.patch_lines
    return "\n".join(lines[hunk.header_position:upto_position + 1])


def _locate(f: FileDiff, line: int, side: str) -> tuple[Hunk, HunkLine] | None:
    for h in f.hunks:
        for hl in h.lines:
            if side == "RIGHT" and hl.kind in (" ", "+") and hl.new == line:
                return h, hl
            if side == "LEFT" and hl.kind in (" ", "-") and hl.old == line:
                return h, hl
    return None


def _check_review_comment(f: FileDiff | None, c: dict) -> dict:
    """Validate one review comment against the diff; return its resolved placement."""
    if f is None:
        raise unprocessable("Path could not be resolved")
    if c.get("subject_type") == "file":
        return {"line": None, "side": None, "start_line": None, "start_side": None, "position": None,
                "diff_hunk": f.patch_lines[0] if f.patch else "", "subject_type": "file"}
    if c.get("line") is None and c.get("position") is None:
        raise unprocessable("Pull request review thread position or line is required")
    if c.get("line") is None:
        pos = c["position"]
        for h in f.hunks:
            for hl in h.lines:
                if hl.position == pos:
                    return {"line": hl.new if hl.kind != "-" else hl.old,
                            "side": "LEFT" if hl.kind == "-" else "RIGHT", "start_line": None,
                            "start_side": None, "position": pos, "diff_hunk": _diff_hunk_text(f, h, pos),
                            "subject_type": "line"}
        raise unprocessable("Pull request review thread position is invalid")
    side = c.get("side") or "RIGHT"
    if side not in ("LEFT", "RIGHT"):
        raise unprocessable(f"Pull request review thread side is invalid: {side}")
    hit = _locate(f, c["line"], side)
    if hit is None:
        raise unprocessable("Pull request review thread line must be part of the diff")
    hunk, hl = hit
    start_line = c.get("start_line")
    start_side = c.get("start_side") or (side if start_line is not None else None)
    if start_line is not None:
        if start_side not in ("LEFT", "RIGHT"):
            raise unprocessable(f"Pull request review thread start_side is invalid: {start_side}")
        if start_line >= c["line"] and start_side == side:
            raise unprocessable("Pull request review thread start_line must precede the end line")
        shit = _locate(f, start_line, start_side)
        if shit is None:
            raise unprocessable("Pull request review thread start line must be part of the diff")
        if shit[0] is not hunk:
            raise unprocessable("Pull request review thread start line must be in the same hunk as the line")
    return {"line": c["line"], "side": side, "start_line": start_line, "start_side": start_side,
            "position": hl.position, "diff_hunk": _diff_hunk_text(f, hunk, hl.position), "subject_type": "line"}


def _check_body_length(body: str | None, resource: str) -> None:
    if body is not None and len(body) > MAX_COMMENT_BODY:
        raise validation_failed(resource, "body", message=f"body is too long (maximum is {MAX_COMMENT_BODY} characters)")


@route("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews", perms=[("pull_requests", "write")])
def create_review(ctx: Ctx):
    s = ctx.state
    pr = _pr_or_404(ctx, ctx.params["pull_number"])
    body = ctx.body or {}
    event = body.get("event")
    text = body.get("body") or ""
    comments = body.get("comments") or []
    login = s.bot_login
    _check_body_length(text, "PullRequestReview")
    if event == "REQUEST_CHANGES" and not text:
        raise unprocessable("Body is required when using the REQUEST_CHANGES event")
    if event == "COMMENT" and not text and not comments:
        raise unprocessable("Body is required when using the COMMENT event without comments")
    if event in ("APPROVE", "REQUEST_CHANGES") and pr.user == login:
        raise unprocessable(f"Can not {'approve' if event == 'APPROVE' else 'request changes on'} your own pull request")
    if event is None and any(r.state == "PENDING" and r.user == login for r in s.reviews_of(pr.repo, pr.number)):
        raise unprocessable("User can only have one pending review per pull request")
    commit_id = body.get("commit_id") or pr.head_sha
    if pr.repo.store.kind(commit_id) != "commit" or commit_id not in pr.repo.store.ancestors(pr.head_sha):
        raise unprocessable("Commit ID could not be resolved" if pr.repo.store.kind(commit_id) != "commit"
                            else "Commit ID is not part of the pull request")
    _, files = s.pr_diff(pr, commit_id)
    by_path = {f.filename: f for f in files}
    placed = []
    for c in comments:  # validate everything before creating anything
        _check_body_length(c.get("body"), "PullRequestReviewComment")
        placed.append(_check_review_comment(by_path.get(c["path"]), c))
    now = s.now()
    state = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED",
             None: "PENDING"}[event]
    review = Review(s.next_id("review", 80000000), pr, login, text, state, commit_id,
                    None if state == "PENDING" else now)
    s.reviews[review.id] = review
    for c, p in zip(comments, placed):
        rc = ReviewComment(s.next_id("review_comment", 90000000), pr, review.id, login, c["body"], c["path"],
                           commit_id, p["line"], p["side"], p["start_line"], p["start_side"], p["position"],
                           p["diff_hunk"], now, now, subject_type=p["subject_type"])
        s.review_comments[rc.id] = rc
    return 200, ctx.render.review(review)


@route("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}", perms=[("pull_requests", "write")])
def update_review(ctx: Ctx):
    pr = _pr_or_404(ctx, ctx.params["pull_number"])
    r = ctx.state.reviews.get(int(ctx.params["review_id"]))
    if r is None or r.pr is not pr:
        raise not_found()
    if r.user != ctx.state.bot_login:
        raise HTTPError(403, "Resource not accessible by integration")
    _check_body_length(ctx.body["body"], "PullRequestReview")
    r.body = ctx.body["body"]
    return 200, ctx.render.review(r)


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/comments", perms=[("pull_requests", "read")])
def list_review_comments(ctx: Ctx):
    pr = _pr_or_404(ctx, ctx.params["pull_number"])
    comments = ctx.state.review_comments_of(pr.repo, pr.number)
    if ctx.query.get("since"):
        since = parse_iso(ctx.query["since"])[0]
        comments = [c for c in comments if c.updated_at >= since]
    sort = ctx.query.get("sort", "created")
    comments.sort(key=(lambda c: (c.updated_at, c.id)) if sort == "updated" else (lambda c: (c.created_at, c.id)),
                  reverse=ctx.query.get("direction", "asc") == "desc")
    chunk, headers = paginate(ctx, comments)
    return 200, [ctx.render.review_comment(c) for c in chunk], headers


@route("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies",
       perms=[("pull_requests", "write")])
def reply_review_comment(ctx: Ctx):
    """A reply in the thread of a *top-level* review comment of this PR.

    GitHub's reference for this operation says `comment_id` "must be the ID of a top-level review
    comment, not a reply to that comment. Replies to replies are not supported." Its OpenAPI
    description lists only 201 and 404, and no public report found states the exact answer body;
    a reply to a reply is refused here the way GitHub refuses a request it understands but will not
    process: 422 "Validation Failed", an error on `in_reply_to_id`. (This route used to walk up to
    the thread's root instead: lenient, so a client that sent a reply's id passed here and failed
    on GitHub.) A comment that is not one of this PR's, or was deleted, is 404.
    """
    s = ctx.state
    pr = _pr_or_404(ctx, ctx.params["pull_number"])
    parent = s.review_comments.get(int(ctx.params["comment_id"]))
    if parent is None or parent.pr is not pr:
        raise not_found()
    if parent.in_reply_to_id is not None:
        raise validation_failed("PullRequestReviewComment", "in_reply_to_id", "invalid",
                                "replies to replies are not supported: reply to the thread's top-level comment")
    _check_body_length(ctx.body["body"], "PullRequestReviewComment")
    now = s.now()
    review = Review(s.next_id("review", 80000000), pr, s.bot_login, "", "COMMENTED", parent.commit_id, now)
    s.reviews[review.id] = review
    rc = ReviewComment(s.next_id("review_comment", 90000000), pr, review.id, s.bot_login, ctx.body["body"],
                       parent.path, parent.commit_id, parent.line, parent.side, parent.start_line,
                       parent.start_side, parent.position, parent.diff_hunk, now, now, in_reply_to_id=parent.id,
                       subject_type=parent.subject_type)
    s.review_comments[rc.id] = rc
    return 201, ctx.render.review_comment(rc)


@route("PATCH", "/repos/{owner}/{repo}/pulls/comments/{comment_id}", perms=[("pull_requests", "write")])
def update_review_comment(ctx: Ctx):
    """Edit a review comment: only the App's own (anyone else's is 403 to an integration), within
    GitHub's body limit; a deleted one is 404. The body is checked against GitHub's description."""
    s = ctx.state
    c = s.review_comments.get(int(ctx.params["comment_id"]))
    if c is None or c.pr.repo is not ctx.repo:
        raise not_found()
    if c.user != s.bot_login:
        raise HTTPError(403, "Resource not accessible by integration")
    _check_body_length(ctx.body["body"], "PullRequestReviewComment")
    c.body = ctx.body["body"]
    c.updated_at = s.now()
    return 200, ctx.render.review_comment(c)
