"""A fix that waits for a person's approval (`fix.approval`), end to end: a failing check delivered
to the real server, the fix pipeline with scripted agents (Managed Agents simulator), the fix
committed on prmedic's own branch and offered on the `prmedic fix` check run with three buttons
(GitHub simulator); then GitHub's own `check_run` `requested_action` example (a button clicked)
or an `issue_comment` (`/apply`, `/discard`) delivered, and what came of it read back."""

from __future__ import annotations

import pytest
from conftest import APP_ID, example
from sims.managed_agents import Script, custom_tool_use, model_request, stop_end_turn
from test_fix_pipeline import GOOD, REPO, Project, fix_script, fix_sessions, propose

from app.pipelines.commands.approve import decision_of
from app.pipelines.fix.approval_texts import (
    AWAITING,
    approval_actions,
    approval_branch,
    plan,
    recorded,
)
from app.repo_config import parse_repo_config
from app.routing.approvals import action_identifier, parse_action
from app.store import FixProposal, JobState

PUSH = "fix:\n  delivery: push\n"  # approval is then required unless the config says otherwise


# -- helpers ----------------------------------------------------------------------------------

async def waiting_fix(app_stack, git_repo, deliver, *, config: str = PUSH) -> tuple[Project, FixProposal]:
    """A failing check → a fix job whose fix waits for approval; `maintainer` may write, `reader` read."""
    project = Project(app_stack, git_repo, config=config)
    state = app_stack.github_state
    state.set_permission(REPO, "maintainer", "write")
    state.set_permission(REPO, "reader", "read")
    project.failing_job(4242)
    app_stack.sim.default_script = fix_script(propose(project.patch({"src/calc.py": GOOD})))
    assert (await deliver("check_run", project.check_run_event(4242))).status == 202
    await app_stack.run_jobs()
    proposal = await app_stack.store.find_fix_proposal(REPO, pr_number=7)
    assert proposal is not None
    return project, proposal


def fix_check(app_stack, sha: str):
    (check,) = [c for c in app_stack.github_state.check_runs_for(REPO, sha) if c.name == "prmedic fix"]
    return check


def click(project: Project, check, identifier: str, *, user: str = "maintainer", app_id: int = APP_ID) -> dict:
    """GitHub's `check_run` `requested_action` example: `user` clicked the button `identifier` on `check`."""
    payload = example("check_run", "requested_action")
    payload["installation"] = {"id": 1, "node_id": "MDIz"}
    payload["repository"].update(full_name=REPO, name="calc", default_branch="main")
    run = payload["check_run"]
    run.update(id=check.id, name=check.name, head_sha=check.head_sha, status="completed",
               conclusion="action_required", external_id=check.external_id or "")
    run["app"].update(id=app_id, slug="prmedic")
    run["pull_requests"] = [{"number": 7, "id": 1, "url": f"https://api.github.com/repos/{REPO}/pulls/7",
                             "head": {"ref": "feature", "sha": check.head_sha, "repo": {"id": 1, "url": "",
                                                                                         "name": "calc"}},
                             "base": {"ref": "main", "sha": project.base, "repo": {"id": 1, "url": "",
                                                                                  "name": "calc"}}}]
    payload["requested_action"] = {"identifier": identifier}
    payload["sender"].update(login=user, type="User")
    return payload


def comment(app_stack, body: str, *, user: str = "maintainer") -> dict:
    """GitHub's `issue_comment` example: `user` wrote `body` on PR #7 (the comment exists in the simulator)."""
    data = example("issue_comment", "created")
    data["installation"] = {"id": 1, "node_id": "MDIz"}
    data["repository"].update(full_name=REPO, name="calc", default_branch="main")
    data["issue"].update(number=7, pull_request={"url": f"https://api.github.com/repos/{REPO}/pulls/7"})
    data["issue"]["user"].update(login="alice", type="User")
    data["comment"].update(id=app_stack.github_state.add_issue_comment(REPO, 7, user, body).id, body=body)
    data["comment"]["user"].update(login=user, type="User")
    data["sender"].update(login=user, type="User")
    return data


def answers(app_stack, marker: str) -> list[str]:
    return [c.body for c in app_stack.github_state.issue_comments_of(REPO, 7) if marker in c.body]


