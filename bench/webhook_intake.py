#!/usr/bin/env python3
"""Webhook-intake benchmark: prmedic side by side with the perf anchors (Probot, gidgethub).

Runs `../shared/perf-anchor/run_anchor.sh` (wrk, a real signed `pull_request` payload, unique
delivery ids, 32 and 64 connections on loopback, server pinned to one core) with prmedic
spawned as `prmedic serve --no-worker` on a fresh SQLite store per cell. Afterwards it
counts the jobs committed in each cell's store and compares them with the 202 answers wrk
saw: every acknowledged delivery must be in the store.

    python bench/webhook_intake.py                      # prmedic + all anchors, 32,64 conns
    python bench/webhook_intake.py --repeat 3           # medians over 3 interleaved runs
    python bench/webhook_intake.py --servers none       # prmedic alone
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANCHOR = ROOT.parent / "shared" / "perf-anchor"
SECRET = "bench-secret"
OPENED_WITH_INSTALLATION = 12  # index among the `pull_request` examples, the same for every server


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
                        help="anchors to run beside prmedic (comma list, or 'none')")
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
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        json_out = out.name
    command = [
        str(ANCHOR / "run_anchor.sh"), "--servers", args.servers, "--spawn", f"prmedic={spawn}",
        "--spawn-path", "/api/github/webhooks", "-c", args.connections, "--repeat", str(args.repeat),
        "--secret", SECRET, "--workdir", str(workdir), "--keep-files", "--json-out", json_out,
        # GitHub's first `opened` example has no installation: prmedic would ignore it, not commit a job.
        "--example-index", str(OPENED_WITH_INSTALLATION), *args.extra,
    ]
    print("+", " ".join(command), flush=True)
    status = subprocess.call(command, env=env, cwd=ROOT)
    results = json.loads(Path(json_out).read_text()) if Path(json_out).stat().st_size else {}
    print("\nprmedic cells: jobs committed in the cell's store vs deliveries acknowledged (202)")
    for row in results.get("rows", []):
        if row.get("server") != "prmedic":
            continue
        port = row["url"].split(":")[2].split("/")[0]
        db = workdir / f"prmedic-{port}.db"
        with sqlite3.connect(db) as conn:
            jobs = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
        warm = (row.get("warmup") or {}).get("codes") or {}
        acked = int(row["codes"].get("202", 0)) + int(warm.get("202", 0)) + 1  # +1: the signature check
        print(f"  c={row['connections']} repeat {row['repeat']}: {jobs} committed, {acked} acknowledged, "
              f"committed-acked {jobs - acked:+d} (in flight when wrk stopped: 0..{2 * row['connections']})")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
