"""The session runtime against the Managed Agents and GitHub simulators (no network)."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from app.github.client import GitHubApp
from app.pipelines.checks import ProgressReporter, start_check_run
from app.sessions import SessionFailed, SessionRetryable, SessionRuntime, SessionSettings, SessionSpec
from app.sessions import runner as runner_module
from app.store import Delivery, JobKind, JobState, NewJob
from app.tools import ToolContext, ToolError, ToolRegistry, default_registry
from app.tools.schemas import TOOL_INPUTS, PublishReviewInput, ReportProgressInput

try:
    from sims.github_fixtures import (INSTALLATION_ID, REPO_FULL_NAME, app_private_key, github_openapi_spec,  # noqa: F401
                                      github_server, github_state)
    from sims.managed_agents import (Script, agent_message, bad_tool_input_then_fix, budget_reached,
                                     custom_tool_use, dropped_stream, model_request, normal_review_run, pause,
                                     refusal, repository_clone_error, retries_exhausted, stop_end_turn)
    from sims.managed_agents_fixtures import managed_agents  # noqa: F401
except ImportError:  # pragma: no cover - depends on how pytest put tests/ on sys.path
    from tests.sims.github_fixtures import (INSTALLATION_ID, REPO_FULL_NAME, app_private_key,  # noqa: F401
                                            github_openapi_spec, github_server, github_state)
    from tests.sims.managed_agents import (Script, agent_message, bad_tool_input_then_fix, budget_reached,
                                           custom_tool_use, dropped_stream, model_request, normal_review_run,
                                           pause, refusal, repository_clone_error, retries_exhausted,
                                           stop_end_turn)
    from tests.sims.managed_agents_fixtures import managed_agents  # noqa: F401

FAST = dict(reconnect_initial_seconds=0.01, reconnect_max_seconds=0.05, create_backoff_seconds=0.01,
            create_backoff_cap=0.05, interrupt_timeout=2.0)


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def custom_tool_definitions() -> list[dict]:
    registry = ToolRegistry()
    for name, model in TOOL_INPUTS.items():
        registry.register(name, model, lambda ctx, args: "ok")
    return registry.definitions()


async def make_agent(client) -> tuple[str, int, str]:
    reviewer = await client.beta.agents.create(model="claude-sonnet-4-6", name="reviewer",
                                               tools=[{"type": "agent_toolset_20260401"}])
    tester = await client.beta.agents.create(model="claude-sonnet-4-6", name="tester")
    coord = await client.beta.agents.create(
        model="claude-opus-4-6", name="coordinator", system="You coordinate.",
        tools=[{"type": "agent_toolset_20260401"}, *custom_tool_definitions()],
        multiagent={"type": "coordinator", "agents": [reviewer.id, tester.id]},
    )
    env = await client.beta.environments.create(name="python", config={"type": "cloud"})
    return coord.id, coord.version, env.id


class Counter:
    """Tool handlers that count how often they ran."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def registry(self, *, progress: bool = True) -> ToolRegistry:
        registry = default_registry() if progress else ToolRegistry()

        async def publish(ctx: ToolContext, args: PublishReviewInput) -> str:
            self.calls["publish_review"] = self.calls.get("publish_review", 0) + 1
            return f"Review posted with {len(args.comments)} comment(s)."

        registry.register("publish_review", PublishReviewInput, publish)
        if not progress:
            async def report(ctx: ToolContext, args: ReportProgressInput) -> str:
                self.calls["report_progress"] = self.calls.get("report_progress", 0) + 1
                return "noted"

            registry.register("report_progress", ReportProgressInput, report)
        return registry


_delivery_ids = itertools.count(1)


async def make_job(store, head_sha: str = "a" * 40, *, claim: bool = True):
    result = await store.record_delivery(
        Delivery(delivery_id=f"d-{next(_delivery_ids)}-{time.time()}", event="pull_request", action="opened",
                 received_at=time.time()),
        [NewJob(kind=JobKind.review, repo=REPO_FULL_NAME, installation_id=INSTALLATION_ID, pr_number=7,
                head_sha=head_sha)],
    )
    if claim:
        (job,) = await store.claim_jobs("test-worker", 1, 600)
        return job
    return await store.get_job(result.job_ids[0])


