"""`prmedic` command line: serve, worker, jobs, doctor, agents."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import errno
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dotenv import load_dotenv

from app import __version__
from app.logs import configure_logging
from app.settings import S, Settings, SettingsError, StoreSettings, load_settings


def _settings(args: argparse.Namespace, settings_class: type[S] = Settings) -> S:  # type: ignore[assignment]
    overrides = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    settings = load_settings(settings_class, **overrides)
    configure_logging(settings.log_format, settings.log_level)
    return settings


def _event_loop_runner():
    """uvloop's runner when the `fast` extra is installed, else asyncio's, chosen without a trace."""
    if os.environ.get("PRMEDIC_NO_UVLOOP"):
        return asyncio.run
    try:
        import uvloop  # optional: `pip install prmedic[fast]`
    except ImportError:
        return asyncio.run
    return uvloop.run


def _run(coro) -> None:
    # Run outside the `except ImportError` block: otherwise every later traceback would carry
    # "During handling of the above exception (No module named 'uvloop')".
    _event_loop_runner()(coro)


_CANNOT_LISTEN = {errno.EADDRINUSE: "the address is already in use", errno.EADDRNOTAVAIL:
                  "the address does not belong to this machine", errno.EACCES: "permission denied"}


def listen_error(exc: OSError, host: str, port: int) -> str | None:
    """One line for a server socket that cannot be opened, or None if `exc` is something else."""
    if exc.errno not in _CANNOT_LISTEN or "bind" not in str(exc):
        return None
    return (f"prmedic serve: cannot listen on {host}:{port}: {_CANNOT_LISTEN[exc.errno]} "
            "(choose another with --port or PRMEDIC_PORT, or --host / PRMEDIC_HOST)")


def cmd_serve(args: argparse.Namespace) -> int:
    from app.runtime import serve

    settings = _settings(args)
    try:
        _run(serve(settings, with_worker=not args.no_worker))
    except OSError as exc:
        message = listen_error(exc, settings.host, settings.port)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2
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

    settings = _settings(args, StoreSettings)
    states = [JobState(s) for s in args.state] if args.state else None

    async def list_jobs():
        store = open_store(settings.database_url)
        await store.open()
        try:
            return await store.list_jobs(limit=args.limit, states=states, repo=args.repo)
        finally:
            await store.close()

    # Listing must not leave an empty database behind in whatever directory it was run from.
    no_store = not Path(settings.sqlite_path).exists()
    jobs = [] if no_store else asyncio.run(list_jobs())
    if args.json:
        print("[" + ",".join(job.model_dump_json() for job in jobs) + "]")
    elif no_store:
        print(f"no jobs: there is no store at {settings.sqlite_path} (PRMEDIC_DATABASE_URL)")
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
    # The doctor's own lines say what failed; the clients' retry warnings would only repeat it.
    configure_logging(settings.log_format, "ERROR")
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
    except BrokenPipeError:
        # `prmedic jobs | head`: the reader left; say nothing more (Python's own advice in `signal`).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
