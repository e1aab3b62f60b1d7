"""N `prmedic serve --no-worker` replicas on one port and one fresh PostgreSQL database (benchmark only).

    python bench/serve_replicas.py --replicas 3 --database prmedic_bench_4001 --host 127.0.0.1 --port 4001

Creates the database empty (dropping one of that name), then starts the replicas. With one replica this
process becomes it (exec), so the benchmark measures the server's own CPU. With several, each replica
listens on the same port with SO_REUSEPORT and the kernel spreads connections over them, as a load
balancer in front of replicas would; this process waits and passes SIGTERM on. The database is left
for the caller to count and drop (bench/webhook_intake.py does).

prmedic itself never sets SO_REUSEPORT: the replicas here set it by wrapping aiohttp's TCPSite before
`prmedic serve` starts (`--child`), which is why this is a benchmark tool and not a deployment.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pgdb


def run_child(argv: list[str]) -> int:
    """`prmedic serve` whose listening socket is shared with the other replicas (SO_REUSEPORT)."""
    import functools

    from aiohttp import web

    web.TCPSite = functools.partial(web.TCPSite, reuse_port=True)
    from app.cli import main

    return main(argv)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--database", required=True, help="name of the database to create on the server")
    parser.add_argument("--postgres-url", default=pgdb.DEFAULT_ADMIN_URL,
                        help="a URL of the server that may create databases (PRMEDIC_BENCH_POSTGRES_URL)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    serve = ["serve", "--no-worker", "--host", args.host, "--port", str(args.port)]
    if args.child:
        return run_child(serve)

    env = dict(os.environ, PRMEDIC_DATABASE_URL=pgdb.create(args.postgres_url, args.database))
    if args.replicas == 1:
        os.execve(sys.executable, [sys.executable, "-m", "app", *serve], env)
    children = [subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--child"], env=env)
                for _ in range(args.replicas)]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return max(child.wait() for child in children)


if __name__ == "__main__":
    raise SystemExit(main())