def tokens(prefix: str = "ghs_sessiontoken"):
    counter = itertools.count(1)

    async def provide() -> str:
        return f"{prefix}{next(counter):04d}"

    return provide


def static_token(value: str = "ghs_statictoken0001"):
    async def provide() -> str:
        return value

    return provide


def spec_for(job, agent, *, task: str = "Review this pull request.", budget_cents: int | None = 500, **kw) -> SessionSpec:
    agent_id, version, env_id = agent
    return SessionSpec.for_job(job, task=task, agent_id=agent_id, agent_version=version, environment_id=env_id,
                               budget_cents=budget_cents, **kw)


_runtimes: list[SessionRuntime] = []


@pytest.fixture(autouse=True)
async def _close_runtimes():
    yield
    while _runtimes:
        await _runtimes.pop().aclose()


def runtime(managed_agents, store, *, client=None, tools=None, **settings) -> SessionRuntime:
    rt = SessionRuntime(client or managed_agents.client, store, settings=SessionSettings(**{**FAST, **settings}),
                        tools=tools)
    _runtimes.append(rt)
    return rt


# --------------------------------------------------------------------------------------
# the normal run, with report_progress updating the check run in the GitHub simulator
# --------------------------------------------------------------------------------------


async def test_normal_run_with_threads_and_tools_updates_check_run(managed_agents, github_server, store,
                                                                   app_private_key):
    sim, state = managed_agents.sim, github_server.state
    head_sha = state.repo(REPO_FULL_NAME).branch_sha("main")
    gh_app = GitHubApp(app_id=state.app_id, private_key=app_private_key, base_url=github_server.url)
    try:
        agent = await make_agent(managed_agents.client)
        job = await make_job(store, head_sha)
        gh = await gh_app.installation_client(INSTALLATION_ID)
        check_run_id = await start_check_run(gh, job.repo, head_sha, "prmedic review")
        reporter = ProgressReporter(lambda: gh_app.installation_client(INSTALLATION_ID), job.repo, check_run_id,
                                    min_interval=0)
        counter = Counter()
        sim.default_script = normal_review_run()
        rt = SessionRuntime(managed_agents.client, store, settings=SessionSettings(**FAST), tools=counter.registry(),
                            github_app=gh_app)
        _runtimes.append(rt)
        ctx = ToolContext(job=job, store=store, github=lambda: gh_app.installation_client(INSTALLATION_ID),
                          check_run_id=check_run_id, progress=reporter)
        outcome = await asyncio.wait_for(rt.run(spec_for(job, agent), ctx), 10)
    finally:
        await gh_app.close()

    assert outcome.stop_reason == "end_turn" and not outcome.budget_reached and not outcome.resumed
    assert outcome.tool_calls == 2 and outcome.final_message == "Review published."
    assert outcome.list_cost_cents and outcome.list_cost_cents > 0 and outcome.usage["input_tokens"] > 0
    session = sim.session(outcome.session_id)
    # created as specified: pinned agent, repo at the head commit with a read-only one-repo token, budget
    assert session.agent["id"] == agent[0] and session.agent["version"] == agent[1]
    (resource,) = session.resources
    assert resource["url"] == f"https://github.com/{REPO_FULL_NAME}"
    assert resource["checkout"] == {"type": "commit", "sha": head_sha}
    token = state.tokens[resource["_token"]]  # minted through the App for this one repository, read-only
    assert set(token.permissions.values()) == {"read"} and token.permissions["contents"] == "read"
    assert token.repositories == {REPO_FULL_NAME}
    assert session.budget == {"type": "limit", "max_list_cost": {"amount": "500", "currency": "USD"}}
    assert session.metadata["prmedic_job"] == str(job.id) and session.metadata["pr"] == "7"
    assert [u["content"][0]["text"] for u in session.user_messages] == ["Review this pull request."]
    # both sub-agent threads ran; both custom tools were answered once, without errors
    assert {t["agent"]["name"] for t in session.threads.values() if t["parent_thread_id"]} == {"reviewer", "tester"}
    assert [(r.name, r.is_error) for r in session.tool_results] == [("report_progress", False),
                                                                    ("publish_review", False)]
    assert counter.calls == {"publish_review": 1}
    # report_progress reached the check run
    run = state.check_runs[check_run_id]
    assert run.output["title"] == "Reviewing the diff with the reviewer and the tester."
    assert "- [ ] review" in run.output["summary"] and "- [ ] tests" in run.output["summary"]
    # the store knows the session and every answered call
    (record,) = await store.list_sessions(job.id)
    assert record.session_id == outcome.session_id and record.state == "closed"
    assert record.stop_reason == "end_turn" and record.list_cost_cents == outcome.list_cost_cents
    calls = await store.list_tool_calls(outcome.session_id)
    assert [(c.name, c.state) for c in calls] == [("report_progress", "answered"), ("publish_review", "answered")]