def click_answer(app_stack, check, user: str = "maintainer") -> str:
    (body,) = answers(app_stack, f"<!-- prmedic:command:check_run:{check.id}:{user} -->")
    return body


def head_of(app_stack) -> str:
    return app_stack.github_state.pull(REPO, 7).head_sha


def branch(app_stack, name: str) -> str | None:
    return app_stack.github_state.repo(REPO).branch_sha(name)


async def command_jobs(app_stack):
    return await app_stack.store.list_jobs(kind="command")


# -- waiting ----------------------------------------------------------------------------------

async def test_with_push_delivery_the_fix_waits_on_an_action_required_check_run_and_nothing_is_pushed(
        app_stack, git_repo, deliver):
    project, proposal = await waiting_fix(app_stack, git_repo, deliver)
    state = app_stack.github_state
    # nothing reached the pull request: its branch is where it was, no fix PR
    assert head_of(app_stack) == project.head and len(state.pulls) == 1
    assert state.calls("PATCH", r"/git/refs/heads/feature$") == []
    # the fix is a commit on top of the head, on prmedic's own branch, recorded as waiting
    [job] = await app_stack.store.list_jobs(kind="fix")
    fix_branch = approval_branch(7, project.head, job.id)
    assert proposal.outcome == AWAITING == proposal.delivery and proposal.branch == fix_branch
    assert branch(app_stack, fix_branch) == proposal.fix_sha and proposal.base_sha == project.head
    assert project.fix_commit(proposal.fix_sha).parents == [project.head]
    # the check run asks for a decision: three buttons naming the fix, the commit as its details
    check = fix_check(app_stack, project.head)
    assert check.conclusion == "action_required" and check.actions == approval_actions(proposal.id)
    assert [a["identifier"] for a in check.actions] == [f"apply:{proposal.id}", f"open_pr:{proposal.id}",
                                                         f"discard:{proposal.id}"]
    assert check.details_url == f"https://github.com/{REPO}/commit/{proposal.fix_sha}"
    assert "Nothing was applied yet" in check.output["summary"] and "Fix add() subtracting" in check.output["summary"]
    assert "1 file(s), +1 −1" in check.output["summary"] and "`/apply`" in check.output["summary"]
    # the PR's fix comment says so and how to decide; the agent was told it waits
    [fix_comment] = state.issue_comments_of(REPO, 7)
    assert "<!-- prmedic:fix -->" in fix_comment.body and "waiting for approval" in fix_comment.body
    assert "`/apply`" in fix_comment.body and "`/discard`" in fix_comment.body
    [result] = [r for s in app_stack.sim.sessions.values() for r in s.tool_results if r.name == "propose_fix"]
    assert not result.is_error and "nothing was pushed" in result.text
    assert job.result["delivered_as"] == AWAITING
    assert state.violations == []


async def test_with_pull_request_delivery_nothing_waits(app_stack, git_repo, deliver):
    project, proposal = await waiting_fix(app_stack, git_repo, deliver, config=None)
    assert proposal.delivery == "pull_request" and proposal.outcome == "pending"
    assert fix_check(app_stack, project.head).conclusion == "neutral"


async def test_ci_on_a_fix_waiting_for_approval_starts_no_new_fix(app_stack, git_repo, deliver):
    project, proposal = await waiting_fix(app_stack, git_repo, deliver)
    project.failing_job(4300, sha=proposal.fix_sha)
    await deliver("check_run", project.check_run_event(4300, sha=proposal.fix_sha, branch=proposal.branch))
    await app_stack.run_jobs()
    latest = (await app_stack.store.list_jobs(kind="fix"))[0]
    assert "waits for a person's approval" in latest.result["skipped"]
    assert len(fix_sessions(app_stack.sim)) == 1


async def test_a_decision_made_before_the_fix_job_ends_is_what_its_check_run_shows(app_stack, git_repo, deliver):
    project = Project(app_stack, git_repo, config=PUSH)
    project.failing_job(4242)

    async def someone_discards_it(ctx):
        waiting = await app_stack.store.find_fix_proposal(REPO, pr_number=7, outcome=AWAITING)
        assert await app_stack.store.decide_fix_proposal(waiting.id, "discarded")

    app_stack.sim.default_script = Script(model_request(1000, 100), custom_tool_use(*propose(project.patch(
        {"src/calc.py": GOOD}))), someone_discards_it, stop_end_turn())
    await deliver("check_run", project.check_run_event(4242))
    await app_stack.run_jobs()
    check = fix_check(app_stack, project.head)
    assert (check.conclusion, check.output["title"], check.actions) == ("neutral", "The fix was discarded", [])
    assert "Nothing was applied yet" not in check.output["summary"]


