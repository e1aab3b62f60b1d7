"""Slash-commands end to end (README, "Slash-commands"): GitHub's own `issue_comment` and
`pull_request_review_comment` examples, pointed at a PR in the GitHub simulator, delivered to the
real server; the worker runs the shipped pipelines; what prmedic did is read back from the simulator."""

from __future__ import annotations

import asyncio

import pytest
from command_helpers import (FINDING, _outcome, command, comment_event, finished, reactions,
                             review_comment_event)
from review_helpers import REPO, review_script, review_sessions

from app.store import JobKind, JobState

try:
    from sims.managed_agents import pause
except ImportError:  # pragma: no cover
    from tests.sims.managed_agents import pause

# -- the commands without agents ------------------------------------------------------------

async def test_help_lists_the_commands_with_the_permission_each_needs_here(app_stack, pr):
    pr.set_config("commands:\n  permissions:\n    review: triage\n")
    cid, answer, comment = await command(app_stack, pr, "/help")
    job = await finished(app_stack, cid)
    assert job.result["result"] == "answered"
    assert "| `/review` · `/review full` · `/review deep` / `light` |" in answer and "**triage** permission or the PR's author" in answer
    assert "| `/stop` |" in answer and "| `/pause` |" in answer and "| `/config` |" in answer
    assert "`@prmedic <command>`" in answer
    assert reactions(comment) == ["eyes", "rocket"]
    assert app_stack.state.violations == []


async def test_config_shows_the_effective_file_and_its_problems(app_stack, pr):
    pr.set_config("review:\n  max_comments: 3\n  colour: blue\n")
    cid, answer, comment = await command(app_stack, pr, "/config")
    await finished(app_stack, cid)
    assert "```yaml\nreview:\n  enabled: true" in answer
    assert "max_comments: 10" in answer  # the file is invalid: the defaults are in force
    assert "`review.colour`: is not a known setting" in answer
    assert reactions(comment) == ["eyes", "rocket"]


async def test_config_without_a_file_says_the_defaults_are_used(app_stack, pr):
    _, answer, _ = await command(app_stack, pr, "/config")
    assert "the defaults: this repository has no `.github/prmedic.yml`" in answer and "No problems found." in answer


async def test_a_readers_stop_is_refused_naming_the_permission_needed(app_stack, pr):
    cid, answer, comment = await command(app_stack, pr, "/stop", user="reader")
    job = await finished(app_stack, cid)
    assert job.result == {"command": "stop", "result": "refused", "needed": "write", "permission": "read",
                          "answer_url": job.result["answer_url"]}
    assert "@reader `/stop` needs **write** permission on this repository (you have read)" in answer
    assert reactions(comment) == ["eyes", "confused"]


async def test_the_pr_author_may_review_their_own_pr_but_not_pause_it(app_stack, pr):
    pr.set_config("commands:\n  permissions:\n    review: admin\n")
    app_stack.agents.sim.default_script = review_script([FINDING])
    cid, answer, _ = await command(app_stack, pr, "/review", user="octocat")
    assert (await finished(app_stack, cid)).result["result"] == "reviewed"
    cid, answer, _ = await command(app_stack, pr, "/pause", user="octocat")
    assert "needs **write** permission" in answer


async def test_commands_turned_off_answer_so_and_help_says_they_are_off(app_stack, pr):
    pr.set_config("commands:\n  enabled: false\n")
    cid, answer, comment = await command(app_stack, pr, "/pause")
    assert "Commands are turned off" in answer and (await finished(app_stack, cid)).result["result"] == "disabled"
    assert reactions(comment) == ["eyes", "confused"]
    assert await app_stack.store.get_meta(f"paused:{REPO}#{pr.pr.number}") is None
    cid, answer, comment = await command(app_stack, pr, "/help")
    assert "**Commands are turned off in this repository**" in answer and "| `/review`" in answer


async def test_a_command_in_the_middle_of_a_comment_runs(app_stack, pr):
    cid, answer, _ = await command(app_stack, pr, "Looks good so far.\n\n/pause\n\nMore pushes coming.")
    assert "Automatic reviews are **paused**" in answer
    assert (await finished(app_stack, cid)).result["result"] == "paused"
    assert await app_stack.store.get_meta(f"paused:{REPO}#{pr.pr.number}") == "maintainer"


