"""How a review session that did not publish ends honestly, and how a review GitHub made but
answered with a 5xx is not posted twice.

A review session is over when the coordinator has called `publish_review`. If it has not — its
call was refused and never sent again, the budget ran out, the session failed, or the agents
just ended their turn — the job did not finish its review: the check run must not say "no
findings". What can still be published: the valid parts of the last refused call.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import pydantic
from gidgethub import HTTPException

from app.errors import describe, is_transient
from app.logs import redact
from app.pipelines.checks import give_up_reason
from app.pipelines.review.publish import ReviewSession, publish_review
from app.sessions import SessionOutcome
from app.tools import ToolAnswer, ToolContext, ToolError, ToolRegistry
from app.tools.schemas import PublishReviewInput, ReviewComment, TestRun, split_unknown

log = logging.getLogger("prmedic.review")

EVENTS = ("COMMENT", "REQUEST_CHANGES", "APPROVE")


@dataclass
class RefusedPublish:
    """A `publish_review` call that was answered with an error: what was sent, and what the agent was told."""

    raw: Any
    answer: str


class WatchedTools(ToolRegistry):
    """The review job's tools, remembering the last `publish_review` call that was refused, until
    one goes through."""

    def __init__(self, base: ToolRegistry) -> None:
        super().__init__(base.tools())
        self.refused: RefusedPublish | None = None

    async def call(self, ctx: ToolContext, name: str, raw: Any) -> ToolAnswer:
        answer = await super().call(ctx, name, raw)
        if name == "publish_review":
            published = ctx.review is not None and ctx.review.published is not None
            self.refused = RefusedPublish(raw, answer.text) if answer.is_error and not published else None
        return answer


# -- a review GitHub made although it answered 5xx ----------------------------------------------

@dataclass
class ReviewPosts:
    """Review POSTs of this job whose fate is unknown: GitHub answered 5xx and looking for the
    review failed too. The next POST first looks for them."""

    unverified: list[dict[str, Any]] = dataclasses.field(default_factory=list)


async def landed_review(gh: Any, rs: ReviewSession, sent: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The review on the PR that is exactly one of those sent (same body, same commit), if GitHub made it."""
    wanted = {((s.get("body") or "").strip(), s.get("commit_id") or rs.head_sha) for s in sent}
    async for review in gh.getiter(f"/repos/{rs.repo}/pulls/{rs.pr_number}/reviews?per_page=100"):
        if (review.get("user") or {}).get("type") != "Bot":
            continue
        body = (review.get("body") or "").strip()
        if (body, review.get("commit_id")) in wanted or (body, rs.head_sha) in wanted:
            return review
    return None


class LandedReviews:
    """A GitHub client whose review POSTs answered 5xx (or left without an answer) are looked for on
    the PR before they count as failed: GitHub often makes the review and then answers 502, and
    posting it again would put two reviews on the PR."""

    def __init__(self, gh: Any, rs: ReviewSession, posts: ReviewPosts) -> None:
        self._gh = gh
        self._rs = rs
        self._posts = posts

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gh, name)

    async def post(self, url: str, url_vars: dict[str, Any] | None = None, *, data: Any, **kw: Any) -> Any:
        if not url.endswith("/reviews"):
            return await self._gh.post(url, url_vars or {}, data=data, **kw)
        if self._posts.unverified:
            landed = await landed_review(self._gh, self._rs, self._posts.unverified)
            self._posts.unverified.clear()
            if landed is not None:
                return self._adopt(landed, "an earlier answer was lost")
        try:
            return await self._gh.post(url, url_vars or {}, data=data, **kw)
        except HTTPException as exc:
            if int(exc.status_code) < 500:
                raise
            try:
                landed = await landed_review(self._gh, self._rs, [data])
            except Exception as inner:  # noqa: BLE001 - the POST's own error is the one to report
                log.warning("%s#%s: could not check whether the review landed: %s", self._rs.repo,
                            self._rs.pr_number, redact(describe(inner)))
                self._posts.unverified.append(data)
                raise exc from None
            if landed is None:
                raise
            return self._adopt(landed, f"GitHub answered {exc.status_code}")

    def _adopt(self, landed: dict[str, Any], why: str) -> dict[str, Any]:
        log.info("%s#%s: review %s was made (%s); not posting it again", self._rs.repo, self._rs.pr_number,
                 landed.get("id"), why)
        return landed