# -- the buttons ------------------------------------------------------------------------------

async def test_a_writers_apply_click_lands_the_fix_once(app_stack, git_repo, deliver):
    project, proposal = await waiting_fix(app_stack, git_repo, deliver)
    state = app_stack.github_state
    check = fix_check(app_stack, project.head)
    payload = click(project, check, f"apply:{proposal.id}")

    first = await deliver("check_run", payload, delivery_id="click-1")
    assert first.status == 202, await first.text()
    await app_stack.run_jobs()
    assert head_of(app_stack) == proposal.fix_sha  # the PR's head is the fix commit
    assert branch(app_stack, proposal.branch) is None  # prmedic's branch is gone: the PR holds the fix
    check = fix_check(app_stack, project.head)
    assert (check.conclusion, check.output["title"], check.actions) == ("success", "Fix applied by @maintainer", [])
    answer = click_answer(app_stack, check)
    assert "@maintainer clicked **Apply fix**" in answer and f"[commit `{proposal.fix_sha[:7]}`]" in answer
    decided = await app_stack.store.get_fix_proposal(proposal.id)
    assert (decided.outcome, decided.delivery) == ("pending", "push")  # its CI is watched like any pushed fix

    # GitHub redelivers the same click, and a second click arrives: nothing happens twice
    assert (await (await deliver("check_run", payload, delivery_id="click-1")).json())["status"] == "duplicate"
    assert (await deliver("check_run", click(project, check, f"apply:{proposal.id}"))).status == 202
    await app_stack.run_jobs()
    assert len(state.calls("PATCH", r"/git/refs/heads/feature$")) == 1 and head_of(app_stack) == proposal.fix_sha
    assert "already applied by @maintainer" in click_answer(app_stack, check)
    assert [j.state for j in await command_jobs(app_stack)] == [JobState.done, JobState.done]
    assert state.violations == []


async def test_two_clicks_at_once_decide_once(app_stack, git_repo, deliver):
    project, proposal = await waiting_fix(app_stack, git_repo, deliver)
    app_stack.github_state.set_permission(REPO, "admin", "admin")
    check = fix_check(app_stack, project.head)
    await deliver("check_run", click(project, check, f"apply:{proposal.id}"))
    await deliver("check_run", click(project, check, f"discard:{proposal.id}", user="admin"))
    await app_stack.run_jobs()  # both jobs run together
    decided = await app_stack.store.get_fix_proposal(proposal.id)
    first, second = click_answer(app_stack, check), click_answer(app_stack, check, "admin")
    if decided.outcome == "discarded":
        assert head_of(app_stack) == project.head and "was already discarded by @admin" in first
    else:
        assert head_of(app_stack) == proposal.fix_sha and "was already applied by @maintainer" in second


async def test_buttons_work_when_slash_commands_are_off(app_stack, git_repo, deliver):
    project, proposal = await waiting_fix(app_stack, git_repo, deliver, config=PUSH + "commands:\n  enabled: false\n")
    await deliver("check_run", click(project, fix_check(app_stack, project.head), f"apply:{proposal.id}"))
    await app_stack.run_jobs()
    assert head_of(app_stack) == proposal.fix_sha


async def test_a_fix_command_with_approval_required_answers_how_to_apply(app_stack, git_repo, deliver):
    project = Project(app_stack, git_repo, config=PUSH)
    app_stack.github_state.set_permission(REPO, "maintainer", "write")
    app_stack.sim.default_script = fix_script(propose(project.patch({"src/calc.py": GOOD})))
    data = comment(app_stack, "/fix use + in add")
    await deliver("issue_comment", data)
    await app_stack.run_jobs()
    (answer,) = answers(app_stack, f"<!-- prmedic:command:{data['comment']['id']} -->")
    assert "**nothing was applied yet**" in answer and "`/apply`" in answer and head_of(app_stack) == project.head
    proposal = await app_stack.store.find_fix_proposal(REPO, pr_number=7, outcome=AWAITING)
    assert fix_check(app_stack, project.head).actions == approval_actions(proposal.id)
    assert answers(app_stack, "<!-- prmedic:fix") == []  # the answer says it: no fix comment


