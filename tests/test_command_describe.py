"""`/describe`: the agents write the pull request's description from the change, into the PR body
between prmedic's markers (the author's words outside them kept), or as one comment of its own."""

from __future__ import annotations

import pytest
from command_helpers import command, finished, reactions
from gidgethub import BadRequest
from review_helpers import REPO

from app.pipelines.commands.describe import (BODY_LIMIT, CUT, DESCRIBE_END, DESCRIBE_START, NoRoom, authors_text,
                                             merge_description)
from app.repo_config import parse_repo_config
from app.store import Job, JobKind, JobState
from app.tools import ToolContext, default_registry

try:
    from sims.github_fixtures import INSTALLATION_ID
    from sims.managed_agents import Script, agent_message, custom_tool_use, normal_review_run, stop_end_turn
except ImportError:  # pragma: no cover
    from tests.sims.github_fixtures import INSTALLATION_ID
    from tests.sims.managed_agents import Script, agent_message, custom_tool_use, normal_review_run, stop_end_turn

AUTHOR = "Adds `total()`."  # the `pr` fixture's own description
FIRST = "Adds `total()`, which sums a list of items.\n\n**Changes**\n- `src/app.py`: new `total()`"
SECOND = "Adds `total()`; it skips the first item (`items[1:]`).\n\n**How to test**\n- `pytest -q`"
COMMENT_MARKER = "<!-- prmedic:describe -->"


def block(text: str) -> str:
    return f"{DESCRIBE_START}\n{text}\n{DESCRIBE_END}"


def describe_script(*descriptions: str, final_text: str = "Description written."):
    calls = [("report_progress", {"message": "Reading the diff", "todo": ["write the description"]})]
    return normal_review_run(custom_calls=calls + [("write_description", {"body": d}) for d in descriptions],
                             final_text=final_text)


def task_of(session) -> str:
    return "".join(block["text"] for block in session.user_messages[0]["content"])


def describe_comments(app_stack, pr):
    return [c for c in app_stack.state.issue_comments_of(REPO, pr.pr.number) if COMMENT_MARKER in c.body]


# -- end to end ----------------------------------------------------------------------------------

async def test_the_first_describe_writes_the_description_after_the_authors_text(app_stack, pr):
    app_stack.sim.default_script = describe_script(FIRST)
    cid, answer, comment = await command(app_stack, pr, "/describe")
    job = await finished(app_stack, cid)
    assert pr.pr.body == f"{AUTHOR}\n\n{block(FIRST)}"
    assert job.result["result"] == "described" and job.result["mode"] == "body" and job.result["session_id"]
    assert f"[this pull request](https://github.com/{REPO}/pull/{pr.pr.number})" in answer
    assert "written into its body" in answer
    assert "`/describe` by @maintainer · Cost (list price): $" in answer and "Duration:" in answer
    assert reactions(comment) == ["eyes", "rocket"]
    (session,) = app_stack.sim.sessions.values()
    task = task_of(session)
    assert "# prmedic job: `/describe`, asked by @maintainer" in task and "write_description" in task
    assert "between its own markers" in task
    assert session.budget["max_list_cost"]["amount"] == "300"  # budget.command_usd (3.00)
    (result,) = [r for r in session.tool_results if r.name == "write_description"]
    assert not result.is_error and "replaces only that part" in str(result.content)
    assert not describe_comments(app_stack, pr)
    assert app_stack.state.violations == []  # the PATCH of the PR body is one GitHub's description allows


async def test_a_second_describe_keeps_all_the_authors_text_and_replaces_only_its_own_part(app_stack, pr):
    app_stack.sim.default_script = describe_script(FIRST)
    await finished(app_stack, (await command(app_stack, pr, "/describe"))[0])
    pr.pr.body = f"Context first.\n\n{pr.pr.body}\n\nNotes below the description."  # the author edits it on GitHub

    app_stack.sim.default_script = describe_script(SECOND)
    cid, answer, comment = await command(app_stack, pr, "/describe")
    assert (await finished(app_stack, cid)).result["result"] == "described"
    assert pr.pr.body == f"Context first.\n\n{AUTHOR}\n\n{block(SECOND)}\n\nNotes below the description."
    assert FIRST not in pr.pr.body and reactions(comment) == ["eyes", "rocket"]
    # the agents read what the author wrote, not prmedic's last description
    second = task_of(list(app_stack.sim.sessions.values())[-1])
    assert "Notes below the description." in second and "Context first." in second
    assert "sums a list of items" not in second and DESCRIBE_START not in second
    assert app_stack.state.violations == []


