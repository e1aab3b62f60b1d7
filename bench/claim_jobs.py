"""Job-claiming benchmark: jobs/s claimed and finished by 1, 2 and 4 workers, on PostgreSQL and SQLite.

Each cell records `--jobs` review jobs (one per PR, so none supersedes another) in a fresh store, then
starts the workers: separate processes, each with its own store object and prmedic's `Worker` running
a no-op pipeline, as replicas would. They open their stores first and start together; the clock
runs from the start until every job is `done`. What is measured is the store's part of a job: the
claim (a batch per free slot), the lease renewal task, and the finish.

    python bench/claim_jobs.py                         # both backends, 1,2,4 workers, 3000 jobs
    python bench/claim_jobs.py --backends postgresql --workers 1,2,4,8 --jobs 10000
    python bench/claim_jobs.py --repeat 3              # every cell 3 times; the table shows the median

Afterwards each cell is checked: every job done exactly once (the workers' own counts add up to the
jobs, none failed or ran twice). PostgreSQL: the local server (`--postgres-url`,
PRMEDIC_BENCH_POSTGRES_URL), one throw-away database per cell.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pgdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# -- one worker process ------------------------------------------------------------------------


async def worker_process(url: str, concurrency: int, lease_seconds: float) -> None:
    """Open the store, say `ready`, run the worker from `go` until `stop` (both on stdin), print the
    number of jobs this worker finished."""
    from app.store import open_store
    from app.worker import Worker

    finished = 0

    async def noop(_ctx) -> dict:
        nonlocal finished
        finished += 1
        return {}

    store = open_store(url)
    await store.open()
    worker = Worker(store, {"review": noop}, concurrency=concurrency, lease_seconds=lease_seconds,
                    poll_seconds=0.05)
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # go
    task = asyncio.create_task(worker.run())
    await loop.run_in_executor(None, sys.stdin.readline)  # stop
    await worker.stop()
    await task
    await store.close()
    print(f"finished {finished}", flush=True)


# -- the driver ----------------------------------------------------------------------------------


async def seed(url: str, count: int) -> None:
    """`count` deliveries with one review job each, recorded in batches (group commit)."""
    from app.store import Delivery, JobKind, NewJob, open_store

    store = open_store(url)
    await store.open()
    try:
        for start in range(0, count, 500):
            await asyncio.gather(*(store.record_delivery(
                Delivery(delivery_id=f"bench-{n}", event="pull_request", action="opened", received_at=time.time()),
                [NewJob(kind=JobKind.review, repo="bench/claims", installation_id=1, pr_number=n,
                        head_sha=f"{n:040x}", supersede_key=f"review:bench/claims#{n}")])
                for n in range(start, min(start + 500, count))))
    finally:
        await store.close()


async def states(url: str) -> dict[str, int]:
    from app.store import open_store

    store = open_store(url)
    await store.open()
    try:
        counts = await store.count_jobs_by_state()
    finally:
        await store.close()
    found: dict[str, int] = {}
    for (_kind, state), n in counts.items():
        found[state] = found.get(state, 0) + n
    return found


def done_count(url: str) -> int:
    """Jobs done, read outside the workers' stores (a plain connection), cheap enough to poll."""
    if url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=10) as conn:
            return conn.execute("SELECT count(*) FROM jobs WHERE state = 'done'").fetchone()[0]

    async def count() -> int:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval("SELECT count(*) FROM jobs WHERE state = 'done'")
        finally:
            await conn.close()

    return asyncio.run(count())


def run_cell(url: str, workers: int, jobs: int, concurrency: int, timeout: float) -> dict:
    asyncio.run(seed(url, jobs))
    env = dict(os.environ, PRMEDIC_LOG_LEVEL="WARNING")
    procs = [subprocess.Popen([sys.executable, __file__, "--_worker", url, "--concurrency", str(concurrency)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for _ in range(workers)]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", "a worker did not start"
        start = time.monotonic()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        while (done := done_count(url)) < jobs:
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"{done} of {jobs} jobs done after {timeout:.0f} s")
            time.sleep(0.01)
        elapsed = time.monotonic() - start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.stdin.write("stop\n")
                proc.stdin.flush()
        outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    shares = [int(line.split()[1]) for out in outputs for line in out.splitlines() if line.startswith("finished ")]
    return {"workers": workers, "seconds": elapsed, "jobs_per_s": jobs / elapsed, "shares": shares,
            "states": asyncio.run(states(url))}


def cell_store(backend: str, workdir: Path, admin_url: str) -> tuple[str, str | None]:
    """A fresh, empty store for one cell: (its URL, the PostgreSQL database to drop afterwards)."""
    if backend == "sqlite":
        path = workdir / f"claims-{time.monotonic_ns()}.db"
        return f"sqlite:///{path}", None
    name = pgdb.fresh_name("prmedic_bench_claims")
    return pgdb.create(admin_url, name), name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--workers", default="1,2,4", help="comma list of worker counts")
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8, help="jobs one worker runs at once (PRMEDIC_WORKER_CONCURRENCY)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--postgres-url", default=pgdb.DEFAULT_ADMIN_URL)
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker:
        asyncio.run(worker_process(args._worker, args.concurrency, lease_seconds=60.0))
        return 0

    rows: list[dict] = []
    ok = True
    with tempfile.TemporaryDirectory(prefix="prmedic-claims-") as tmp:
        for repeat in range(args.repeat):
            for backend in args.backends.split(","):
                for workers in (int(n) for n in args.workers.split(",")):
                    url, database = cell_store(backend, Path(tmp), args.postgres_url)
                    try:
                        row = {"backend": backend, "repeat": repeat, **run_cell(url, workers, args.jobs,
                                                                                 args.concurrency, args.timeout)}
                    finally:
                        if database:
                            pgdb.drop(args.postgres_url, database)
                    exact = sum(row["shares"]) == args.jobs and row["states"] == {"done": args.jobs}
                    ok = ok and exact
                    rows.append(row)
                    print(f"{backend:10} workers={workers} run {repeat}: {row['jobs_per_s']:8.0f} jobs/s "
                          f"({args.jobs} in {row['seconds']:.2f} s; per worker {row['shares']}; "
                          f"{'each done once' if exact else 'MISMATCH ' + str(row['states'])})", flush=True)

    print(f"\n{args.jobs} no-op review jobs, {args.concurrency} at once per worker; median jobs/s over "
          f"{args.repeat} run(s), on {os.cpu_count()} CPUs")
    print(f"{'backend':10} {'workers':>7} {'jobs/s':>8} {'min..max':>15}")
    for backend in args.backends.split(","):
        for workers in (int(n) for n in args.workers.split(",")):
            rates = [r["jobs_per_s"] for r in rows if r["backend"] == backend and r["workers"] == workers]
            print(f"{backend:10} {workers:>7} {statistics.median(rates):>8.0f} {min(rates):>7.0f}..{max(rates):<7.0f}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