async def test_progress_reporter_throttles_and_coalesces(github_server, app_private_key):
    state = github_server.state
    head_sha = state.repo(REPO_FULL_NAME).branch_sha("main")
    gh_app = GitHubApp(app_id=state.app_id, private_key=app_private_key, base_url=github_server.url)
    try:
        gh = await gh_app.installation_client(INSTALLATION_ID)
        run_id = await start_check_run(gh, REPO_FULL_NAME, head_sha, "prmedic")
        reporter = ProgressReporter(lambda: gh_app.installation_client(INSTALLATION_ID), REPO_FULL_NAME, run_id,
                                    min_interval=0.3)
        assert "shown" in await reporter.report("one", done=["a"])
        assert "within" in await reporter.report("two")
        assert "within" in await reporter.report("three", todo=["z"])
        assert reporter.updates_sent == 1 and state.check_runs[run_id].output["title"] == "one"
        await asyncio.sleep(0.45)  # the coalesced report goes out once the interval is over
        assert reporter.updates_sent == 2 and state.check_runs[run_id].output["title"] == "three"
        await reporter.report("four")
        await reporter.aclose()  # flushed at the end of the session
        assert reporter.updates_sent == 3 and state.check_runs[run_id].output["title"] == "four"
        assert state.check_runs[run_id].status == "in_progress"
    finally:
        await gh_app.close()


# --------------------------------------------------------------------------------------
# tool input validation
# --------------------------------------------------------------------------------------


async def test_bad_tool_input_gets_actionable_error_then_corrected_call_succeeds(managed_agents, store):
    sim = managed_agents.sim
    agent = await make_agent(managed_agents.client)
    job = await make_job(store)
    counter = Counter()
    sim.default_script = bad_tool_input_then_fix("publish_review")
    rt = runtime(managed_agents, store, tools=counter.registry())
    outcome = await asyncio.wait_for(rt.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                            token_provider=static_token()), 10)
    assert outcome.stop_reason == "end_turn"
    first, second = sim.session(outcome.session_id).tool_results
    assert first.is_error and not second.is_error
    assert "Invalid input for publish_review" in first.text
    for fragment in ("summary:", "event:", "comments.0.line:", "comments.0.severity: is required"):
        assert fragment in first.text, first.text
    assert counter.calls == {"publish_review": 1}  # the bad call never reached the handler


async def test_unknown_tool_and_refused_call_are_errors(managed_agents, store):
    sim = managed_agents.sim
    agent = await make_agent(managed_agents.client)
    job = await make_job(store)
    registry = ToolRegistry()

    async def refuse(ctx, args):
        raise ToolError("hunk 1 does not apply to src/app.py")

    registry.register("publish_review", PublishReviewInput, refuse)
    sim.default_script = Script(custom_tool_use("report_progress", {"message": "hi"}),
                                custom_tool_use("publish_review", {"summary": "s", "event": "COMMENT"}),
                                stop_end_turn())
    rt = runtime(managed_agents, store, tools=registry)
    outcome = await asyncio.wait_for(rt.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                            token_provider=static_token()), 10)
    unknown, refused = sim.session(outcome.session_id).tool_results
    assert unknown.is_error and "Unknown tool 'report_progress'" in unknown.text and "publish_review" in unknown.text
    assert refused.is_error and refused.text == "hunk 1 does not apply to src/app.py"


