"""Commands written in a review thread are answered in that thread: a reply to the thread's
top-level comment (GitHub takes no reply to a reply), updated in place, with the thread's file,
line and diff hunk in `/ask`'s question; when the thread is gone, on the conversation under a
quote of where it was asked."""

from __future__ import annotations

from command_helpers import command, finished, reactions, review_comment_event, review_reply_event
from review_helpers import REPO

from app.pipelines.commands.feedback import Feedback, asked_in_thread

try:
    from sims.github_fixtures import INSTALLATION_ID
    from sims.managed_agents import normal_review_run
except ImportError:  # pragma: no cover
    from tests.sims.github_fixtures import INSTALLATION_ID
    from tests.sims.managed_agents import normal_review_run

ANSWER = "`total()` skips the first item: `src/app.py:42` slices `items[1:]`."
HUNK = "@@ -38,4 +38,5 @@ def total(items):\n     result = 0\n-    for item in items:\n+    for item in items[1:]:"


def ask_script(*calls):
    return normal_review_run(custom_calls=list(calls), final_text="Answered.")


def task_of(app_stack) -> str:
    (session,) = app_stack.sim.sessions.values()
    return "".join(block["text"] for block in session.user_messages[0]["content"])


def marked(comments, comment_id: int) -> list:
    return [c for c in comments if f"<!-- prmedic:command:{comment_id} -->" in c.body]


def in_threads(app_stack, pr, comment_id: int) -> list:
    """prmedic's answers to command comment `comment_id` among the PR's review comments."""
    return marked(app_stack.state.review_comments_of(REPO, pr.pr.number), comment_id)


def on_conversation(app_stack, pr, comment_id: int) -> list:
    return marked(app_stack.state.issue_comments_of(REPO, pr.pr.number), comment_id)


def refused_replies(app_stack) -> list:
    return [r for r in app_stack.state.refusals if r.path.endswith("/replies")]


def calls(app_stack, method: str, path: str) -> int:
    return sum(1 for r in app_stack.state.requests if r.method == method and r.path == path)


async def deliver(app_stack, data: dict) -> int:
    await app_stack.deliver("pull_request_review_comment", data)
    await app_stack.run_jobs()
    return data["comment"]["id"]


async def test_ask_in_a_review_thread_is_answered_in_that_thread_about_its_file_and_line(app_stack, pr):
    app_stack.sim.default_script = ask_script(("reply", {"body": ANSWER}))
    data = review_comment_event(pr, "/ask why does the loop skip one item?")
    data["comment"].update(diff_hunk=HUNK, side="RIGHT")
    cid = await deliver(app_stack, data)
    job = await finished(app_stack, cid)
    assert job.result["result"] == "answered"
    (reply,) = in_threads(app_stack, pr, cid)
    assert reply.in_reply_to_id == cid and reply.user == app_stack.state.bot_login
    assert (reply.path, reply.line) == ("src/app.py", 41)
    assert ANSWER in reply.body and "`/ask` by @maintainer" in reply.body
    assert job.result["answer_url"].endswith(f"#discussion_r{reply.id}")
    assert on_conversation(app_stack, pr, cid) == []
    assert reactions(app_stack.state.review_comments[cid]) == ["eyes", "rocket"]
    task = task_of(app_stack)
    assert "In a review thread on `src/app.py` line 41 (new version)" in task
    assert "+    for item in items[1:]:" in task and "why does the loop skip one item?" in task
    assert app_stack.state.violations == [] and refused_replies(app_stack) == []


async def test_a_command_written_as_a_reply_is_answered_under_the_threads_top_comment(app_stack, pr):
    app_stack.sim.default_script = ask_script(("reply", {"body": ANSWER}))
    top = pr.state.add_review_comment(REPO, pr.pr.number, "reader", "Is this off by one?", path="src/app.py", line=41)
    cid = await deliver(app_stack, review_reply_event(pr, top.id, "/ask is it off by one?"))
    assert (await finished(app_stack, cid)).result["result"] == "answered"
    (reply,) = in_threads(app_stack, pr, cid)
    assert reply.in_reply_to_id == top.id  # not the command's own id: GitHub takes no reply to a reply
    assert ANSWER in reply.body and on_conversation(app_stack, pr, cid) == []
    assert reactions(app_stack.state.review_comments[cid]) == ["eyes", "rocket"]
    assert "In a review thread on `src/app.py` line 41" in task_of(app_stack)
    assert app_stack.state.violations == [] and refused_replies(app_stack) == []


async def test_config_in_a_thread_is_answered_in_the_thread(app_stack, pr):
    top = pr.state.add_review_comment(REPO, pr.pr.number, "reader", "Which rules apply here?", path="src/app.py",
                                      line=41)
    cid = await deliver(app_stack, review_reply_event(pr, top.id, "/config"))
    assert (await finished(app_stack, cid)).result["result"] == "answered"
    (reply,) = in_threads(app_stack, pr, cid)
    assert reply.in_reply_to_id == top.id and "```yaml" in reply.body
    assert on_conversation(app_stack, pr, cid) == []


