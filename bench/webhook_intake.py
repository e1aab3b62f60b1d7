#!/usr/bin/env python3
"""Webhook-intake benchmark: prmedic side by side with the perf anchors (Probot, gidgethub).

Runs `../shared/perf-anchor/run_anchor.sh` (wrk, a real signed `pull_request` payload, unique
delivery ids, 32 and 64 connections on loopback, server pinned to one core) with prmedic
spawned as `prmedic serve --no-worker` on a fresh SQLite store per cell. Afterwards it
counts the jobs committed in each cell's store and compares them with the 202 answers wrk
saw: every acknowledged delivery must be in the store.

PostgreSQL variants, in the same run: `prmedic-pg` (one replica) and `prmedic-pg3` (three replicas
on one port, bench/serve_replicas.py), each cell on a fresh database of the local server
(`--postgres-url`), counted the same way and dropped afterwards. The replicas share the pinned
core(s) (`--server-cpu` after --); the PostgreSQL server itself is not pinned, and the `srv cpu%`
column of `prmedic-pg3` counts only the launcher, not its replicas.

    python bench/webhook_intake.py                      # prmedic + all anchors, 32,64 conns
    python bench/webhook_intake.py --repeat 3           # medians over 3 interleaved runs
    python bench/webhook_intake.py --servers none       # prmedic alone
    python bench/webhook_intake.py --servers probot,prmedic-pg,prmedic-pg3   # SQLite, PostgreSQL, Probot
    python bench/webhook_intake.py -- --duration 5      # anything after -- goes to bench.py

Needs the shared folder beside the project (`../shared/perf-anchor`); installs wrk and the
anchors' dependencies through run_anchor.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pgdb

ROOT = Path(__file__).resolve().parent.parent
ANCHOR = ROOT.parent / "shared" / "perf-anchor"
SECRET = "bench-secret"
OPENED_WITH_INSTALLATION = 12  # index among the `pull_request` examples, the same for every server
POSTGRES_VARIANTS = {"prmedic-pg": 1, "prmedic-pg3": 3}  # name → replicas


def throwaway_key(workdir: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = workdir / "prmedic-bench-key.pem"
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="probot,gidgethub-mem,gidgethub-sqlite",
                        help="anchors and PostgreSQL variants (prmedic-pg, prmedic-pg3) to run beside prmedic "
                             "on SQLite (comma list, or 'none')")
    parser.add_argument("--postgres-url", default=pgdb.DEFAULT_ADMIN_URL,
                        help="a PostgreSQL server where the benchmark may create databases")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--connections", default="32,64")
    parser.add_argument("--workdir", default="/tmp/perf-bench")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("extra", nargs="*", help="more bench.py options, after --")
    args = parser.parse_args()

    if not (ANCHOR / "run_anchor.sh").exists():
        print(f"the perf anchor is not at {ANCHOR}; this benchmark needs ../shared beside the project",
              file=sys.stderr)
        return 2
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("prmedic-*.db*"):
        old.unlink()
    env = dict(
        os.environ,
        PRMEDIC_APP_ID="1",
        PRMEDIC_PRIVATE_KEY_PATH=str(throwaway_key(workdir)),
        PRMEDIC_WEBHOOK_SECRET=SECRET,
        PRMEDIC_LOG_LEVEL="WARNING",
        PRMEDIC_APP_SLUG="prmedic-bench",
    )
    if args.loop == "asyncio":
        env["PRMEDIC_NO_UVLOOP"] = "1"
    spawn = (f"env PRMEDIC_DATABASE_URL=sqlite:///{{workdir}}/prmedic-{{port}}.db "
             f"{sys.executable} -m app serve --no-worker --host {{host}} --port {{port}}")
    chosen = [name for name in args.servers.split(",") if name and name != "none"]
    anchors = ",".join(name for name in chosen if name not in POSTGRES_VARIANTS) or "none"
    run = uuid.uuid4().hex[:6]  # database names of this run: prmedic_bench_<run>_<port>
    spawns = ["--spawn", f"prmedic={spawn}"]
    for name in (name for name in chosen if name in POSTGRES_VARIANTS):
        spawns += ["--spawn", (f"{name}={sys.executable} {ROOT / 'bench' / 'serve_replicas.py'} "
                               f"--replicas {POSTGRES_VARIANTS[name]} --postgres-url {args.postgres_url} "
                               f"--database prmedic_bench_{run}_{{port}} --host {{host}} --port {{port}}")]
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        json_out = out.name
    command = [
        str(ANCHOR / "run_anchor.sh"), "--servers", anchors, *spawns,
        "--spawn-path", "/api/github/webhooks", "-c", args.connections, "--repeat", str(args.repeat),
        "--secret", SECRET, "--workdir", str(workdir), "--keep-files", "--json-out", json_out,
        # GitHub's first `opened` example has no installation: prmedic would ignore it, not commit a job.
        "--example-index", str(OPENED_WITH_INSTALLATION), *args.extra,
    ]
    print("+", " ".join(command), flush=True)
    status = subprocess.call(command, env=env, cwd=ROOT)
    results = json.loads(Path(json_out).read_text()) if Path(json_out).stat().st_size else {}
    print("\nprmedic cells: jobs committed in the cell's store vs deliveries acknowledged (202)")
    ports: dict[tuple[str, str], int] = {}
    for row in results.get("rows", []):
        if row.get("server") in ("prmedic", *POSTGRES_VARIANTS) and "url" in row:
            key = (row["server"], row["url"].split(":")[2].split("/")[0])
            ports[key] = ports.get(key, 0) + 1
    for row in results.get("rows", []):
        server = row.get("server")
        if server not in ("prmedic", *POSTGRES_VARIANTS) or "codes" not in row:
            continue
        port = row["url"].split(":")[2].split("/")[0]
        if ports[(server, port)] > 1:
            print(f"  {server} c={row['connections']} repeat {row['repeat']}: port {port} served two cells, "
                  "whose stores are one: not counted")
            continue
        jobs = committed(server, port, workdir, run, args.postgres_url)
        warm = (row.get("warmup") or {}).get("codes") or {}
        acked = int(row["codes"].get("202", 0)) + int(warm.get("202", 0)) + 1  # +1: the signature check
        print(f"  {server} c={row['connections']} repeat {row['repeat']}: {jobs} committed, {acked} acknowledged, "
              f"committed-acked {jobs - acked:+d} (in flight when wrk stopped: 0..{2 * row['connections']})")
    for server, port in ports:
        if server in POSTGRES_VARIANTS:
            pgdb.drop(args.postgres_url, f"prmedic_bench_{run}_{port}")
    return status


def committed(server: str, port: str, workdir: Path, run: str, postgres_url: str) -> int:
    """Jobs in the store of the cell that `server` ran on `port`."""
    if server in POSTGRES_VARIANTS:
        return pgdb.count_jobs(pgdb.database_url(postgres_url, f"prmedic_bench_{run}_{port}"))
    with sqlite3.connect(workdir / f"prmedic-{port}.db") as conn:
        return conn.execute("SELECT count(*) FROM jobs").fetchone()[0]


if __name__ == "__main__":
    raise SystemExit(main())
