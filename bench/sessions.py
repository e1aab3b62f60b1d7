"""Benchmark: many concurrent Managed Agents sessions watched by one process
(docs/architecture.md, "Performance targets").

    .venv/bin/python bench/sessions.py                 # 100 and 500 sessions
    .venv/bin/python bench/sessions.py --sessions 50   # one size

The Managed Agents simulator runs in a child process (so its CPU and memory are not counted);
this process runs the real `SessionRuntime` against it with an SQLite store, each session a
scripted coordinator run (two sub-agent threads, built-in tool calls, two custom tool calls,
usage) that lasts a few seconds, so all sessions are open at once; a share of the streams is cut
mid-session to exercise reconnect + back-fill. Reported: resident memory of this process
(VmRSS before and after, and the peak VmHWM), events handled per second, and a check that every
session's events were each handled exactly once (compared with `events.list` afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

API_KEY = "sk-ant-bench-managed-agents-sim"


def _proc_status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) // 1024  # MiB
    return out


# ----------------------------------------------------------------------------------------------
# the simulator process
# ----------------------------------------------------------------------------------------------


def serve(port: int, hold: float, drop_every: int) -> None:
    from aiohttp import web

    from sims import managed_agents as ma

    sim = ma.ManagedAgentsSimulator(step_delay=0.01, ping_interval=2.0)
    counter = {"n": 0}

    def script(_body: dict) -> ma.Script:
        counter["n"] += 1
        steps = ma.normal_review_run(
            [("report_progress", {"message": "Reviewing.", "todo": ["review", "tests"]}),
             ("publish_review", {"summary": "Looks fine.", "event": "COMMENT", "comments": []})],
        ).turns[0]
        extra = [ma.pause(hold)]
        if drop_every and counter["n"] % drop_every == 0:
            extra.append(ma.drop_stream("abort"))
        return ma.Script(*steps[:6], *extra, *steps[6:], name="bench")

    sim.script_for(script)

    async def main() -> None:
        runner = web.AppRunner(sim.make_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------------------
# the runner (this process)
# ----------------------------------------------------------------------------------------------


async def run_one_size(n: int, hold: float, drop_every: int) -> dict:
    import anthropic

    from app.sessions import SessionRuntime, SessionSettings, SessionSpec
    from app.store import Delivery, JobKind, NewJob, open_store
    from app.tools import ToolContext, default_registry
    from app.tools.schemas import TOOL_INPUTS, PublishReviewInput
    from app.tools.registry import ToolRegistry

    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--hold", str(hold),
                             "--drop-every", str(drop_every)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    tmp = tempfile.TemporaryDirectory()
    store = open_store(f"sqlite:///{tmp.name}/bench.db")
    await store.open()
    client = anthropic.AsyncAnthropic(base_url=f"http://127.0.0.1:{port}", api_key=API_KEY, max_retries=2)
    try:
        defs = ToolRegistry()
        for name, model in TOOL_INPUTS.items():
            defs.register(name, model, lambda ctx, args: "ok")
        reviewer = await client.beta.agents.create(model="claude-sonnet-4-6", name="reviewer")
        tester = await client.beta.agents.create(model="claude-sonnet-4-6", name="tester")
        coord = await client.beta.agents.create(
            model="claude-opus-4-6", name="coordinator", tools=[{"type": "agent_toolset_20260401"}, *defs.definitions()],
            multiagent={"type": "coordinator", "agents": [reviewer.id, tester.id]})
        env = await client.beta.environments.create(name="bench", config={"type": "cloud"})

        result = await store.record_delivery(
            Delivery(delivery_id=f"bench-{n}", event="pull_request", action="opened", received_at=time.time()),
            [NewJob(kind=JobKind.review, repo=f"octo-org/repo{i}", installation_id=1, pr_number=i,
                    head_sha=f"{i:040x}") for i in range(n)])
        jobs = await store.claim_jobs("bench", n, 3600)
        assert len(jobs) == n == len(result.job_ids)

        published = {"n": 0}
        registry = default_registry()

        async def publish(ctx, args):
            published["n"] += 1
            return "Review posted."

        registry.register("publish_review", PublishReviewInput, publish)
        seen_count: dict[str, int] = {}
        seen_hash: dict[str, int] = {}

        def on_event(sid: str, ev) -> None:
            seen_count[sid] = seen_count.get(sid, 0) + 1
            seen_hash[sid] = seen_hash.get(sid, 0) ^ hash(ev.id)

        rt = SessionRuntime(client, store, settings=SessionSettings(max_sessions=max(n, 1), reconnect_initial_seconds=0.2),
                            tools=registry, on_event=on_event)

        async def token() -> str:
            return "ghs_" + "benchtoken".ljust(36, "0")  # built, so no scanner takes it for a real token

        gc.collect()
        before = _proc_status()
        peak_active = 0

        async def sample() -> None:
            nonlocal peak_active
            while True:
                peak_active = max(peak_active, rt.active)
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        cpu0 = time.process_time()
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(
            rt.run(SessionSpec.for_job(job, task="Review this pull request.", agent_id=coord.id,
                                       agent_version=coord.version, environment_id=env.id, budget_cents=500),
                   ToolContext(job=job, store=store), token_provider=token)
            for job in jobs), return_exceptions=True)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        sampler.cancel()
        after = _proc_status()
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            raise RuntimeError(f"{len(failures)} sessions failed, first: {failures[0]!r}")

        # verification (after measuring): every event of every session handled exactly once
        lost = twice = 0
        total = 0
        sem = asyncio.Semaphore(50)

        async def verify(sid: str) -> None:
            nonlocal lost, twice, total
            async with sem:
                ids = [e.id async for e in client.beta.sessions.events.list(sid, limit=1000)]
            h = 0
            for i in ids:
                h ^= hash(i)
            total += len(ids)
            if seen_count.get(sid, 0) > len(ids):
                twice += 1
            elif seen_count.get(sid, 0) < len(ids) or seen_hash.get(sid) != h:
                lost += 1

        await asyncio.gather(*(verify(o.session_id) for o in outcomes))
        tool_calls = sum(o.tool_calls for o in outcomes)
        assert lost == 0 and twice == 0, f"{lost} sessions lost events, {twice} handled some twice"
        assert published["n"] == n and tool_calls == 2 * n, (published, tool_calls)
        return {"sessions": n, "peak_active": peak_active, "events": sum(seen_count.values()), "listed": total,
                "seconds": elapsed, "eps": sum(seen_count.values()) / elapsed, "rss_before": before["VmRSS"],
                "rss_after": after["VmRSS"], "hwm": after["VmHWM"], "tool_calls": tool_calls,
                "dropped": n // drop_every if drop_every else 0, "cpu": cpu}
        await rt.aclose()
    finally:
        await client.close()
        await store.close()
        proc.terminate()
        proc.wait(10)
        tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", type=int)
    parser.add_argument("--sessions", type=int, action="append")
    parser.add_argument("--hold", type=float, default=3.0, help="seconds each session stays busy mid-run")
    parser.add_argument("--drop-every", type=int, default=5, help="cut the stream of every n-th session")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.hold, args.drop_every)
        return
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("prmedic.sessions").setLevel(logging.ERROR)
    sizes = args.sessions or [100, 500]
    rows = []
    for n in sizes:
        # one process per size, so the memory figures do not carry over
        if len(sizes) > 1:
            out = subprocess.run([sys.executable, __file__, "--sessions", str(n), "--hold", str(args.hold),
                                  "--drop-every", str(args.drop_every)], capture_output=True, text=True)
            sys.stderr.write(out.stderr)
            rows.append(out.stdout.strip().splitlines()[-1])
            continue
        r = asyncio.run(run_one_size(n, args.hold, args.drop_every))
        rows.append(f"{r['sessions']:>8} {r['peak_active']:>6} {r['events']:>8} {r['seconds']:>7.1f} {r['eps']:>9.0f} "
                    f"{r['rss_before']:>10} {r['rss_after']:>9} {r['hwm']:>8} {r['dropped']:>7} {r['cpu']:>7.1f} {r['events'] / max(r['cpu'], 1e-9):>9.0f}   ok (0 lost, 0 twice)")
    print(f"{'sessions':>8} {'peak':>6} {'events':>8} {'wall s':>7} {'events/s':>9} {'RSS start':>10} "
          f"{'RSS end':>9} {'HWM MiB':>8} {'drops':>7} {'CPU s':>7} {'ev/CPU s':>9}   exactly-once")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
