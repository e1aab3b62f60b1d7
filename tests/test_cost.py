"""Cost a team can budget by: tokens per model and session runtime priced at list price, shown on the
check run, kept in the job's result, counted in `/metrics`, summed up by `prmedic stats`."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from review_helpers import REPO, PullRequestRepo, review_script

from app.cli import main
from app.sessions.cost import RUNTIME_USD_PER_HOUR, ModelUsage, price_for, session_cost
from app.sessions.stats import format_stats, job_stats, parse_since, percentile
from app.store import Delivery, Job, JobKind, JobState, NewJob, open_store

OPUS, SONNET = "claude-opus-5-5", "claude-sonnet-5-5"


# -- the model (pure) ------------------------------------------------------------------------

def test_a_models_tokens_are_priced_by_its_family_with_cache_reads_and_writes():
    usage = ModelUsage(input=1_000_000, output=100_000, cache_read=2_000_000, cache_write=400_000)
    inp, out = price_for(OPUS)
    assert usage.usd(OPUS) == pytest.approx(inp + out / 10 + 2 * inp * 0.1 + 0.4 * inp * 1.25)
    assert price_for("claude-haiku-4-5") != price_for(OPUS)
    assert price_for("some-new-model") == price_for(SONNET)  # never free


def test_the_total_adds_tokens_by_model_and_runtime_at_eight_cents_an_hour():
    threads = [(OPUS, {"input_tokens": 1000, "output_tokens": 100, "cache_read_input_tokens": 50,
                       "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 5}}),
               (SONNET, {"input_tokens": 300, "output_tokens": 30}),
               (OPUS, {"input_tokens": 10, "output_tokens": 1})]
    cost = session_cost({"input_tokens": 1310, "output_tokens": 131, "active_seconds": 1800}, threads)
    assert cost.models[OPUS] == ModelUsage(input=1010, output=101, cache_read=50, cache_write=25)
    assert cost.models[SONNET] == ModelUsage(input=300, output=30)
    assert cost.runtime_usd == pytest.approx(RUNTIME_USD_PER_HOUR / 2)
    assert cost.total_usd == pytest.approx(cost.models[OPUS].usd(OPUS) + cost.models[SONNET].usd(SONNET) + 0.04)
    stored = cost.as_dict()
    assert stored["runtime_seconds"] == 1800 and stored["models"][SONNET] == {
        "input": 300, "output": 30, "cache_read": 0, "cache_write": 0, "usd": round(cost.models[SONNET].usd(SONNET), 4)}


def test_the_platforms_list_cost_of_the_tokens_wins_over_the_table():
    usage = {"input_tokens": 1000, "output_tokens": 100, "list_cost": {"amount": "123", "currency": "USD"},
             "active_seconds": 3600}
    cost = session_cost(usage)
    assert cost.models == {"unknown": ModelUsage(input=1000, output=100)}  # no threads: not split
    assert cost.tokens_usd == 1.23 and cost.total_usd == pytest.approx(1.23 + RUNTIME_USD_PER_HOUR)
    assert "runtime 60m 00s ($0.08)" in cost.summary_line()


# -- against the simulators ------------------------------------------------------------------

async def test_a_reviews_cost_adds_up_from_the_simulators_usage_and_running_time(app_stack, git_repo):
    state, sim = app_stack.state, app_stack.agents.sim
    pr = PullRequestRepo(state, git_repo)
    pr.set_config("review:\n  depth: deep\n")  # the deep team: models of two families
    sim.default_script = review_script([{"path": "src/app.py", "line": 41, "severity": "major", "body": "Off by one."}])
    await app_stack.deliver("pull_request", pr.event("opened"))
    await app_stack.run_jobs()

    (job,) = await app_stack.store.list_jobs(kind="review")
    assert job.state is JobState.done, job.last_error
    (session,) = sim.sessions.values()
    assert session.agent["name"] == "coordinator"
    cost = job.result["cost"]
    # tokens by the model of each thread: the coordinator and reviewer on Opus, the tester on Sonnet
    by_model: dict[str, dict[str, int]] = {}
    for tid in session.threads:
        model = session.threads[tid]["agent"]["model"]["id"]
        mine = by_model.setdefault(model, {"input": 0, "output": 0, "cache_read": 0})
        bag = session.thread_usage[tid]
        mine["input"] += bag["input_tokens"]
        mine["output"] += bag["output_tokens"]
        mine["cache_read"] += bag["cache_read_input_tokens"]
    assert set(cost["models"]) == {OPUS, SONNET} == set(by_model)
    for model, tokens in by_model.items():
        assert {k: cost["models"][model][k] for k in tokens} == tokens
    assert sum(m["input"] for m in cost["models"].values()) == session.usage["input_tokens"]
    # runtime: the time the simulated session was running, at $0.08 an hour
    assert session.status == "idle" and session.active_seconds() > 0
    assert cost["runtime_seconds"] == pytest.approx(session.active_seconds(), abs=0.051)
    assert cost["runtime_usd"] == pytest.approx(cost["runtime_seconds"] / 3600 * 0.08, abs=1e-4)
    # the total: the platform's list cost of the tokens plus the runtime
    assert cost["total_usd"] == pytest.approx(int(session.cost_cents()) / 100 + cost["runtime_usd"], abs=1e-4)

    (check,) = [c for c in state.check_runs_for(REPO, pr.head) if c.name == "prmedic review"]
    summary = check.output["summary"]
    assert f"Cost (list price): ${cost['total_usd']:.2f}" in summary
    assert f"{OPUS}: " in summary and f"{SONNET}: " in summary and "runtime " in summary

    # /metrics: the session's cost by job kind and its tokens by model and type, counted once
    metrics = await (await app_stack.deliver.client.get("/metrics")).text()
    counted = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
               if line.startswith(("prmedic_cost_usd_total", "prmedic_tokens_total"))}
    assert counted['prmedic_cost_usd_total{kind="review",route="deep"}'] == pytest.approx(cost["total_usd"])
    for model, tokens in cost["models"].items():
        assert counted[f'prmedic_tokens_total{{model="{model}",type="input"}}'] == tokens["input"]
        assert counted[f'prmedic_tokens_total{{model="{model}",type="output"}}'] == tokens["output"]


# -- prmedic stats -----------------------------------------------------------------------------

def _job(job_id: int, repo: str, cost: float | None, *, state=JobState.done, age_days: float = 1,
         kind=JobKind.review) -> Job:
    now = time.time()
    result = None if cost is None else {"cost": {"total_usd": cost}}
    return Job(id=job_id, kind=kind, repo=repo, state=state, max_attempts=3, result=result,
               created_at=now - age_days * 86400, updated_at=now)


def test_stats_give_jobs_cost_per_job_and_per_repository_of_the_period():
    jobs = [_job(1, "o/a", 1.0), _job(2, "o/a", 2.0), _job(3, "o/b", 3.0, kind=JobKind.fix),
            _job(4, "o/b", 10.0), _job(5, "o/b", None, state=JobState.failed),
            _job(6, "o/a", 50.0, age_days=40),  # before the period
            _job(7, "o/a", 50.0, state=JobState.running)]  # not finished
    stats = job_stats(jobs, since=time.time() - parse_since("30d"))
    assert stats["jobs"] == 5 and stats["jobs_with_cost"] == 4
    assert stats["jobs_by_kind"] == {"fix": 1, "review": 4}
    assert stats["cost_usd"] == 16.0
    assert stats["cost_per_job_usd"] == {"median": 2.5, "p90": 10.0}
    assert stats["cost_by_repo_usd"] == {"o/b": {"jobs": 3, "cost_usd": 13.0}, "o/a": {"jobs": 2, "cost_usd": 3.0}}
    assert list(stats["cost_by_repo_usd"]) == ["o/b", "o/a"]  # the dearest first
    assert job_stats(jobs, repo="o/a")["jobs"] == 3
    assert stats["cost_by_route_usd"] == {}  # none of these results says how it was routed
    # reviews by route: the depth from the result, or from a `/review` command's review
    routed = [_job(10, "o/a", 0.2), _job(11, "o/a", 0.4), _job(12, "o/a", 3.0), _job(13, "o/a", None),
              _job(14, "o/a", 1.0, kind=JobKind.command)]
    for job, depth in zip(routed[:4], ("light", "light", "deep", "deep")):
        job.result = {**(job.result or {}), "route": {"depth": depth}}
    routed[4].result["review"] = {"route": {"depth": "standard"}}
    assert job_stats(routed)["cost_by_route_usd"] == {
        "deep": {"jobs": 2, "median": 3.0, "p90": 3.0}, "light": {"jobs": 2, "median": 0.3, "p90": 0.4},
        "standard": {"jobs": 1, "median": 1.0, "p90": 1.0}}
    assert "  light          2 jobs  median $0.30, p90 $0.40" in format_stats(job_stats(routed))
    # a result from before the breakdown still counts by its platform list cost
    old = _job(8, "o/c", None)
    old.result = {"list_cost_usd": 0.7}
    assert job_stats([old])["cost_usd"] == 0.7


def test_periods_and_percentiles():
    assert parse_since("30d") == 30 * 86400 and parse_since("12h") == 12 * 3600 and parse_since("2w") == 14 * 86400
    with pytest.raises(ValueError):
        parse_since("a month")
    assert percentile([], 0.9) is None
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([float(n) for n in range(1, 11)], 0.9) == 9.0


def test_the_stats_command_reads_the_stores_finished_jobs(settings, capsys):
    async def finished_jobs() -> None:
        store = open_store(settings.database_url)
        await store.open()
        delivery = Delivery(delivery_id="d1", event="pull_request", received_at=time.time())
        new = [NewJob(kind=JobKind.review, repo=repo, pr_number=n, head_sha=str(n) * 40)
               for n, repo in ((1, "octo/a"), (2, "octo/a"), (3, "octo/b"))]
        ids = (await store.record_delivery(delivery, new)).job_ids
        await store.claim_jobs("w", 3, 60)
        for job_id, usd in zip(ids, (0.5, 1.5, 4.0)):
            await store.finish_job(job_id, "w", JobState.done, result={"cost": {"total_usd": usd}})
        await store.close()

    asyncio.run(finished_jobs())
    assert main(["stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["jobs"] == 3 and stats["cost_usd"] == 6.0 and stats["cost_per_job_usd"]["median"] == 1.5
    assert stats["cost_by_repo_usd"]["octo/a"] == {"jobs": 2, "cost_usd": 2.0}
    assert main(["stats", "--repo", "octo/b", "--since", "7d"]) == 0
    out = capsys.readouterr().out
    assert "jobs: 1 (1 review)" in out and "octo/b" in out and "$4.00" in out and "octo/a" not in out
    assert main(["stats", "--since", "soon"]) == 2
    capsys.readouterr()
    assert main(["jobs", "--json"]) == 0  # the breakdown is in the listed jobs' results
    assert sorted(j["result"]["cost"]["total_usd"] for j in json.loads(capsys.readouterr().out)) == [0.5, 1.5, 4.0]