async def publish_review_once(ctx: ToolContext, args: PublishReviewInput) -> str:
    """`publish_review`, with review POSTs that GitHub answered 5xx looked for before they count as
    failed or are sent again (`ctx.review_posts`)."""
    rs, posts, github = ctx.review, ctx.review_posts, ctx.github
    assert rs is not None and posts is not None and github is not None  # the review pipeline sets them

    async def landed_aware() -> LandedReviews:
        return LandedReviews(await github(), rs, posts)

    return await publish_review(dataclasses.replace(ctx, github=landed_aware), args)


# -- what to say, and what can still be published ----------------------------------------------

def unfinished_reason(outcome: SessionOutcome | None, refused: RefusedPublish | None,
                      error: BaseException | None = None) -> str:
    """Why no review came out of the session, in words for a check run title."""
    if error is not None:
        ended = give_up_reason(error)
    elif outcome is not None and outcome.budget_reached:
        ended = "the budget ran out"
    else:
        ended = ""
    if refused is not None:
        return f"the agents' review was refused and, before it was sent again, {ended}" if ended else \
            "the agents' review was refused and never sent again"
    if error is not None:
        return ended
    if ended:
        return "the budget ran out before the agents published a review"
    return "the agents ended without publishing a review"


def _valid(model: type[pydantic.BaseModel], items: Any, field: str, dropped: list[str]) -> list[Any]:
    out = []
    for i, item in enumerate(items if isinstance(items, list) else []):
        try:
            out.append(model.model_validate(item))
        except pydantic.ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            dropped.append(f"`{field}.{i}` ({where + ': ' if where else ''}{first.get('msg')})")
    return out


def salvageable(raw: Any) -> tuple[PublishReviewInput | None, list[str]]:
    """The valid parts of a refused `publish_review` call (None if nothing is), and what was left out."""
    cleaned, _ = split_unknown(PublishReviewInput, raw if isinstance(raw, dict) else {}, "publish_review")
    dropped: list[str] = []
    comments = _valid(ReviewComment, cleaned.get("comments"), "comments", dropped)[:100]
    tests = _valid(TestRun, cleaned.get("tests_run"), "tests_run", dropped)[:50]
    summary = cleaned.get("summary") if isinstance(cleaned.get("summary"), str) else ""
    if not summary.strip():
        if not comments:
            return None, dropped
        summary = "The agents' summary was missing or not valid."
    event = str(cleaned.get("event") or "COMMENT").strip().upper()
    note = ("prmedic published this from the agents' review, which was refused and not sent again"
            + (f"; left out as not valid: {', '.join(dropped)}" if dropped else "") + ".")
    return PublishReviewInput(summary=f"{summary.strip()}\n\n_{note}_", comments=comments, tests_run=tests,
                              event=event if event in EVENTS else "COMMENT"), dropped


async def publish_refused(ctx: ToolContext, refused: RefusedPublish) -> str | None:
    """Publish the valid parts of the refused call; None when published, else why not."""
    args, dropped = salvageable(refused.raw)
    if args is None:
        return "nothing in it was valid" + (f" ({', '.join(dropped)})" if dropped else "")
    rs = ctx.review
    assert rs is not None
    for attempt in (1, 2):  # once more after a passing GitHub failure: the session is over, nobody else will
        try:
            await publish_review_once(ctx, args)
            return None
        except ToolError as exc:
            return redact(str(exc))
        except Exception as exc:  # noqa: BLE001 - reported on the check run
            if rs.published is not None:
                return None
            if attempt == 2 or not is_transient(exc):
                log.warning("%s#%s: the refused review could not be published: %s", rs.repo, rs.pr_number,
                            redact(describe(exc)))
                return redact(describe(exc))
    return None
