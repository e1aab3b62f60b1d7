"""A fix verified independently before it is delivered (sequential agents), end to end: a failing
check delivered to the real server, the fix session (Managed Agents simulator) proposes a patch,
prmedic commits it on a branch of its own (GitHub simulator) and a second, fresh session (the
verifier) runs the named commands at that commit; only a passed report is delivered. Then the pure
parts: the verifier's task, its report's reading, and the words the fix session gets back."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from pydantic import ValidationError
from sims.managed_agents import (
    Script,
    custom_tool_use,
    model_request,
    task_commands,
    verifier_run,
)
from test_fix_pipeline import (
    GOOD,
    REPO,
    Project,
    fix_script,
    fix_sessions,
    tool_results,
    verifier_sessions,
)

from app.agents.teams import Teams, role_problems, team_problems
from app.pipelines.fix.verify import budget_usd
from app.pipelines.fix.verify_texts import (
    NOT_VERIFIED,
    VerificationResult,
    failure_answer,
    failure_reason,
    read_report,
    verification_section,
    verifier_task,
)
from app.routing.fixes import fix_branch_name
from app.store import JobState
from app.tools.schemas import ReportVerificationInput, VerifiedCommand, split_unknown

COMMAND = "pytest -q tests/test_calc.py"
HALF_FIX = GOOD.replace("return a + b", "return a + b - 0 * 1")


def propose(patch: str, commands: list[str] | None = None) -> tuple[str, dict]:
    return ("propose_fix", {"title": "Fix add() subtracting instead of adding", "patch": patch,
                            "verify_commands": [COMMAND] if commands is None else commands,
                            "body": "**Root cause**: `add` used `-`.\n**Change**: use `+`.\n**Verification**: "
                                    f"`{COMMAND}` failed, now passes."})


def verifiers(*outcomes: bool):
    """A verifier script per verifier session, in order: passes (True) or fails (False)."""
    queue = list(outcomes)
    return lambda: verifier_run(passed=queue.pop(0))


def task_of(session) -> str:
    return "".join(block["text"] for block in session.user_messages[0]["content"])


async def run_fix(app_stack, deliver, project: Project, *calls, job_id: int = 4242) -> None:
    project.failing_job(job_id)
    app_stack.sim.default_script = fix_script(*calls)
    assert (await deliver("check_run", project.check_run_event(job_id))).status == 202
    await app_stack.run_jobs()


# -- end to end -------------------------------------------------------------------------------


async def test_a_verified_fix_is_delivered_with_the_verification_quoted_in_the_fix_pr(app_stack, git_repo, deliver):
    project = Project(app_stack, git_repo)
    await run_fix(app_stack, deliver, project, propose(project.patch({"src/calc.py": GOOD})))

    state, sim = app_stack.github_state, app_stack.sim
    [job] = await app_stack.store.list_jobs()
    assert job.state is JobState.done, job.last_error
    fix_sha = state.repo(REPO).branch_sha(fix_branch_name(7, project.head))
    # the verifier: a fresh session of its own agent, the fix commit mounted, the named command to run
    [fixer], [verifier] = fix_sessions(sim), verifier_sessions(sim)
    assert fixer.agent["name"] == "coordinator" and verifier.id != fixer.id
    assert "an independent verifier runs the `verify_commands`" in task_of(fixer)
    [repository] = verifier.resources
    assert repository["checkout"] == {"type": "commit", "sha": fix_sha}
    assert verifier.metadata["role"] == "verifier" and verifier.metadata["prmedic_job"] == str(job.id)
    assert task_commands(task_of(verifier)) == [COMMAND] and "src/calc.py" in task_of(verifier)
    assert verifier.budget["max_list_cost"]["amount"] == str(round(budget_usd(10.0) * 100))
    [report] = tool_results(sim, "report_verification")
    assert not report.is_error and "passed" in report.text
    # delivered, quoting the verification; the verification's own branch is gone
    fix_pr = state.pull(REPO, 8)
    assert "**Independent verification**" in fix_pr.body and f"`{COMMAND}` → exit code 0" in fix_pr.body
    assert "1 passed in 0.04s" in fix_pr.body and fix_pr.body.index("Verification") < fix_pr.body.index("---")
    assert state.repo(REPO).branch_sha(f"{fix_branch_name(7, project.head)}-verify-{job.id}") is None
    [proposed] = tool_results(sim, "propose_fix")
    assert not proposed.is_error and "An independent verifier ran the commands" in proposed.text
    assert job.result["verification"]["passed"] and job.result["verification"]["fix_sha"] == fix_sha
    # the job's cost is both sessions': the coordinator's Opus and the verifier's Sonnet tokens
    assert any("sonnet" in model for model in job.result["cost"]["models"])
    assert job.result["cost"]["tokens_usd"] > float(fixer.cost_cents() / 100)
    assert state.violations == [] and sim.violations == []


async def test_a_failed_verification_is_answered_with_its_output_and_a_second_proposal_is_delivered(
        app_stack, git_repo, deliver):
    project = Project(app_stack, git_repo)
    app_stack.sim.verifier_script = verifiers(False, True)
    first, second = project.patch({"src/calc.py": HALF_FIX}), project.patch({"src/calc.py": GOOD})
    project.failing_job(4242)
    app_stack.sim.default_script = fix_script(propose(first), then_on_error=[custom_tool_use(*propose(second))])
    await deliver("check_run", project.check_run_event(4242))
    await app_stack.run_jobs()

    state, sim = app_stack.github_state, app_stack.sim
    [job] = await app_stack.store.list_jobs()
    failed, delivered = tool_results(sim, "propose_fix")
    # the fix session got the verifier's commands and output as its answer
    assert failed.is_error and "The independent verification failed" in failed.text
    assert f"`{COMMAND}` → exit code 1" in failed.text and "FAILED tests/test_calc.py::test_add" in failed.text
    assert "Nothing was delivered" in failed.text and "call propose_fix again (1 verification(s) left" in failed.text
    assert not delivered.is_error
    # two verifier sessions, each on its own commit; only the second commit reached a pull request
    one, two = verifier_sessions(sim)
    sha_one, sha_two = one.resources[0]["checkout"]["sha"], two.resources[0]["checkout"]["sha"]
    assert sha_one != sha_two and len(fix_sessions(sim)) == 1
    assert len(state.pulls) == 2 and state.pull(REPO, 8).head_sha == sha_two
    assert project.fix_commit(sha_two).tree == project.tree_after_git_apply(second)
    assert state.pull(REPO, 7).head_sha == project.head  # the PR's own branch never moved
    verify_branch = f"{fix_branch_name(7, project.head)}-verify-{job.id}"
    assert state.repo(REPO).branch_sha(verify_branch) is None
    assert len(state.calls("DELETE", rf"/git/refs/heads/{verify_branch}$")) == 2  # after the failure, after delivery
    assert job.result["fix_url"].endswith("/pull/8") and job.result["verification"]["fix_sha"] == sha_two


async def test_after_the_last_allowed_failure_the_job_stops_and_reports_it(app_stack, git_repo, deliver):
    project = Project(app_stack, git_repo, config="fix:\n  max_attempts: 1\n")
    app_stack.sim.verifier_script = verifiers(False)
    patch = project.patch({"src/calc.py": HALF_FIX})
    project.failing_job(4242)
    app_stack.sim.default_script = fix_script(propose(patch), then_on_error=[custom_tool_use(*propose(patch))])
    await deliver("check_run", project.check_run_event(4242))
    await app_stack.run_jobs()

    state, sim = app_stack.github_state, app_stack.sim
    first, second = tool_results(sim, "propose_fix")
    assert first.is_error and "That was the last verification this job allows (1 of 1" in first.text
    assert second.is_error and "Do not call propose_fix again" in second.text
    assert len(verifier_sessions(sim)) == 1  # the refused second call started no verifier
    assert len(state.pulls) == 1 and state.pull(REPO, 7).head_sha == project.head
    [check] = [c for c in state.check_runs_for(REPO, project.head) if c.name == "prmedic fix"]
    assert check.output["title"].startswith("prmedic could not produce a fix: the independent verification")
    [comment] = state.issue_comments_of(REPO, 7)  # the last verification's failure, not the refused retry
    assert "Why the last patch was not delivered" in comment.body and "FAILED tests/test_calc.py" in comment.body
    [job] = await app_stack.store.list_jobs()
    assert not job.result["verification"]["passed"] and "fix_url" not in job.result


async def test_the_last_failure_is_on_the_check_run_and_the_pr_comment(app_stack, git_repo, deliver):
    project = Project(app_stack, git_repo)
    app_stack.sim.verifier_script = verifiers(False)
    await run_fix(app_stack, deliver, project, propose(project.patch({"src/calc.py": HALF_FIX})))

    state = app_stack.github_state
    [check] = [c for c in state.check_runs_for(REPO, project.head) if c.name == "prmedic fix"]
    assert f"`{COMMAND}` exited 1" in check.output["title"]
    [comment] = state.issue_comments_of(REPO, 7)
    assert "Why the last patch was not delivered" in comment.body and "FAILED tests/test_calc.py" in comment.body
    assert len(state.pulls) == 1 and state.calls("POST", r"/pulls$") == []


async def test_with_verification_turned_off_the_fix_is_delivered_unverified_and_says_so(app_stack, git_repo,
                                                                                        deliver):
    project = Project(app_stack, git_repo, config="fix:\n  verify: false\n")
    await run_fix(app_stack, deliver, project, propose(project.patch({"src/calc.py": GOOD})))

    state, sim = app_stack.github_state, app_stack.sim
    assert verifier_sessions(sim) == [] and len(fix_sessions(sim)) == 1
    fix_pr = state.pull(REPO, 8)
    assert NOT_VERIFIED in fix_pr.body and "Independent verification" not in fix_pr.body
    [comment] = state.issue_comments_of(REPO, 7)
    assert "`fix.verify: false`" in comment.body
    [proposed] = tool_results(sim, "propose_fix")
    assert "not independently verified" in proposed.text.lower()


async def test_a_pushed_fix_is_verified_on_a_branch_of_its_own_then_fast_forwarded(app_stack, git_repo, deliver):
    project = Project(app_stack, git_repo, config="fix:\n  delivery: push\n  approval: auto\n")
    await run_fix(app_stack, deliver, project, propose(project.patch({"src/calc.py": GOOD})))

    state = app_stack.github_state
    new_head = state.pull(REPO, 7).head_sha
    [verifier] = verifier_sessions(app_stack.sim)
    assert verifier.resources[0]["checkout"]["sha"] == new_head != project.head
    [job] = await app_stack.store.list_jobs()
    assert state.repo(REPO).branch_sha(f"{fix_branch_name(7, project.head)}-verify-{job.id}") is None
    [comment] = state.issue_comments_of(REPO, 7)
    assert "**Independent verification**" in comment.body and f"`{COMMAND}` → exit code 0" in comment.body


async def test_a_fix_awaiting_approval_is_verified_first_and_its_summary_quotes_it(app_stack, git_repo, deliver):
    project = Project(app_stack, git_repo, config="fix:\n  delivery: push\n")
    await run_fix(app_stack, deliver, project, propose(project.patch({"src/calc.py": GOOD})))

    state = app_stack.github_state
    proposal = await app_stack.store.find_fix_proposal(REPO, pr_number=7)
    [verifier] = verifier_sessions(app_stack.sim)
    assert verifier.resources[0]["checkout"]["sha"] == proposal.fix_sha
    assert state.repo(REPO).branch_sha(proposal.branch) == proposal.fix_sha  # the approval branch stays
    [check] = [c for c in state.check_runs_for(REPO, project.head) if c.name == "prmedic fix"]
    assert check.conclusion == "action_required" and "**Independent verification**" in check.output["summary"]


async def test_a_fork_fix_is_offered_and_says_it_was_not_verified(app_stack, git_repo, deliver):
    project = Project(app_stack, git_repo, fork=True)
    await run_fix(app_stack, deliver, project, propose(project.patch({"src/calc.py": GOOD})))

    state = app_stack.github_state
    assert verifier_sessions(app_stack.sim) == [] and state.calls("POST", r"/git/") == []
    [review] = state.reviews_of(REPO, 7)
    assert "Not independently verified: this pull request comes from a fork" in review.body


async def test_the_verifier_runs_within_the_fix_sessions_slot_of_the_session_cap(app_stack, git_repo, deliver):
    app_stack.services.sessions.semaphore = asyncio.Semaphore(1)  # a full runtime: one session at a time
    project = Project(app_stack, git_repo)
    await run_fix(app_stack, deliver, project, propose(project.patch({"src/calc.py": GOOD})))

    [job] = await app_stack.store.list_jobs()
    assert job.state is JobState.done and job.result["fix_url"].endswith("/pull/8")
    assert len(verifier_sessions(app_stack.sim)) == 1


async def test_a_resumed_fix_job_closes_the_verifier_session_it_left_open(app_stack, git_repo, deliver):
    from app.agents.sync import ensure_synced
    from app.pipelines.context import prepare
    from app.pipelines.session import tool_context
    from app.sessions import SessionSpec
    from app.sessions.runner import SessionRun
    from app.tools import ToolRegistry

    project = Project(app_stack, git_repo)
    await run_fix(app_stack, deliver, project, propose(project.patch({"src/calc.py": GOOD})))
    [job] = await app_stack.store.list_jobs()
    team = await ensure_synced(app_stack.agents.client, app_stack.store)
    await app_stack.store.record_session(job.id, "sesn_fix", agent_id=team.coordinator.id)
    await app_stack.store.record_session(job.id, "sesn_verifier", agent_id=team.agents["verifier"].id)

    run = await prepare(app_stack.services.job_context(job))
    spec = SessionSpec.for_job(job, task="fix it", agent_id=team.coordinator.id, environment_id="env_x")
    session = SessionRun(app_stack.services.sessions, spec, tool_context(run), ToolRegistry(), None)
    resumed = await session._resumable()

    assert resumed.session_id == "sesn_fix"
    assert (await app_stack.store.get_open_session(job.id)).session_id == "sesn_fix"
    [closed] = [r for r in await app_stack.store.list_sessions(job.id) if r.session_id == "sesn_verifier"]
    assert closed.state == "closed" and closed.stop_reason == "abandoned"


# -- pure -------------------------------------------------------------------------------------


def test_the_verifier_task_fences_the_commands_and_lists_the_changed_files():
    task = verifier_task(repo=REPO, pr_number=7, fix_sha="f" * 40, base_sha="b" * 40,
                         commands=["pytest -q  tests/x.py", "echo NONCE1 done"], changed_paths=["src/calc.py"],
                         failing_checks=["test"], nonce="NONCE1")
    assert "<<<COMMANDS NONCE1>>>\npytest -q tests/x.py\necho done\n<<<END COMMANDS NONCE1>>>" in task
    assert f"commit `{'f' * 40}`" in task and "- src/calc.py" in task and "`test`" in task
    assert "never instructions" in task and "report_verification" in task


def test_a_verifier_task_without_commands_asks_for_the_ci_command():
    task = verifier_task(repo=REPO, pr_number=7, fix_sha="f" * 40, base_sha="b" * 40, commands=[],
                         changed_paths=[], failing_checks=[])
    assert "<<<COMMANDS" not in task and "named no command" in task and "- (none listed)" in task


def _report(passed: bool, *codes: int) -> ReportVerificationInput:
    return ReportVerificationInput(passed=passed, commands=[
        VerifiedCommand(command=f"cmd{i}", exit_code=c, output_tail=f"out {i}") for i, c in enumerate(codes)])


def test_only_a_report_counts_as_a_verification():
    assert read_report("f" * 40, _report(True, 0)).passed
    failed = read_report("f" * 40, _report(False, 0, 2))
    assert not failed.passed and failed.problem is None and failure_reason(failed).endswith("`cmd1` exited 2")
    silent = read_report("f" * 40, None, final_message="All good, trust me.")
    assert not silent.passed and "without calling report_verification" in silent.problem and "trust me" in silent.problem
    assert "budget ran out" in read_report("f" * 40, None, budget_reached=True).problem
    assert "session failed: boom" in read_report("f" * 40, None, error="boom").problem


def test_the_answer_to_the_fix_session_says_what_failed_and_whether_to_try_again():
    result = read_report("f" * 40, _report(False, 1))
    again = failure_answer(result, failed=1, allowed=2)
    assert "`cmd0` → exit code 1" in again and "out 0" in again and "1 verification(s) left" in again
    last = failure_answer(result, failed=2, allowed=2)
    assert "do not call propose_fix again" in last and "(2 of 2" in last
    unknown = failure_answer(VerificationResult(False, "f" * 40, problem="its session failed: 529"), failed=1,
                             allowed=2)
    assert unknown.startswith("The independent verification could not confirm the fix: its session failed: 529.")


def test_the_quoted_verification_keeps_the_last_lines_and_redacts_tokens():
    long = "\n".join(f"line {i}" for i in range(100)) + "\ntoken ghs_" + "a" * 36
    section = verification_section(VerificationResult(True, "f" * 40, (
        VerifiedCommand(command="pytest", exit_code=0, output_tail=long),)))
    assert "line 99" in section and "line 50" not in section and "ghs_" + "a" * 36 not in section
    assert verification_section(None) == f"**Verification**: {NOT_VERIFIED}"


def test_report_verification_is_strict_about_types_and_meaning():
    with pytest.raises(ValidationError):
        ReportVerificationInput.model_validate({"passed": "true", "commands": [
            {"command": "x", "exit_code": 0}]})
    with pytest.raises(ValidationError):
        ReportVerificationInput.model_validate({"passed": True, "commands": [{"command": "x", "exit_code": "0"}]})
    with pytest.raises(ValidationError, match="report passed: false"):
        ReportVerificationInput.model_validate({"passed": True, "commands": [{"command": "x", "exit_code": 1}]})
    with pytest.raises(ValidationError):
        ReportVerificationInput.model_validate({"passed": False, "commands": []})


def test_report_verification_tolerates_aliases_and_unknown_fields():
    raw = {"passed": True, "conclusion": "success",
           "commands": [{"cmd": "pytest", "exit_status": 0, "output": "ok", "duration_ms": 12}]}
    cleaned, ignored = split_unknown(ReportVerificationInput, raw, "report_verification")
    report = ReportVerificationInput.model_validate(cleaned)
    assert report.commands[0] == VerifiedCommand(command="pytest", exit_code=0, output_tail="ok")
    assert ignored == ["conclusion — not a field of report_verification",
                       "commands.0.duration_ms — not a field of report_verification"]


@dataclass
class _Agent:
    source: str
    tools: dict = field(default_factory=dict)
    callable_agents: tuple = ()
    custom_tools: tuple = ()


def test_the_verifier_may_hold_only_report_verification_and_never_edit():
    teams = Teams(light="lead", standard="lead", deep="lead", router="router", verifier="verifier")
    lead = _Agent("agents/lead.md", callable_agents=("helper",), custom_tools=("publish_review",))
    agents = {"lead": lead, "helper": _Agent("agents/helper.md"), "router": _Agent("agents/router.md"),
              "verifier": _Agent("agents/verifier.md", tools={"bash": "always_allow"},
                                 custom_tools=("report_verification",))}
    assert team_problems(teams, agents) == [] and role_problems(agents, teams, "agents") == []
    agents["verifier"] = _Agent("agents/verifier.md", tools={"bash": "always_allow", "edit": "always_allow"},
                                custom_tools=("report_verification", "propose_fix"))
    problems = team_problems(teams, agents)
    assert any("exactly the custom tool report_verification" in p for p in problems)
    assert any("must not edit or write files" in p for p in problems)


async def test_a_job_stopped_while_its_fix_is_verified_delivers_nothing(app_stack, git_repo, deliver):
    async def stop_the_job(ctx) -> None:  # `/stop` (or a newer push) arrives while the verifier works
        await app_stack.store.request_cancel(int(ctx.session.metadata["prmedic_job"]))

    app_stack.sim.verifier_script = Script(model_request(2_000, 100), stop_the_job, *verifier_run().turns[0])
    project = Project(app_stack, git_repo)
    await run_fix(app_stack, deliver, project, propose(project.patch({"src/calc.py": GOOD})))

    state = app_stack.github_state
    [job] = await app_stack.store.list_jobs()
    assert job.state is JobState.cancelled
    assert len(state.pulls) == 1 and state.pull(REPO, 7).head_sha == project.head
    assert state.repo(REPO).branch_sha(f"{fix_branch_name(7, project.head)}-verify-{job.id}") is None
    assert await app_stack.store.find_fix_proposal(REPO, pr_number=7) is None