async def test_a_readers_click_is_refused_and_answered(app_stack, git_repo, deliver):
    project, proposal = await waiting_fix(app_stack, git_repo, deliver)
    check = fix_check(app_stack, project.head)
    await deliver("check_run", click(project, check, f"apply:{proposal.id}", user="reader"))
    await app_stack.run_jobs()
    assert head_of(app_stack) == project.head
    assert (await app_stack.store.get_fix_proposal(proposal.id)).outcome == AWAITING
    assert fix_check(app_stack, project.head).conclusion == "action_required"
    answer = click_answer(app_stack, check, "reader")
    assert "@reader clicked **Apply fix**" in answer and "needs **write** permission" in answer


async def test_a_moved_head_applies_nothing_and_the_check_run_says_so(app_stack, git_repo, deliver):
    project, proposal = await waiting_fix(app_stack, git_repo, deliver)
    state = app_stack.github_state
    moved = state.commit_files(REPO, {"NOTES.md": "wip\n"}, branch="feature")
    check = fix_check(app_stack, project.head)
    await deliver("check_run", click(project, check, f"apply:{proposal.id}"))
    await app_stack.run_jobs()
    assert head_of(app_stack) == moved != proposal.fix_sha
    check = fix_check(app_stack, project.head)
    assert (check.conclusion, check.output["title"]) == ("neutral", "Not applied: the head moved")
    assert "Nothing applied: the pull request's head moved" in click_answer(app_stack, check)
    assert (await app_stack.store.get_fix_proposal(proposal.id)).outcome == "stale"


async def test_open_as_pr_opens_the_fix_pull_request(app_stack, git_repo, deliver):
    project, proposal = await waiting_fix(app_stack, git_repo, deliver)
    check = fix_check(app_stack, project.head)
    await deliver("check_run", click(project, check, f"open_pr:{proposal.id}"))
    await app_stack.run_jobs()
    state = app_stack.github_state
    fix_pr = state.pull(REPO, 8)
    assert (fix_pr.head_ref, fix_pr.base_ref, fix_pr.title) == (proposal.branch, "feature",
                                                                 "Fix add() subtracting instead of adding")
    assert "Root cause" in fix_pr.body and head_of(app_stack) == project.head
    check = fix_check(app_stack, project.head)
    assert (check.conclusion, check.output["title"]) == ("neutral", "Opened as #8")
    decided = await app_stack.store.get_fix_proposal(proposal.id)
    assert (decided.outcome, decided.delivery, decided.url) == ("pending", "pull_request",
                                                                 f"https://github.com/{REPO}/pull/8")


async def test_discard_deletes_the_branch_and_applies_nothing(app_stack, git_repo, deliver):
    project, proposal = await waiting_fix(app_stack, git_repo, deliver)
    check = fix_check(app_stack, project.head)
    await deliver("check_run", click(project, check, f"discard:{proposal.id}"))
    await app_stack.run_jobs()
    assert branch(app_stack, proposal.branch) is None and head_of(app_stack) == project.head
    check = fix_check(app_stack, project.head)
    assert (check.conclusion, check.output["title"]) == ("neutral", "Discarded by @maintainer")
    assert (await app_stack.store.get_fix_proposal(proposal.id)).outcome == "discarded"
    assert await app_stack.store.fix_outcome_counts() == {"discarded": 1}  # not a success, not a failure


async def test_clicks_on_another_apps_check_run_or_unknown_buttons_make_no_job(app_stack, git_repo, deliver):
    project, proposal = await waiting_fix(app_stack, git_repo, deliver)
    check = fix_check(app_stack, project.head)
    for payload in (click(project, check, f"apply:{proposal.id}", app_id=999),
                    click(project, check, "lgtm|26764")):
        assert (await deliver("check_run", payload)).status == 200
    assert await command_jobs(app_stack) == []


# -- the comments -----------------------------------------------------------------------------