@pytest.mark.parametrize(("failure", "expected"), [
    ("rate_limited", "temporarily unavailable"),
    ("not_found", "GitHub refused the request made for publish_review"),
    ("bug", "internal error in the app"),
])
async def test_a_failing_github_call_inside_a_tool_is_answered_for_what_it_is(managed_agents, store, failure, expected):
    import http

    from gidgethub import BadRequest, RateLimitExceeded
    from gidgethub.sansio import RateLimit

    sim = managed_agents.sim
    agent = await make_agent(managed_agents.client)
    job = await make_job(store)
    registry = ToolRegistry()

    async def publish(ctx, args):
        if failure == "rate_limited":
            raise RateLimitExceeded(RateLimit(limit=5000, remaining=0, reset_epoch=time.time() + 3600))
        if failure == "not_found":
            raise BadRequest(http.HTTPStatus.NOT_FOUND, "Not Found")
        raise KeyError("html_url")

    registry.register("publish_review", PublishReviewInput, publish)
    sim.default_script = Script(custom_tool_use("publish_review", {"summary": "s", "event": "COMMENT"}),
                                stop_end_turn())
    rt = runtime(managed_agents, store, tools=registry)
    outcome = await asyncio.wait_for(rt.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                            token_provider=static_token()), 10)
    (answer,) = sim.session(outcome.session_id).tool_results
    assert answer.is_error and expected in answer.text


# --------------------------------------------------------------------------------------
# dropped streams
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["abort", "eof"])
async def test_dropped_stream_loses_nothing_and_handles_nothing_twice(managed_agents, store, mode):
    sim = managed_agents.sim
    agent = await make_agent(managed_agents.client)
    job = await make_job(store)
    handled: list[str] = []
    counter = Counter()
    sim.default_script = dropped_stream([("report_progress", {"message": "one"}),
                                         ("publish_review", {"summary": "ok", "event": "COMMENT"})], mode=mode)
    sim.drop_streams_after(4, times=2, mode=mode)  # and two more drops on top of the scripted one
    rt = runtime(managed_agents, store, tools=counter.registry(progress=False))
    rt.on_event = lambda sid, ev: handled.append(ev.id)
    outcome = await asyncio.wait_for(rt.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                            token_provider=static_token()), 10)
    session = sim.session(outcome.session_id)
    assert session.stream_drops >= 2
    assert len(handled) == len(set(handled)), "an event was handled twice"
    assert set(handled) == {e["id"] for e in session.events}, "an event was lost"
    assert counter.calls == {"report_progress": 1, "publish_review": 1}
    assert [r.name for r in session.tool_results] == ["report_progress", "publish_review"]
    assert outcome.stop_reason == "end_turn"


# --------------------------------------------------------------------------------------
# creating sessions under load
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [529, 429])
async def test_create_survives_a_burst_of_overload_and_rate_limits(managed_agents, store, status):
    sim = managed_agents.sim
    agent = await make_agent(managed_agents.client)
    job = await make_job(store)
    sim.fail_next_session_creates(4, status=status, retry_after=0.01)
    rt = runtime(managed_agents, store)
    outcome = await asyncio.wait_for(rt.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                            token_provider=static_token()), 10)
    assert outcome.stop_reason == "end_turn" and len(sim.sessions) == 1
    assert [c.path for c in sim.calls if c.method == "POST"].count("/v1/sessions") == 5


async def test_create_exhausted_is_transient_and_records_nothing(managed_agents, store):
    sim = managed_agents.sim
    agent = await make_agent(managed_agents.client)
    job = await make_job(store)
    sim.fail_next_session_creates(10, status=529, retry_after=None)
    rt = runtime(managed_agents, store, create_attempts=3)
    with pytest.raises(SessionRetryable) as info:
        await rt.run(spec_for(job, agent), ToolContext(job=job, store=store), token_provider=static_token())
    assert "3 attempts" in str(info.value) and "529" in str(info.value)
    from app.errors import is_transient
    assert is_transient(info.value)
    assert not sim.sessions and await store.get_open_session(job.id) is None