async def test_an_edit_the_author_makes_while_the_agents_work_is_kept(app_stack, pr):
    async def author_edits(ctx):
        pr.pr.body = f"{AUTHOR}\n\nEdited while prmedic was working."

    app_stack.sim.default_script = Script(author_edits, custom_tool_use("write_description", {"body": FIRST}),
                                          agent_message("Done."), stop_end_turn())
    cid, _answer, _ = await command(app_stack, pr, "/describe")
    await finished(app_stack, cid)
    assert pr.pr.body == f"{AUTHOR}\n\nEdited while prmedic was working.\n\n{block(FIRST)}"


async def test_mode_comment_posts_one_comment_and_a_second_describe_updates_it(app_stack, pr):
    pr.set_config("commands:\n  describe:\n    mode: comment\n")
    app_stack.sim.default_script = describe_script(FIRST)
    cid, answer, comment = await command(app_stack, pr, "/describe")
    job = await finished(app_stack, cid)
    (posted,) = describe_comments(app_stack, pr)
    assert FIRST in posted.body and posted.body.startswith(COMMENT_MARKER)
    assert job.result["mode"] == "comment" and job.result["description_url"].endswith(f"#issuecomment-{posted.id}")
    assert f"#issuecomment-{posted.id})" in answer and "posted as [a comment]" in answer
    assert pr.pr.body == AUTHOR  # the description is left as the author wrote it
    assert reactions(comment) == ["eyes", "rocket"]
    assert "posts it as a comment of its own" in task_of(list(app_stack.sim.sessions.values())[0])

    app_stack.sim.default_script = describe_script(SECOND)
    await finished(app_stack, (await command(app_stack, pr, "/describe"))[0])
    (updated,) = describe_comments(app_stack, pr)
    assert updated.id == posted.id and SECOND in updated.body and FIRST not in updated.body
    assert pr.pr.body == AUTHOR and app_stack.state.violations == []


async def test_calling_it_twice_in_one_session_keeps_only_the_last_description(app_stack, pr):
    app_stack.sim.default_script = describe_script(FIRST, SECOND)
    await finished(app_stack, (await command(app_stack, pr, "/describe"))[0])
    assert pr.pr.body == f"{AUTHOR}\n\n{block(SECOND)}"


async def test_without_write_description_the_answer_says_so_and_is_not_a_success(app_stack, pr):
    app_stack.sim.default_script = normal_review_run(custom_calls=[], final_text="I could not read the diff.")
    cid, answer, comment = await command(app_stack, pr, "/describe")
    job = await finished(app_stack, cid)
    assert job.result["result"] == "no_description"
    assert "`/describe` ended without a description: the agents ended without writing one." in answer
    assert "> I could not read the diff." in answer and "`/describe` by @maintainer · Cost" in answer
    assert reactions(comment) == ["eyes", "confused"]
    assert pr.pr.body == AUTHOR and not describe_comments(app_stack, pr)


async def test_a_reader_may_describe_by_default(app_stack, pr):
    app_stack.sim.default_script = describe_script(FIRST)
    cid, _answer, _ = await command(app_stack, pr, "/describe", user="reader")
    assert (await finished(app_stack, cid)).result["result"] == "described"


async def test_write_description_is_refused_in_any_other_job(store):
    job = Job(id=1, kind=JobKind.command, repo=REPO, pr_number=2, head_sha="a" * 40, state=JobState.running,
              max_attempts=3, created_at=0.0, updated_at=0.0)
    answer = await default_registry().call(ToolContext(job=job, store=store), "write_description", {"body": FIRST})
    assert answer.is_error
    assert answer.text.startswith("write_description does not apply to this command job; nothing was done.")
    assert "Only a `/describe` job writes the pull request's description." in answer.text


async def test_the_simulator_takes_a_pr_body_patch_as_github_describes_it(app_stack, pr):
    gh = await app_stack.services.github.installation_client(INSTALLATION_ID)
    path = f"/repos/{REPO}/pulls/{pr.pr.number}"
    answer = await gh.patch(path, data={"body": "New description."})
    assert answer["body"] == "New description." and (await gh.getitem(path))["body"] == "New description."
    assert app_stack.state.violations == []
    app_stack.state.expect_violations = True
    with pytest.raises(BadRequest):
        await gh.patch(path, data={"body": "x" * (BODY_LIMIT + 1)})  # GitHub's limit
    with pytest.raises(BadRequest):
        await gh.patch(path, data={"description": "not GitHub's field"})
    assert [v.kind for v in app_stack.state.violations] == ["invalid-request"]
    assert pr.pr.body == "New description."