async def test_apply_from_a_comment_lands_the_newest_waiting_fix(app_stack, git_repo, deliver):
    project, proposal = await waiting_fix(app_stack, git_repo, deliver)
    data = comment(app_stack, "/apply")
    await deliver("issue_comment", data)
    await app_stack.run_jobs()
    assert head_of(app_stack) == proposal.fix_sha
    (answer,) = answers(app_stack, f"<!-- prmedic:command:{data['comment']['id']} -->")
    assert "Applied the fix (asked by @maintainer)" in answer
    check = fix_check(app_stack, project.head)
    assert (check.conclusion, check.output["title"]) == ("success", "Fix applied by @maintainer")
    # nothing waits any more: a second /apply says so
    again = comment(app_stack, "/discard")
    await deliver("issue_comment", again)
    await app_stack.run_jobs()
    (answer,) = answers(app_stack, f"<!-- prmedic:command:{again['comment']['id']} -->")
    assert "No fix waits for approval" in answer and head_of(app_stack) == proposal.fix_sha


async def test_discard_from_a_comment(app_stack, git_repo, deliver):
    project, proposal = await waiting_fix(app_stack, git_repo, deliver)
    await deliver("issue_comment", comment(app_stack, "/discard"))
    await app_stack.run_jobs()
    assert branch(app_stack, proposal.branch) is None and head_of(app_stack) == project.head
    assert (await app_stack.store.get_fix_proposal(proposal.id)).outcome == "discarded"


async def test_apply_pr_from_a_comment_opens_the_fix_pr(app_stack, git_repo, deliver):
    _project, proposal = await waiting_fix(app_stack, git_repo, deliver)
    await deliver("issue_comment", comment(app_stack, "/apply pr"))
    await app_stack.run_jobs()
    assert app_stack.github_state.pull(REPO, 8).head_ref == proposal.branch


# -- GitHub's limits on buttons (the simulator enforces them) ---------------------------------

@pytest.mark.parametrize("actions, field", [
    (approval_actions(1) + [{"label": "More", "description": "d", "identifier": "more"}], "actions"),
    ([{"label": "Apply", "description": "d", "identifier": "x" * 21}], "actions.0.identifier"),
    ([{"label": "A label over twenty chars", "description": "d", "identifier": "x"}], "actions.0.label"),
    ([{"label": "Apply", "description": "d" * 41, "identifier": "x"}], "actions.0.description"),
    ([{"label": "Apply", "identifier": "x"}], "actions.0.description"),
])
async def test_the_simulator_refuses_buttons_github_refuses(app_stack, git_repo, actions, field):
    from gidgethub import BadRequest

    state = app_stack.github_state
    state.expect_violations = True
    project = Project(app_stack, git_repo)
    gh = await app_stack.services.github.installation_client(1)
    check = await gh.post(f"/repos/{REPO}/check-runs", data={"name": "x", "head_sha": project.head})
    with pytest.raises(BadRequest) as refused:
        await gh.patch(f"/repos/{REPO}/check-runs/{check['id']}", data={
            "conclusion": "action_required", "output": {"title": "t", "summary": "s"}, "actions": actions})
    assert refused.value.status_code == 422 and state.check_runs[check["id"]].actions == []
    [violation] = state.violations
    assert f"'field': '{field}'" in violation.detail


async def test_the_simulator_refuses_a_details_url_that_is_no_web_address(app_stack, git_repo):
    from gidgethub import BadRequest

    project = Project(app_stack, git_repo)
    gh = await app_stack.services.github.installation_client(1)
    check = await gh.post(f"/repos/{REPO}/check-runs", data={"name": "x", "head_sha": project.head})
    with pytest.raises(BadRequest) as refused:
        await gh.patch(f"/repos/{REPO}/check-runs/{check['id']}", data={"details_url": "ftp://example.com/x"})
    assert refused.value.status_code == 422 and "http or https" in str(refused.value.errors)


# -- pure rules -------------------------------------------------------------------------------

def test_approval_is_required_by_default_only_with_push_delivery():
    assert parse_repo_config(None).config.fix.approval == "auto"
    assert parse_repo_config(PUSH).config.fix.approval == "required"
    assert parse_repo_config(PUSH + "  approval: auto\n").config.fix.approval == "auto"
    assert parse_repo_config("fix:\n  approval: required\n").config.fix.approval == "required"
    assert parse_repo_config("fix:\n  approval: maybe\n").errors == [
        ".github/prmedic.yml: `fix.approval`: Input should be 'auto' or 'required'"]