# --------------------------------------------------------------------------------------
# endings
# --------------------------------------------------------------------------------------


async def test_repository_clone_error_interrupts_and_fails(managed_agents, store):
    sim = managed_agents.sim
    agent = await make_agent(managed_agents.client)
    job = await make_job(store)
    sim.default_script = Script(*repository_clone_error().turns[0][:1], pause(0.3), agent_message("no repo"),
                                stop_end_turn())
    rt = runtime(managed_agents, store)
    with pytest.raises(SessionFailed) as info:
        await asyncio.wait_for(rt.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                      token_provider=static_token()), 10)
    assert info.value.reason == "repository_clone_error"
    assert "could not mount octo-org/hello-world: the repository could not be cloned" in str(info.value)
    assert [sid for sid, _ in sim.interrupts] == [info.value.session_id]
    await sim.wait_idle(info.value.session_id, "end_turn")
    assert not any(e["type"] == "agent.message" for e in sim.session(info.value.session_id).events)
    assert await store.get_open_session(job.id) is None


async def test_budget_reached_finishes_and_is_recorded(managed_agents, store):
    sim = managed_agents.sim
    agent = await make_agent(managed_agents.client)
    job = await make_job(store)
    sim.default_script = budget_reached()
    rt = runtime(managed_agents, store)
    outcome = await asyncio.wait_for(rt.run(spec_for(job, agent, budget_cents=100), ToolContext(job=job, store=store),
                                            token_provider=static_token()), 10)
    assert outcome.stop_reason == "budget_reached" and outcome.budget_reached
    assert outcome.list_cost_cents >= 100
    assert outcome.as_result()["list_cost_usd"] == round(outcome.list_cost_cents / 100, 2)
    (record,) = await store.list_sessions(job.id)
    assert record.budget_reached and record.list_cost_cents == outcome.list_cost_cents


async def test_refusal_fails_with_category_and_explanation(managed_agents, store):
    sim = managed_agents.sim
    agent = await make_agent(managed_agents.client)
    job = await make_job(store)
    sim.default_script = refusal("cyber", "The request was declined.")
    rt = runtime(managed_agents, store)
    with pytest.raises(SessionFailed) as info:
        await asyncio.wait_for(rt.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                      token_provider=static_token()), 10)
    assert info.value.reason == "refusal"
    assert str(info.value) == "the model declined the task (refusal, category cyber): The request was declined."


async def test_retries_exhausted_is_transient_and_the_retry_gets_a_new_session(managed_agents, store):
    sim = managed_agents.sim
    agent = await make_agent(managed_agents.client)
    job = await make_job(store)
    sim.queue_script(retries_exhausted())
    rt = runtime(managed_agents, store)
    with pytest.raises(SessionRetryable) as info:
        await asyncio.wait_for(rt.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                      token_provider=static_token()), 10)
    assert "model_overloaded_error" in str(info.value)
    outcome = await asyncio.wait_for(rt.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                            token_provider=static_token()), 10)
    assert outcome.session_id != info.value.session_id and len(sim.sessions) == 2


