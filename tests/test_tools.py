"""The custom-tool contract: tolerant about form (GitHub's field names, unknown fields ignored and
reported), strict about meaning (every field at fault named in one refusal), and no tool offered to
an agent without a handler — checked by `prmedic agents check` and answered in every session."""

from __future__ import annotations

import pytest
from review_helpers import REPO, PullRequestRepo
from test_fix_pipeline import GOOD, Project, fix_script, propose, tool_results

from app.agents.definitions import load_definitions
from app.store import Job, JobKind, JobState
from app.tools import ToolContext, ToolRegistry, default_registry
from app.tools.reply import REPLY_MARKER
from app.tools.schemas import PublishReviewInput

try:
    from sims.managed_agents import normal_review_run
except ImportError:  # pragma: no cover
    from tests.sims.managed_agents import normal_review_run


def job(kind: JobKind = JobKind.review) -> Job:
    return Job(id=1, kind=kind, repo="octo-org/widgets", pr_number=2, head_sha="a" * 40, state=JobState.running,
               max_attempts=3, created_at=0.0, updated_at=0.0)


def echo_registry(seen: list) -> ToolRegistry:
    registry = ToolRegistry()

    async def publish(ctx, args: PublishReviewInput) -> str:
        seen.append(args)
        return f"Published with {len(args.comments)} comment(s)."

    registry.register("publish_review", PublishReviewInput, publish)
    return registry


GITHUB_STYLE_COMMENT = {"path": "src/app.py", "line": 41, "side": "RIGHT", "severity": "major", "body": "Bug.",
                        "position": 7, "commit_id": "f" * 40, "subject_type": "line"}


# -- tolerant about form, strict about meaning ------------------------------------------------

async def test_fields_the_contract_does_not_know_are_ignored_and_listed_after_the_answer(store):
    seen: list[PublishReviewInput] = []
    raw = {"summary": "One bug.", "event": "comment", "commit_id": "f" * 40,
           "comments": [{"path": "a.py", "line": 3, "severity": "Minor", "body": "x"},
                        {"path": "a.py", "line": 4, "severity": "minor", "body": "y", "in_reply_to": 12},
                        GITHUB_STYLE_COMMENT | {"side": "right", "start_line": 40, "start_side": "right"}]}
    answer = await echo_registry(seen).call(ToolContext(job=job(), store=store), "publish_review", raw)

    assert not answer.is_error, answer.text
    (args,) = seen
    assert args.event == "COMMENT" and [c.severity for c in args.comments] == ["minor", "minor", "major"]
    assert (args.comments[2].side, args.comments[2].start_side, args.comments[2].start_line) == ("RIGHT", "RIGHT", 40)
    handler_text, _, ignored = answer.text.partition("\n\n")
    assert handler_text == "Published with 3 comment(s)."
    assert ignored.splitlines() == [
        "ignored: commit_id — not a field of publish_review",
        "ignored: comments.1.in_reply_to — not a field of publish_review",
        "ignored: comments.2.position — not a field of publish_review",
        "ignored: comments.2.commit_id — not a field of publish_review",
        "ignored: comments.2.subject_type — not a field of publish_review",
    ]


async def test_githubs_body_means_summary_only_when_summary_is_absent(store):
    seen: list[PublishReviewInput] = []
    registry, ctx = echo_registry(seen), ToolContext(job=job(), store=store)
    alone = await registry.call(ctx, "publish_review", {"body": "The summary, GitHub-style."})
    both = await registry.call(ctx, "publish_review", {"summary": "Ours.", "body": "GitHub's."})
    assert not alone.is_error and "ignored" not in alone.text
    assert not both.is_error and "ignored: body — `summary` is given" in both.text
    assert [a.summary for a in seen] == ["The summary, GitHub-style.", "Ours."]


async def test_a_refusal_names_every_field_at_fault_in_every_comment_at_once(store):
    seen: list = []
    raw = {"summary": "", "event": "MERGE", "position": 3,
           "comments": [{"path": "a.py", "line": 0, "severity": "major", "body": "x"},
                        {"path": "a.py", "line": 5, "body": "y", "side": "UP"},
                        {"path": "a.py", "line": 5, "severity": "minor", "body": "z", "start_line": 2,
                         "start_side": "MIDDLE"},
                        {"path": "a.py", "line": 5, "severity": "nit", "body": "w", "start_line": 9}]}
    answer = await echo_registry(seen).call(ToolContext(job=job(), store=store), "publish_review", raw)
    assert answer.is_error and not seen
    for fault in ("- summary:", "- event:", "- comments.0.line:", "- comments.1.severity: is required",
                  "- comments.1.side:", "- comments.2.start_side:", "- comments.3: start_line must not be after line"):
        assert fault in answer.text, answer.text
    assert answer.text.endswith("ignored: position — not a field of publish_review")


def test_start_side_is_checked_like_side():
    def check(**kw):
        return PublishReviewInput.model_validate({"summary": "s", "comments": [
            {"path": "a.py", "line": 10, "severity": "major", "body": "b", **kw}]}).comments[0]

    assert check(start_line=10, start_side="left", side="right").start_side == "LEFT"
    assert check(start_line=12, start_side="LEFT", side="RIGHT").start_line == 12  # another side: GitHub orders by diff
    with pytest.raises(ValueError, match="start_side is given without start_line"):
        check(start_side="LEFT")