async def test_the_answer_in_a_thread_is_updated_in_place_without_listing_again(app_stack, pr):
    app_stack.sim.default_script = ask_script(
        ("report_progress", {"message": "Reading total()", "done": ["read the diff"], "todo": ["answer"]}),
        ("reply", {"body": "First draft."}), ("reply", {"body": ANSWER}))
    cid = await deliver(app_stack, review_comment_event(pr, "/ask what does this change?"))
    await finished(app_stack, cid)
    (reply,) = in_threads(app_stack, pr, cid)
    assert ANSWER in reply.body and "First draft." not in reply.body
    assert [c.id for c in app_stack.state.review_comments_of(REPO, pr.pr.number)] == [cid, reply.id]
    number = pr.pr.number
    assert calls(app_stack, "POST", f"/repos/{REPO}/pulls/{number}/comments/{cid}/replies") == 1
    assert calls(app_stack, "PATCH", f"/repos/{REPO}/pulls/comments/{reply.id}") >= 3  # the drafts, the outcome
    assert calls(app_stack, "GET", f"/repos/{REPO}/pulls/{number}/comments") == 1  # before the first post only


async def test_the_answer_on_the_conversation_is_updated_without_listing_again(app_stack, pr):
    app_stack.sim.default_script = ask_script(("reply", {"body": "First draft."}), ("reply", {"body": ANSWER}))
    cid, answer, _ = await command(app_stack, pr, "/ask what does this change?")
    await finished(app_stack, cid)
    assert ANSWER in answer and in_threads(app_stack, pr, cid) == []
    assert calls(app_stack, "GET", f"/repos/{REPO}/issues/{pr.pr.number}/comments") == 1


async def test_a_thread_deleted_before_the_answer_gets_it_on_the_conversation_with_where_it_was_asked(app_stack, pr):
    app_stack.sim.default_script = ask_script(("reply", {"body": ANSWER}))
    data = review_comment_event(pr, "/ask why does the loop skip one item?")
    await app_stack.deliver("pull_request_review_comment", data)
    cid = data["comment"]["id"]
    del app_stack.state.review_comments[cid]  # the author deleted the comment, and with it the thread
    await app_stack.run_jobs()
    job = await finished(app_stack, cid)
    assert job.result["result"] == "answered"
    (answer,) = on_conversation(app_stack, pr, cid)
    assert ANSWER in answer.body and "`/ask` by @maintainer" in answer.body
    assert f"> @maintainer asked in [a review thread]({data['comment']['html_url']}) on `src/app.py` line 41:" \
        in answer.body
    assert "> /ask why does the loop skip one item?" in answer.body
    assert job.result["answer_url"].endswith(f"#issuecomment-{answer.id}")
    assert in_threads(app_stack, pr, cid) == []
    assert app_stack.state.violations == []


async def test_a_later_attempt_updates_the_reply_an_earlier_one_posted(app_stack, pr):
    data = review_comment_event(pr, "/config")
    cid = data["comment"]["id"]
    payload = {"source": "pull_request_review_comment", "command": "config", "args": "",
               "comment": {"id": cid, "path": "src/app.py", "line": 41, "in_reply_to_id": None, "author": "maintainer"}}
    gh = await app_stack.services.github.installation_client(INSTALLATION_ID)
    first = Feedback.of_job(gh, REPO, pr.pr.number, payload)
    url = await first.answer("one")
    second = Feedback.of_job(gh, REPO, pr.pr.number, payload)
    assert await second.answer("two") == url
    (reply,) = in_threads(app_stack, pr, cid)
    assert reply.body.endswith("\ntwo") and reply.in_reply_to_id == cid
    assert app_stack.state.violations == []


async def test_a_reply_github_refuses_moves_the_answer_to_the_conversation(app_stack, pr):
    data = review_comment_event(pr, "/config")
    cid = data["comment"]["id"]
    app_stack.state.inject_fault("POST", rf"/comments/{cid}/replies$", 422)
    await app_stack.deliver("pull_request_review_comment", data)
    await app_stack.run_jobs()
    assert (await finished(app_stack, cid)).result["result"] == "answered"
    (answer,) = on_conversation(app_stack, pr, cid)
    assert "```yaml" in answer.body and "asked in [a review thread]" in answer.body
    assert reactions(app_stack.state.review_comments[cid]) == ["eyes", "rocket"]


def test_where_it_was_asked_quotes_the_thread_file_line_and_command():
    comment = {"path": "src/app.py", "line": 41, "author": "maintainer",
               "html_url": "https://github.com/o/r/pull/2#discussion_r9"}
    quote = asked_in_thread(comment, "ask", "why?\nand how?")
    assert quote.splitlines()[:4] == [
        "> @maintainer asked in [a review thread](https://github.com/o/r/pull/2#discussion_r9) on `src/app.py` line 41:",
        ">", "> /ask why?", "> and how?"]
    long = asked_in_thread({"path": "a.py"}, "ask", "x" * 2000)
    assert "Someone asked in a review thread on `a.py`:" in long and "x" * 490 in long and "x" * 600 not in long