# --------------------------------------------------------------------------------------
# restarts: every custom tool runs exactly once, and the session is resumed, not recreated
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("moment", ["after_task_sent", "just_answered", "stored_not_sent"])
async def test_worker_restart_resumes_and_runs_each_tool_once(managed_agents, store, monkeypatch, moment):
    sim = managed_agents.sim
    first_client = managed_agents.new_client()
    agent = await make_agent(first_client)
    job = await make_job(store)
    counter = Counter()
    sim.default_script = normal_review_run()
    first = runtime(managed_agents, store, client=first_client, tools=counter.registry(progress=False))
    task: asyncio.Task | None = None

    def crash_on(ev_type: str, **match):
        def hook(sid, ev):
            if ev.type == ev_type and all(getattr(ev, k, None) == v for k, v in match.items()):
                task.cancel()  # the worker process dies here
        return hook

    if moment == "after_task_sent":
        first.on_event = crash_on("user.message")
    elif moment == "just_answered":
        first.on_event = lambda sid, ev: task.cancel() if ev.type == "user.custom_tool_result" else None
    else:
        real_send = runner_module.SessionRun._send

        async def dying_send(self, event_id, event):
            if event["type"] == "user.custom_tool_result":
                raise asyncio.CancelledError()  # stored, but the process died before sending
            await real_send(self, event_id, event)

        monkeypatch.setattr(runner_module.SessionRun, "_send", dying_send)

    task = asyncio.create_task(first.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                         token_provider=static_token()))
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    await first_client.close()
    monkeypatch.undo()
    assert not sim.interrupts  # a dying worker leaves the session running for the next one
    (record,) = await store.list_sessions(job.id)
    assert record.state == "open"

    second = runtime(managed_agents, store, client=managed_agents.new_client(), tools=counter.registry(progress=False))
    outcome = await asyncio.wait_for(second.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                                token_provider=static_token()), 10)
    assert outcome.resumed and outcome.session_id == record.session_id and len(sim.sessions) == 1
    assert counter.calls == {"report_progress": 1, "publish_review": 1}
    session = sim.session(outcome.session_id)
    assert [r.name for r in session.tool_results] == ["report_progress", "publish_review"]
    assert not any(r.is_error for r in session.tool_results)
    assert len(session.user_messages) == 1  # the task was not sent twice
    assert outcome.stop_reason == "end_turn"


async def test_restart_while_a_handler_ran_does_not_run_it_again(managed_agents, store):
    sim = managed_agents.sim
    first_client = managed_agents.new_client()
    agent = await make_agent(first_client)
    job = await make_job(store)
    runs = []
    handlers: list[asyncio.Task] = []
    blocked = asyncio.Event()

    async def slow_progress(ctx, args):
        runs.append(args.message)
        handlers.append(asyncio.current_task())
        blocked.set()
        await asyncio.sleep(60)
        return "never"

    registry = ToolRegistry()
    registry.register("report_progress", ReportProgressInput, slow_progress)
    sim.default_script = Script(model_request(), custom_tool_use("report_progress", {"message": "x"}),
                                agent_message("after"), stop_end_turn())
    first = runtime(managed_agents, store, client=first_client, tools=registry)
    task = asyncio.create_task(first.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                         token_provider=static_token()))
    await asyncio.wait_for(blocked.wait(), 5)
    task.cancel()
    handlers[0].cancel()  # the process dies: the handler ends with it
    with pytest.raises(asyncio.CancelledError):
        await task
    second = runtime(managed_agents, store, client=managed_agents.new_client(), tools=registry)
    outcome = await asyncio.wait_for(second.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                                token_provider=static_token()), 10)
    assert runs == ["x"] and outcome.resumed
    (result,) = sim.session(outcome.session_id).tool_results
    assert result.is_error and "whether it took effect is unknown" in result.text


async def test_a_tool_call_under_way_when_the_worker_stops_finishes_and_the_next_worker_re_sends_its_result(
    managed_agents, store
):
    sim = managed_agents.sim
    first_client = managed_agents.new_client()
    agent = await make_agent(first_client)
    job = await make_job(store)
    runs = []
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_progress(ctx, args):
        runs.append(args.message)
        started.set()
        await release.wait()
        return "progress noted"

    registry = ToolRegistry()
    registry.register("report_progress", ReportProgressInput, slow_progress)
    sim.default_script = Script(model_request(), custom_tool_use("report_progress", {"message": "x"}),
                                agent_message("after"), stop_end_turn())
    first = runtime(managed_agents, store, client=first_client, tools=registry)
    task = asyncio.create_task(first.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                         token_provider=static_token()))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()  # the worker stops (SIGTERM): the job is still running in the store
    await asyncio.sleep(0.05)
    assert not task.done()  # the handler under way is let finish
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    (call,) = await store.list_tool_calls(sim.session().id)
    assert (call.state, call.result) == ("answered", "progress noted")
    assert not sim.interrupts

    second = runtime(managed_agents, store, client=managed_agents.new_client(), tools=registry)
    outcome = await asyncio.wait_for(second.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                                token_provider=static_token()), 10)
    assert runs == ["x"] and outcome.resumed
    (result,) = sim.session(outcome.session_id).tool_results
    assert not result.is_error and result.text == "progress noted"