# -- every offered tool is answered by a real handler ----------------------------------------

async def test_a_tool_of_another_kind_of_job_is_refused_with_what_to_do_instead(store):
    registry = default_registry()
    review = ToolContext(job=job(JobKind.review), store=store, review=object())
    fix = ToolContext(job=job(JobKind.fix), store=store, fix=object(), ci_logs=object())
    answer = await registry.call(review, "propose_fix", {"title": "t", "patch": "p"})
    assert answer.is_error and "`suggestion`" in answer.text
    assert answer.text.startswith("propose_fix does not apply to this review job; nothing was done.")
    answer = await registry.call(review, "read_ci_log", {"job_id": 1})
    assert answer.is_error and "does not apply to this review job" in answer.text
    answer = await registry.call(fix, "publish_review", {"summary": "s"})
    assert answer.is_error and "does not apply to this fix job" in answer.text and "propose_fix" in answer.text


# -- scripted agents, end to end ----------------------------------------------------------------

async def test_a_review_session_answers_every_offered_tool_and_reply_keeps_one_comment(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.sim
    pr = PullRequestRepo(state, git_repo)
    pr.set_config("review:\n  depth: deep\n")  # the coordinator: the lead offered every tool
    range_across_sides = {"path": "src/app.py", "start_line": 10, "start_side": "LEFT", "line": 10, "side": "RIGHT",
                          "severity": "blocker", "body": "Dividing by `len(items)` fails for an empty list.",
                          "position": 3, "commit_id": pr.head}
    sim.default_script = normal_review_run(custom_calls=[
        ("report_progress", {"message": "Reviewing.", "status": "in_progress"}),
        ("reply", {"body": "Looking at it."}),
        ("propose_fix", {"title": "Fix", "patch": "--- a/x\n+++ b/x\n"}),
        ("read_ci_log", {"job_id": 1}),
        ("write_description", {"body": "What the change does."}),
        ("publish_review", {"body": "One real bug.", "commit_id": pr.head,
                            "comments": [GITHUB_STYLE_COMMENT, range_across_sides]}),
        ("reply", {"body": "Reviewed: one blocker, one major."}),
    ])
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()

    results = {r.name: r for s in sim.sessions.values() for r in s.tool_results}
    assert not any("Unknown tool" in r.text for s in sim.sessions.values() for r in s.tool_results)
    assert set(results) == set(load_definitions().coordinator.custom_tools)
    assert not results["report_progress"].is_error
    assert results["report_progress"].text.endswith("ignored: status — not a field of report_progress")
    assert results["propose_fix"].is_error and "does not apply to this review job" in results["propose_fix"].text
    assert results["read_ci_log"].is_error and "does not apply to this review job" in results["read_ci_log"].text
    assert results["write_description"].is_error and "does not apply to this review job" in \
        results["write_description"].text and pr.pr.body == "Adds `total()`."

    published = results["publish_review"]
    assert not published.is_error, published.text
    for line in ("ignored: commit_id", "ignored: comments.0.position", "ignored: comments.0.commit_id",
                 "ignored: comments.1.position"):
        assert line in published.text, published.text
    (review,) = state.reviews_of(REPO, pr.pr.number)
    assert "\n\nOne real bug.\n\n" in review.body
    comments = sorted(state.review_comments_of(REPO, pr.pr.number), key=lambda c: c.line)
    assert [(c.line, c.side, c.start_line, c.start_side) for c in comments] == [
        (10, "RIGHT", 10, "LEFT"), (41, "RIGHT", None, None)]

    (answer,) = state.issue_comments_of(REPO, pr.pr.number)
    assert answer.body.startswith(REPLY_MARKER) and "Reviewed: one blocker, one major." in answer.body
    first, second = [r for s in sim.sessions.values() for r in s.tool_results if r.name == "reply"]
    assert not first.is_error and not second.is_error
    assert state.violations == []


async def test_a_fix_session_refuses_publish_review_and_replies(app_stack, git_repo, deliver):
    project = Project(app_stack, git_repo)
    project.failing_job(4242)
    app_stack.sim.default_script = fix_script(
        ("publish_review", {"summary": "The fix."}), ("reply", {"body": "Reproduced; fixing."}),
        propose(project.patch({"src/calc.py": GOOD})))
    await deliver("check_run", project.check_run_event(4242))
    await app_stack.run_jobs()

    publish, reply, proposed = [r for r in tool_results(app_stack.sim) if r.name != "report_verification"]
    assert publish.is_error and publish.text.startswith("publish_review does not apply to this fix job")
    assert not reply.is_error and not proposed.is_error, (reply.text, proposed.text)
    bodies = sorted(c.body.split("\n", 1)[0] for c in app_stack.github_state.issue_comments_of("octo-org/calc", 7))
    assert bodies == ["<!-- prmedic:fix -->", REPLY_MARKER]
