"""`/ask`: an answer grounded in the code, from a session of its own, in the command's answer comment."""

from __future__ import annotations

from command_helpers import _command_job, command, finished, reactions
from review_helpers import REPO

try:
    from sims.managed_agents import normal_review_run
except ImportError:  # pragma: no cover
    from tests.sims.managed_agents import normal_review_run

ANSWER = "`total()` skips the first item: `src/app.py:42` slices `items[1:]`. Checked by reading the function."


def ask_script(*calls, final_text: str = "Answered."):
    return normal_review_run(custom_calls=list(calls), final_text=final_text)


def task_of(app_stack) -> str:
    (session,) = app_stack.sim.sessions.values()
    return "".join(block["text"] for block in session.user_messages[0]["content"])


async def test_ask_answers_in_the_command_comment_with_progress_cost_and_duration(app_stack, pr):
    app_stack.sim.default_script = ask_script(
        ("report_progress", {"message": "Reading total()", "done": ["read the diff"], "todo": ["answer"]}),
        ("reply", {"body": ANSWER}))
    cid, answer, comment = await command(app_stack, pr, "/ask why does total() return 5 for [1, 2, 3]?")
    job = await finished(app_stack, cid)
    assert job.result["result"] == "answered" and job.result["session_id"]
    assert ANSWER in answer
    assert "`/ask` by @maintainer · Cost (list price): $" in answer and "Duration:" in answer
    assert reactions(comment) == ["eyes", "rocket"]
    task = task_of(app_stack)
    assert "# prmedic job: `/ask`, asked by @maintainer" in task
    assert "why does total() return 5 for [1, 2, 3]?" in task and "src/app.py (modified" in task
    # the PR's own reply comment is not used: one answer per command comment
    assert not [c for c in app_stack.state.issue_comments_of(REPO, pr.pr.number) if "prmedic:reply" in c.body]
    (session,) = app_stack.sim.sessions.values()
    assert pr.head in str(session.resources)  # the PR's head is mounted, read-only
    assert session.budget["max_list_cost"]["amount"] == "300"  # budget.command_usd (3.00)
    assert app_stack.state.violations == []


async def test_ask_without_an_answer_says_so_and_is_not_a_success(app_stack, pr):
    app_stack.sim.default_script = ask_script(final_text="I could not find it.")
    cid, answer, comment = await command(app_stack, pr, "/ask where is the cache?")
    job = await finished(app_stack, cid)
    assert job.result["result"] == "no_answer"
    assert "`/ask` ended without an answer: the agents ended without answering." in answer
    assert "> I could not find it." in answer
    assert reactions(comment) == ["eyes", "confused"]


async def test_ask_without_a_question_says_how_to_ask_and_starts_no_session(app_stack, pr):
    cid, answer, comment = await command(app_stack, pr, "/ask")
    assert (await finished(app_stack, cid)).result["result"] == "usage"
    assert "`/ask` needs a question" in answer and not app_stack.sim.sessions


async def test_a_second_reply_replaces_the_first_in_the_same_comment(app_stack, pr):
    app_stack.sim.default_script = ask_script(("reply", {"body": "First draft."}), ("reply", {"body": ANSWER}))
    cid, answer, _ = await command(app_stack, pr, "/ask what does this change?")
    await finished(app_stack, cid)
    assert ANSWER in answer and "First draft." not in answer


async def test_a_readers_ask_is_allowed_by_default(app_stack, pr):
    app_stack.sim.default_script = ask_script(("reply", {"body": ANSWER}))
    cid, answer, _ = await command(app_stack, pr, "/ask is this safe?", user="reader")
    assert (await finished(app_stack, cid)).result["result"] == "answered"


async def test_ask_when_anthropic_keeps_failing_says_it_failed_after_the_last_attempt(app_stack, pr):
    app_stack.sim.fail_next_session_creates(1000, status=529)
    cid, answer, comment = await command(app_stack, pr, "/ask where is the cache?")
    job = await _command_job(app_stack, cid)
    assert job.state.value == "failed" and job.attempts == job.max_attempts
    assert answer is not None and "`/ask` failed:" in answer and "working on it" not in answer
    assert reactions(comment)[-1] == "confused" and "rocket" not in reactions(comment)
    assert not app_stack.sim.sessions