async def test_a_tool_call_of_a_job_superseded_by_another_process_is_refused_not_run(managed_agents, store, settings):
    from app.store import open_store

    sim = managed_agents.sim
    agent = await make_agent(managed_agents.client)
    job = await make_job(store)
    counter = Counter()
    sim.default_script = Script(model_request(), pause(0.2), custom_tool_use("publish_review", {
        "summary": "Old head.", "event": "COMMENT", "comments": []}), agent_message("done"), stop_end_turn())
    heard: list[dict] = []
    store.on_jobs_stopped(lambda jobs: heard.append(dict(jobs)))
    rt = runtime(managed_agents, store, tools=counter.registry(progress=False))
    task = asyncio.create_task(rt.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                      token_provider=static_token()))
    await sim.wait_until(lambda: sim.sessions and sim.session().status == "running")
    other = open_store(settings.database_url)  # a newer push recorded by another process
    await other.open()
    try:
        assert await other.request_cancel(job.id, JobState.superseded)
    finally:
        await other.close()
    await asyncio.wait_for(task, 10)
    assert counter.calls == {}
    (result,) = sim.session().tool_results
    assert result.is_error and "Refused" in result.text and "superseded" in result.text
    assert heard == [{job.id: JobState.superseded}]  # the worker of this process is told at once


# --------------------------------------------------------------------------------------
# interrupt, maximum duration, token rotation
# --------------------------------------------------------------------------------------


async def test_cancel_of_a_cancelled_job_interrupts_the_session(managed_agents, store):
    sim = managed_agents.sim
    agent = await make_agent(managed_agents.client)
    job = await make_job(store)
    sim.default_script = Script(model_request(), pause(30), agent_message("never"))
    rt = runtime(managed_agents, store)
    task = asyncio.create_task(rt.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                      token_provider=static_token()))
    await sim.wait_until(lambda: sim.sessions and sim.session().status == "running")
    assert await store.request_cancel(job.id, JobState.superseded)
    task.cancel()  # what the worker does when its heartbeat sees the job superseded
    with pytest.raises(asyncio.CancelledError):
        await task
    sid = sim.session().id
    assert [s for s, _ in sim.interrupts] == [sid]
    await sim.wait_idle(sid, "end_turn")
    assert await store.get_open_session(job.id) is None


async def test_maximum_duration_interrupts_and_fails(managed_agents, store):
    sim = managed_agents.sim
    agent = await make_agent(managed_agents.client)
    job = await make_job(store)
    sim.default_script = Script(model_request(), pause(30), agent_message("never"))
    rt = runtime(managed_agents, store, max_duration_seconds=0.4)
    started = time.monotonic()
    with pytest.raises(SessionFailed) as info:
        await asyncio.wait_for(rt.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                      token_provider=static_token()), 10)
    assert time.monotonic() - started < 3
    assert info.value.reason == "max_duration"
    assert "ran longer than the maximum of 0.4 seconds and was stopped" in str(info.value)
    assert [s for s, _ in sim.interrupts] == [info.value.session_id]


async def test_repository_token_is_rotated_while_the_session_runs(managed_agents, store):
    sim = managed_agents.sim
    agent = await make_agent(managed_agents.client)
    job = await make_job(store)
    sim.default_script = Script(model_request(), pause(0.5), agent_message("done"), stop_end_turn())
    rt = runtime(managed_agents, store, token_refresh_seconds=0.1)
    outcome = await asyncio.wait_for(rt.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                            token_provider=tokens()), 10)
    (resource,) = sim.session(outcome.session_id).resources
    assert resource["_token_updates"] >= 3 and outcome.token_rotations == resource["_token_updates"]
    assert resource["_token"] == f"ghs_sessiontoken{outcome.token_rotations + 1:04d}"