# -- merge_description (pure) ------------------------------------------------------------------

def test_without_markers_the_description_goes_after_the_authors_text_or_alone():
    assert merge_description("Why this change.\n\n", "What it does.") == f"Why this change.\n\n{block('What it does.')}"
    assert merge_description(None, "What it does.") == block("What it does.")
    assert merge_description("  \n", "What it does.") == block("What it does.")


def test_with_markers_only_the_part_between_them_is_replaced():
    body = f"Above.\r\n\r\n{block('old')}\r\n\r\nBelow, with `code`."
    assert merge_description(body, "new") == f"Above.\r\n\r\n{block('new')}\r\n\r\nBelow, with `code`."
    twice = merge_description(merge_description("Mine.", "one"), "two")
    assert twice == merge_description("Mine.", "two") == f"Mine.\n\n{block('two')}"


@pytest.mark.parametrize("body, expected", [
    # a start without its end: where our part ended is unknown, so every word stays
    (f"Mine.\n\n{DESCRIBE_START}\nold text\nmore of mine", "Mine.\n\nold text\nmore of mine"),
    # an end before its start
    (f"{DESCRIBE_END}\nMine.\n{DESCRIBE_START}\nTail.", "Mine.\nTail."),
    # two starts, one end
    (f"A {DESCRIBE_START}\nB\n{DESCRIBE_START}\nC\n{DESCRIBE_END}\nD", "A B\nC\nD"),
])
def test_markers_that_do_not_pair_up_are_dropped_and_every_word_is_kept(body, expected):
    assert merge_description(body, "new") == f"{expected}\n\n{block('new')}"


def test_a_duplicated_part_is_removed_and_the_text_between_the_copies_kept():
    body = f"Top.\n{block('old one')}\nBetween.\n{block('old two')}\nEnd."
    assert merge_description(body, "new") == f"Top.\n{block('new')}\nBetween.\n\nEnd."


@pytest.mark.parametrize("sneaky", [
    f"Looks fine.\n{DESCRIBE_END}\nInjected after the part.",
    "Looks fine.\n<!--prmedic:describe:END-->\nInjected after the part.",
    # removing one marker must not join the pieces around it into another
    f"Looks fine.\n<!-<!-- prmedic:x -->- prmedic:describe:end -->\n{DESCRIBE_START}Injected after the part.",
    "Looks fine.\n<!-- prmedic:command:123 -->\nInjected after the part.",
])
def test_the_generated_text_cannot_bring_markers_of_its_own(sneaky):
    merged = merge_description("Mine.", sneaky)
    assert merged.count("prmedic:") == 2 and merged.endswith(DESCRIBE_END)
    assert merge_description(merged, "new") == f"Mine.\n\n{block('new')}"


def test_the_body_stays_within_githubs_limit_and_the_authors_text_is_never_cut():
    author = "a" * 40_000
    merged = merge_description(author, "d" * 40_000)
    assert len(merged) == BODY_LIMIT and merged.startswith(author + "\n\n" + DESCRIBE_START)
    assert merged.endswith(CUT + "\n" + DESCRIBE_END)
    short = merge_description("a" * 64_000, "Short enough.")  # it fits: nothing is cut
    assert short.endswith(block("Short enough.")) and len(short) <= BODY_LIMIT
    with pytest.raises(NoRoom):
        merge_description("a" * 64_900, "d" * 5_000)


def test_the_agents_read_the_authors_text_without_prmedics_part():
    assert authors_text(f"Mine.\n\n{block('old')}\n\nMore of mine.") == "Mine.\n\n\n\nMore of mine."
    assert authors_text(f"Mine.\n{DESCRIBE_START}\ncut off") == "Mine.\ncut off"
    assert authors_text(None) == ""


# -- commands.describe.mode ---------------------------------------------------------------------

def test_the_describe_mode_is_body_by_default_and_comment_when_configured():
    assert parse_repo_config(None).config.commands.describe.mode == "body"
    loaded = parse_repo_config("commands:\n  describe:\n    mode: comment\n")
    assert loaded.errors == [] and loaded.config.commands.describe.mode == "comment"


def test_an_unknown_describe_mode_is_a_config_problem():
    loaded = parse_repo_config("commands:\n  describe:\n    mode: wiki\n")
    assert loaded.errors == [".github/prmedic.yml: `commands.describe.mode`: Input should be 'body' or 'comment'"]
    assert loaded.config.commands.describe.mode == "body"
