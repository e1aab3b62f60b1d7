"""`prmedic` command line: serve, worker, jobs, doctor, agents."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from collections.abc import Sequence

from dotenv import load_dotenv

from app import __version__
from app.logs import configure_logging
from app.settings import Settings, SettingsError, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    settings = load_settings(**overrides)
    configure_logging(settings.log_format, settings.log_level)
    return settings


def _run(coro) -> None:
    try:
        if os.environ.get("PRMEDIC_NO_UVLOOP"):
            raise ImportError
        import uvloop  # optional: `pip install prmedic[fast]`
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def cmd_serve(args: argparse.Namespace) -> int:
    from app.runtime import serve

    _run(serve(_settings(args), with_worker=not args.no_worker))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from app.runtime import work

    _run(work(_settings(args)))
    return 0


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def format_jobs(jobs) -> str:
    header = f"{'ID':>6}  {'KIND':<8} {'STATE':<11} {'TRIES':>5}  {'CREATED (UTC)':<19}  {'TARGET':<40}  LAST ERROR"
    lines = [header]
    for job in jobs:
        target = f"{job.repo}#{job.pr_number}" if job.pr_number else f"{job.repo}@{(job.head_sha or '')[:7]}"
        error = (job.last_error or "").replace("\n", " ")
        lines.append(
            f"{job.id:>6}  {job.kind.value:<8} {job.state.value:<11} {job.attempts:>2}/{job.max_attempts:<2}  "
            f"{_when(job.created_at):<19}  {target[:40]:<40}  {error[:100]}"
        )
    return "\n".join(lines)


def cmd_jobs(args: argparse.Namespace) -> int:
    from app.store import JobState, open_store

    settings = _settings(args)
    states = [JobState(s) for s in args.state] if args.state else None

    async def list_jobs():
        store = open_store(settings.database_url)
        await store.open()
        try:
            return await store.list_jobs(limit=args.limit, states=states, repo=args.repo)
        finally:
            await store.close()

    jobs = asyncio.run(list_jobs())
    if args.json:
        print("[" + ",".join(job.model_dump_json() for job in jobs) + "]")
    elif not jobs:
        print("no jobs")
    else:
        print(format_jobs(jobs))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from app.doctor import run_doctor

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"✗ settings\n{exc}")
        return 2
    configure_logging(settings.log_format, "WARNING")
    ok = asyncio.run(run_doctor(settings, print))
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prmedic", description="Reviews PRs and repairs failing CI with Claude agents.")
    parser.add_argument("--version", action="version", version=f"prmedic {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the webhook server (and, unless --no-worker, the worker)")
    serve.add_argument("--host", help="listen address (PRMEDIC_HOST)")
    serve.add_argument("--port", type=int, help="listen port (PRMEDIC_PORT)")
    serve.add_argument("--no-worker", action="store_true", help="only take in webhooks; run `prmedic worker` elsewhere")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run only the worker")
    worker.set_defaults(func=cmd_worker)

    jobs = sub.add_parser("jobs", help="list recent jobs with state, attempts and last error")
    jobs.add_argument("--limit", type=int, default=30)
    jobs.add_argument("--state", action="append", choices=[s for s in (
        "queued", "running", "done", "failed", "superseded", "cancelled", "skipped", "no_pipeline")])
    jobs.add_argument("--repo", help="owner/name")
    jobs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    jobs.set_defaults(func=cmd_jobs)

    doctor = sub.add_parser("doctor", help="check settings and reach GitHub and Anthropic")
    doctor.set_defaults(func=cmd_doctor)

    from app.agents.cli import add_agents_commands

    add_agents_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `.env` also carries variables prmedic does not read itself (ANTHROPIC_API_KEY for the
    # SDK): export them, without overriding the real environment.
    load_dotenv(".env", override=False)
    try:
        return args.func(args)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