async def test_unchanged_token_is_not_re_sent(managed_agents, store):
    sim = managed_agents.sim
    agent = await make_agent(managed_agents.client)
    job = await make_job(store)
    sim.default_script = Script(model_request(), pause(0.3), stop_end_turn())
    rt = runtime(managed_agents, store, token_refresh_seconds=0.05)
    outcome = await asyncio.wait_for(rt.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                            token_provider=static_token()), 10)
    (resource,) = sim.session(outcome.session_id).resources
    assert "_token_updates" not in resource and outcome.token_rotations == 0


async def test_many_sessions_share_one_runtime_within_the_cap(managed_agents, store):
    sim = managed_agents.sim
    agent = await make_agent(managed_agents.client)
    jobs = []
    for _ in range(12):
        jobs.append(await make_job(store, claim=False))
    claimed = await store.claim_jobs("w", 20, 600)
    sim.default_script = Script(model_request(), custom_tool_use("report_progress", {"message": "hi"}), pause(0.05),
                                stop_end_turn())
    counter = Counter()
    rt = runtime(managed_agents, store, tools=counter.registry(progress=False), max_sessions=4)
    peak = 0

    def watch(sid, ev):
        nonlocal peak
        peak = max(peak, rt.active)

    rt.on_event = watch
    outcomes = await asyncio.wait_for(asyncio.gather(*(
        rt.run(spec_for(job, agent), ToolContext(job=job, store=store), token_provider=static_token())
        for job in claimed)), 20)
    assert len({o.session_id for o in outcomes}) == 12 and peak <= 4
    assert counter.calls == {"report_progress": 12}


async def test_threads_tools_a_dropped_stream_and_a_restart_end_with_every_tool_run_exactly_once(managed_agents, store):
    """The issue's acceptance run: sub-agent threads, custom tools, a dropped stream, a restart."""
    from sims.managed_agents import (
        Script, agent_message, custom_tool_use, drop_stream, model_request, stop_end_turn, thread_created,
        thread_idle, thread_message, thread_reply,
    )

    sim = managed_agents.sim
    sim.default_script = Script(
        thread_created("reviewer"), thread_created("tester"),
        thread_message("reviewer", "Review the diff."), thread_message("tester", "Run the tests."),
        model_request(1200, 200, thread="reviewer"), thread_reply("reviewer", "One finding."), thread_idle("reviewer"),
        custom_tool_use("report_progress", {"message": "Reviewer done", "done": ["review"], "todo": ["tests"]}),
        drop_stream("abort"),
        agent_message("Carrying on while the stream is down."),
        thread_reply("tester", "12 passed."), thread_idle("tester"),
        custom_tool_use("report_progress", {"message": "Tests pass"}),
        custom_tool_use("publish_review", {"summary": "One finding.", "event": "COMMENT", "comments": []}),
        model_request(500, 80), stop_end_turn(),
    )
    first_client = managed_agents.new_client()
    agent = await make_agent(first_client)
    job = await make_job(store)
    counter = Counter()
    first = runtime(managed_agents, store, client=first_client, tools=counter.registry(progress=False))
    answered = 0

    def die_after_second_answer(sid, ev):
        nonlocal answered
        if ev.type == "user.custom_tool_result":
            answered += 1
            if answered == 2:
                task.cancel()

    first.on_event = die_after_second_answer
    task = asyncio.create_task(first.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                         token_provider=static_token()))
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    await first_client.close()

    second = runtime(managed_agents, store, client=managed_agents.new_client(), tools=counter.registry(progress=False))
    outcome = await asyncio.wait_for(second.run(spec_for(job, agent), ToolContext(job=job, store=store),
                                                token_provider=static_token()), 10)
    session = sim.session(outcome.session_id)
    assert outcome.resumed and len(sim.sessions) == 1 and session.stream_drops >= 1
    assert counter.calls == {"report_progress": 2, "publish_review": 1}
    assert [r.name for r in session.tool_results] == ["report_progress", "report_progress", "publish_review"]
    assert {r.custom_tool_use_id for r in session.tool_results} == {
        e["id"] for e in session.events if e["type"] == "agent.custom_tool_use"}
    assert outcome.stop_reason == "end_turn"