@pytest.mark.parametrize("decision, outcome, pr_open, pr_head, step", [
    ("apply", AWAITING, True, "base", "apply"),
    ("open_pr", AWAITING, True, "base", "open_pr"),
    ("discard", AWAITING, True, "moved", "discard"),
    ("apply", AWAITING, True, "fix", "applied"),  # an earlier try pushed it: counts as applied
    ("open_pr", AWAITING, True, "fix", "applied"),
    ("apply", AWAITING, True, "moved", "stale"),
    ("open_pr", AWAITING, True, "moved", "stale"),
    ("apply", AWAITING, False, "base", "closed"),
    ("apply", "pending", True, "base", "already"),
    ("discard", "discarded", True, "base", "already"),
])
def test_what_a_decision_does(decision, outcome, pr_open, pr_head, step):
    assert plan(decision, outcome=outcome, pr_open=pr_open, pr_head=pr_head, base_sha="base", fix_sha="fix") == step


def test_a_decision_records_an_honest_outcome():
    assert recorded("apply") == recorded("applied") == ("pending", "push")  # its CI decides success
    assert recorded("open_pr") == ("pending", "pull_request")
    assert recorded("discard") == ("discarded", None) and recorded("stale") == recorded("closed") == ("stale", None)


def test_buttons_fit_githubs_limits_and_name_their_fix():
    for action in approval_actions(10 ** 11):
        assert len(action["label"]) <= 20 and len(action["description"]) <= 40 and len(action["identifier"]) <= 20
    assert parse_action(action_identifier("open_pr", 12)) == ("open_pr", 12)
    assert parse_action("lgtm|26764") is None and parse_action("apply:") is None and parse_action(None) is None


def test_apply_pr_is_open_as_pr():
    assert decision_of("apply", "") == "apply" and decision_of("apply", "pr please") == "open_pr"
    assert decision_of("discard", "pr") == "discard"


# -- the store's two methods (contract; the lead moves these to tests/test_store_contract.py) ---

def _proposal(**kw) -> FixProposal:
    return FixProposal(**{"repo": "Octo/Calc", "pr_number": 7, "root_sha": "r" * 40, "base_sha": "b" * 40,
                          "fix_sha": "f" * 40, "branch": "prmedic/fix/7-rrrrrrr-approval-1",
                          "delivery": AWAITING, "outcome": AWAITING, "job_id": 1, **kw})


async def test_store_gets_a_fix_proposal_by_id(store):
    recorded_ = await store.record_fix_proposal(_proposal())
    assert await store.get_fix_proposal(recorded_.id) == recorded_.model_copy(update={"repo": "octo/calc"})
    assert await store.get_fix_proposal(recorded_.id + 1) is None


async def test_store_decides_a_waiting_fix_once(store):
    p = await store.record_fix_proposal(_proposal())
    assert await store.decide_fix_proposal(p.id, "pending", delivery="push", url="https://x/commits/f")
    assert not await store.decide_fix_proposal(p.id, "discarded")  # decided already: nothing changes
    got = await store.get_fix_proposal(p.id)
    assert (got.outcome, got.delivery, got.url, got.resolved_at) == ("pending", "push", "https://x/commits/f", None)
    discarded = await store.record_fix_proposal(_proposal())
    assert await store.decide_fix_proposal(discarded.id, "discarded")
    got = await store.get_fix_proposal(discarded.id)
    assert (got.outcome, got.delivery) == ("discarded", AWAITING) and got.resolved_at is not None
    never_waiting = await store.record_fix_proposal(_proposal(delivery="push", outcome="pending"))
    assert not await store.decide_fix_proposal(never_waiting.id, "discarded")


async def test_store_finds_the_newest_fix_of_a_pr_by_outcome(store):
    older = await store.record_fix_proposal(_proposal())
    newer = await store.record_fix_proposal(_proposal())
    await store.record_fix_proposal(_proposal(pr_number=8))
    await store.record_fix_proposal(_proposal(outcome="pending", delivery="push"))
    assert (await store.find_fix_proposal("octo/calc", pr_number=7, outcome=AWAITING)).id == newer.id
    await store.decide_fix_proposal(newer.id, "discarded")
    assert (await store.find_fix_proposal("octo/calc", pr_number=7, outcome=AWAITING)).id == older.id
    assert await store.find_fix_proposal("octo/calc", pr_number=9, outcome=AWAITING) is None
    assert (await store.find_fix_proposal("octo/calc", fix_sha="f" * 40, outcome="pending")).delivery == "push"