async def test_a_mention_anywhere_runs_the_command(app_stack, pr):
    cid, answer, _ = await command(app_stack, pr, "Could you, @prmedic config, please?")
    assert (await finished(app_stack, cid)).payload["command"] == "config"
    assert "```yaml" in answer


async def test_an_unknown_command_gets_the_help(app_stack, pr):
    cid, answer, comment = await command(app_stack, pr, "/frobnicate now")
    job = await finished(app_stack, cid)
    assert job.payload["command"] == "help" and job.result["result"] == "unknown"
    assert answer.startswith(f"<!-- prmedic:command:{cid} -->\nUnknown command `/frobnicate`.")
    assert "| `/help` |" in answer
    assert reactions(comment) == ["eyes", "confused"]


@pytest.mark.parametrize("kind", ["edited", "own", "bot"])
async def test_edited_comments_and_bot_comments_run_nothing(app_stack, pr, kind):
    if kind == "edited":
        data = comment_event(pr, "/pause", action="edited")
    elif kind == "own":
        data = comment_event(pr, "/pause", user="prmedic[bot]", user_type="Bot")
    else:
        data = comment_event(pr, "/pause", user="dependabot[bot]", user_type="Bot")
    answer = await app_stack.deliver("issue_comment", data)
    assert answer.status == 200
    await app_stack.run_jobs()
    assert await app_stack.store.list_jobs(kind="command") == []
    assert not [c for c in app_stack.state.issue_comments_of(REPO, pr.pr.number) if "prmedic:command" in c.body]
    assert app_stack.state.issue_comments[data["comment"]["id"]].reactions == []


async def test_a_command_in_a_review_thread_reacts_on_the_review_comment(app_stack, pr):
    data = review_comment_event(pr, "/config")
    await app_stack.deliver("pull_request_review_comment", data)
    await app_stack.run_jobs()
    cid, on_conversation, comment = _outcome(app_stack, pr, data["comment"]["id"])
    await finished(app_stack, cid)
    (answer,) = [c for c in app_stack.state.review_comments_of(REPO, pr.pr.number)
                 if f"<!-- prmedic:command:{cid} -->" in c.body]
    assert answer.in_reply_to_id == cid and "```yaml" in answer.body and on_conversation is None
    assert reactions(comment) == ["eyes", "rocket"]
    assert app_stack.state.violations == []


# -- pause, resume, stop, review ---------------------------------------------------------------

async def test_pause_then_a_push_gets_no_automatic_review_and_resume_restores_it(app_stack, pr):
    state, sim = app_stack.state, app_stack.agents.sim
    sim.default_script = review_script([FINDING])
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()
    _cid, answer, comment = await command(app_stack, pr, "/pause")
    assert "Automatic reviews are **paused**" in answer and reactions(comment) == ["eyes", "rocket"]

    pr.push({"src/util.py": "def helper(x):\n    return x * 2\n"})
    await app_stack.deliver("pull_request", pr.event("synchronize"))
    await app_stack.run_jobs()
    (check,) = [c for c in state.check_runs_for(REPO, pr.head) if c.name == "prmedic review"]
    assert check.conclusion == "skipped"
    assert check.output["title"] == "Skipped: automatic reviews are paused on this PR (/resume)"
    assert len(sim.sessions) == 1

    _cid, answer, _ = await command(app_stack, pr, "/resume")
    assert "Automatic reviews are **on** again" in answer
    pr.push({"src/util.py": "def helper(x):\n    return x * 3\n"})
    await app_stack.deliver("pull_request", pr.event("synchronize"))
    await app_stack.run_jobs()
    (check,) = [c for c in state.check_runs_for(REPO, pr.head) if c.name == "prmedic review"]
    assert check.conclusion != "skipped" and len(review_sessions(sim)) == 2


