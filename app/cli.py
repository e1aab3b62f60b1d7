"""`prmedic` command line: serve, worker, jobs, doctor, agents."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import errno
import os
import sys
from collections.abc import Mapping, Sequence

from dotenv import load_dotenv

from app import __version__
from app.logs import configure_logging
from app.settings import (
    S, ServerSettings, Settings, SettingsError, StoreSettings, app_settings_absent, load_settings,
)


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

    try:
        settings = _settings(args)
    except SettingsError:
        if not app_settings_absent():
            raise
        settings = _settings(args, ServerSettings)  # no App yet: first-run setup (app/setup)
    try:
        _run(serve(settings, with_worker=not args.no_worker))
    except OSError as exc:
        message = listen_error(exc, settings.host, settings.port)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from app.setup.register import register

    settings = _settings(args, ServerSettings)
    if not app_settings_absent():
        print("prmedic register: the App's settings are set already (PRMEDIC_APP_ID, PRMEDIC_PRIVATE_KEY[_PATH] or "
              "PRMEDIC_WEBHOOK_SECRET, in the environment or .env): remove them to register a new App",
              file=sys.stderr)
        return 2
    status: list[int] = []

    async def main() -> None:
        status.append(await register(settings, org=args.org, public_url=args.url, name=args.name,
                                     port=args.callback_port, timeout=args.timeout))

    _run(main())
    return status[0]


def cmd_worker(args: argparse.Namespace) -> int:
    from app.runtime import work

    _run(work(_settings(args)))
    return 0


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _route(job) -> str:
    """A review's depth (`deep`), from its result or, for `/review`, its command's result; else `-`."""
    result = job.result or {}
    route = result.get("route") or (result.get("review") or {}).get("route") or {}
    return str(route.get("depth") or "-")


def format_jobs(jobs) -> str:
    header = (f"{'ID':>6}  {'KIND':<8} {'STATE':<11} {'TRIES':>5}  {'CREATED (UTC)':<19}  {'TARGET':<40}  "
              f"{'ROUTE':<8}  LAST ERROR")
    lines = [header]
    for job in jobs:
        target = f"{job.repo}#{job.pr_number}" if job.pr_number else f"{job.repo}@{(job.head_sha or '')[:7]}"
        error = (job.last_error or "").replace("\n", " ")
        lines.append(
            f"{job.id:>6}  {job.kind.value:<8} {job.state.value:<11} {job.attempts:>2}/{job.max_attempts:<2}  "
            f"{_when(job.created_at):<19}  {target[:40]:<40}  {_route(job):<8}  {error[:100]}"
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
    no_store = settings.store_missing
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


def cmd_stats(args: argparse.Namespace) -> int:
    """`prmedic stats`: jobs and their cost at list price, from the store's finished jobs."""
    import json
    import time

    from app.sessions.stats import format_stats, job_stats, parse_since
    from app.store import open_store

    settings = _settings(args, StoreSettings)
    try:
        since = time.time() - parse_since(args.since) if args.since else None
    except ValueError as exc:
        print(f"prmedic stats: {exc}", file=sys.stderr)
        return 2

    async def list_jobs():
        store = open_store(settings.database_url)
        await store.open()
        try:
            return await store.list_jobs(limit=1_000_000, repo=args.repo)
        finally:
            await store.close()

    no_store = settings.store_missing
    stats = job_stats([] if no_store else asyncio.run(list_jobs()), since=since, repo=args.repo)
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
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


def healthcheck_url(environ: Mapping[str, str], host: str | None = None, port: int | None = None) -> str:
    """The /healthz address of the server on this host, from PRMEDIC_HOST and PRMEDIC_PORT as `serve`
    reads them (or the options); a server listening on every address is asked on loopback."""
    fields = Settings.model_fields
    host = (host or environ.get("PRMEDIC_HOST") or fields["host"].default).strip()
    raw_port = str(port or environ.get("PRMEDIC_PORT") or fields["port"].default).strip()
    if not raw_port.isdigit() or not 1 <= int(raw_port) <= 65535:
        raise ValueError(f"PRMEDIC_PORT={raw_port!r} is not a TCP port")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{int(raw_port)}/healthz"


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """Exit 0 when the server answers /healthz with 200, else 1, never 2: Docker's HEALTHCHECK
    reserves it. The one line printed is what `docker inspect` shows of the last check."""
    import urllib.error
    import urllib.request

    try:
        url = healthcheck_url(os.environ, args.host, args.port)
    except ValueError as exc:
        print(f"unhealthy: {exc}")
        return 1
    # No proxy: an HTTP_PROXY in the container's environment must not carry a loopback request away.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=args.timeout) as response:
            status, body = response.status, response.read(300)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(300)
    except OSError as exc:  # refused, timed out, unknown host
        print(f"unhealthy: {url} cannot be reached ({getattr(exc, 'reason', None) or exc})")
        return 1
    print(f"{'healthy' if status == 200 else 'unhealthy'}: {url} answered {status} {body.decode(errors='replace')}")
    return 0 if status == 200 else 1


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

    stats = sub.add_parser("stats", help="jobs and their cost at list price (per job: median, p90; per repository)")
    stats.add_argument("--repo", help="owner/name")
    stats.add_argument("--since", default="30d", help="only jobs created in this period, e.g. 30d, 12h, 2w (default 30d)")
    stats.add_argument("--json", action="store_true", help="print JSON instead of text")
    stats.set_defaults(func=cmd_stats)

    doctor = sub.add_parser("doctor", help="check settings and reach GitHub and Anthropic")
    doctor.set_defaults(func=cmd_doctor)

    register = sub.add_parser("register", help="create prmedic's GitHub App on GitHub (the manifest flow, in a "
                              "browser) and write its settings to .env and its key to a file")
    register.add_argument("--org", help="create it in this organisation (default: your personal account)")
    register.add_argument("--url", help="the public URL `prmedic serve` will be reached at (webhooks go to "
                          "URL/api/github/webhooks); default: the relay channel PRMEDIC_WEBHOOK_PROXY_URL")
    register.add_argument("--name", help="the App's name on GitHub (default: the name in deploy/app.yml)")
    register.add_argument("--callback-port", type=int, default=0,
                          help="the port on 127.0.0.1 GitHub sends the browser back to (default: a free one)")
    register.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for GitHub (default 600)")
    register.set_defaults(func=cmd_register)

    healthcheck = sub.add_parser("healthcheck", help="exit 0 if this host's server answers /healthz with 200 "
                                 "(the container image's health check)")
    healthcheck.add_argument("--host", help="the server's listen address (PRMEDIC_HOST; 0.0.0.0 is asked on 127.0.0.1)")
    healthcheck.add_argument("--port", type=int, help="the server's port (PRMEDIC_PORT)")
    healthcheck.add_argument("--timeout", type=float, default=4.0, help="seconds to wait for the answer (default 4)")
    healthcheck.set_defaults(func=cmd_healthcheck)

    from app.agents.cli import add_agents_commands

    add_agents_commands(sub)

    from app.oneshot.cli import add_run_command

    add_run_command(sub)

    from app.action.cli import add_action_command

    add_action_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `.env` also carries variables prmedic does not read itself (ANTHROPIC_API_KEY for the
    # SDK): export them, without overriding the real environment. Not for `prmedic action`, whose
    # working directory may be a checkout of someone else's code.
    if not getattr(args, "no_dotenv", False):
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