async def command_during_a_running_review(app_stack, pr, body: str, pause_seconds: float) -> dict:
    """Deliver `body` as a comment while the automatic review of the PR head runs (its session
    paused), and run the worker until both jobs end; the comment's payload."""
    sim = app_stack.agents.sim
    slow = review_script([FINDING])
    slow.turns[0].insert(0, pause(pause_seconds))
    sim.queue_script(slow)
    worker = app_stack.worker()
    running = asyncio.create_task(worker.run())
    try:
        await app_stack.deliver("pull_request", pr.event("opened"))
        await sim.wait_until(lambda: len(sim.sessions) == 1)
        data = comment_event(pr, body)
        await app_stack.deliver("issue_comment", data)
        for _ in range(400):
            jobs = await app_stack.store.list_jobs()
            if len(jobs) == 2 and all(j.state.finished for j in jobs):
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
        await running
    return data


async def test_stop_during_a_running_review_cancels_it_stopped_by_the_user(app_stack, pr):
    state, sim = app_stack.state, app_stack.agents.sim
    data = await command_during_a_running_review(app_stack, pr, "/stop", 30)
    (review_job,) = await app_stack.store.list_jobs(kind="review")
    assert review_job.state is JobState.cancelled
    (check,) = [c for c in state.check_runs_for(REPO, pr.head) if c.name == "prmedic review"]
    assert check.status == "completed" and check.conclusion == "cancelled"
    assert check.output["title"] == "Stopped by @maintainer"
    cid, answer, comment = _outcome(app_stack, pr, data["comment"]["id"])
    assert (await finished(app_stack, cid)).result["stopped"] == 1
    assert f"review job #{review_job.id} (running)" in answer
    assert reactions(comment) == ["eyes", "rocket"]
    assert next(iter(sim.sessions.values())).interrupts
    assert not state.reviews_of(REPO, pr.pr.number)


async def test_stop_with_nothing_running_says_so(app_stack, pr):
    _cid, answer, _ = await command(app_stack, pr, "/stop")
    assert "nothing running or queued" in answer


async def test_review_reviews_the_head_and_a_reviewed_head_only_again_with_full(app_stack, pr):
    state, sim = app_stack.state, app_stack.agents.sim
    pr.set_config("review:\n  ignore_authors: [octocat]\n")  # skips by config do not apply when asked
    sim.default_script = review_script([FINDING])
    cid, answer, comment = await command(app_stack, pr, "/review")
    job = await finished(app_stack, cid)
    assert job.result["result"] == "reviewed" and job.kind is JobKind.command
    assert len(state.reviews_of(REPO, pr.pr.number)) == 1
    (check,) = [c for c in state.check_runs_for(REPO, pr.head) if c.name == "prmedic review"]
    assert check.conclusion == "neutral"
    assert f"Reviewed `{pr.head[:7]}`: 1 finding(s)" in answer and f"/runs/{check.id})" in answer
    assert reactions(comment) == ["eyes", "rocket"]

    cid, answer, _ = await command(app_stack, pr, "/review")
    assert (await finished(app_stack, cid)).result["result"] == "already_reviewed"
    assert f"Commit `{pr.head[:7]}` was already reviewed" in answer and "`/review full`" in answer
    assert len(sim.sessions) == 1 and len(state.reviews_of(REPO, pr.pr.number)) == 1

    cid, answer, _ = await command(app_stack, pr, "/review full")
    assert (await finished(app_stack, cid)).result["result"] == "reviewed"
    assert len(sim.sessions) == 2
    assert len([c for c in state.check_runs_for(REPO, pr.head) if c.name == "prmedic review"]) == 2
    assert state.violations == []


async def test_review_while_the_automatic_review_of_that_head_runs_makes_no_second_review(app_stack, pr):
    state, sim = app_stack.state, app_stack.agents.sim
    data = await command_during_a_running_review(app_stack, pr, "/review", 1)
    _cid, answer, comment = _outcome(app_stack, pr, data["comment"]["id"])
    assert "is already running" in answer
    assert len(sim.sessions) == 1 and len(state.reviews_of(REPO, pr.pr.number)) == 1


async def test_review_reads_the_repository_config_once(app_stack, pr):
    app_stack.agents.sim.default_script = review_script([FINDING])
    since = len(app_stack.state.api_calls())
    cid, _answer, _ = await command(app_stack, pr, "/review")
    assert (await finished(app_stack, cid)).result["result"] == "reviewed"
    reads = [c for c in app_stack.state.api_calls()[since:] if c.path.endswith("/contents/.github/prmedic.yml")]
    assert len(reads) == 1  # the command's read is handed on to the review pipeline it runs
