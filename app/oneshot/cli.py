"""`prmedic run ACTION PR [WORDS…] [--dry-run]`: one job now, on this machine, without a server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import TYPE_CHECKING

from app.oneshot.reference import ACTIONS, RunRequest, endpoints, parse_request
from app.oneshot.result import EXIT_FAILED, EXIT_USAGE, RunResult, UsageError

if TYPE_CHECKING:
    import anthropic

    from app.oneshot.display import Display
    from app.oneshot.settings import RunSettings

log = logging.getLogger("prmedic.oneshot")

WHAT = {"review": "reviewing", "fix": "fixing", "describe": "describing", "ask": "answering", "test": "testing"}

DESCRIPTION = """\
Run one job now, inline, with the same pipelines, custom tools and safety rules as the server:
review a pull request, fix it (`fix` repairs its failing checks, `fix WORDS…` makes the change the
words ask for), describe it, ask about it, or write tests for it. No server, no queue: a throw-away
store (or PRMEDIC_DATABASE_URL). GitHub: GITHUB_TOKEN (or GH_TOKEN), or the App's settings
(PRMEDIC_APP_ID and its private key; needed for a private repository). The agents need
ANTHROPIC_API_KEY.

exit status: 0 done, 1 findings at or above review.fail_on, 2 usage or configuration error,
3 the job failed."""


def add_run_command(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="review, fix, describe, ask about or test one pull request now (no server)",
                         description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("action", choices=ACTIONS)
    run.add_argument("pull_request", metavar="PR", help="OWNER/REPO#N or the pull request's URL")
    run.add_argument("words", nargs="*", metavar="WORDS",
                     help="ask: the question; fix: what to change; test: what to test")
    run.add_argument("--dry-run", action="store_true",
                     help="post nothing on GitHub: print the review, answer, description or fix it would post")
    run.set_defaults(func=cmd_run)


async def run_once(request: RunRequest, settings: RunSettings, *, dry_run: bool, display: Display,
                   client: anthropic.AsyncAnthropic | None = None) -> tuple[RunResult, str]:
    """Run `request` to its end; (its result, the text to print after it)."""
    from app.oneshot.engine import open_parts, prepare_job, run_job
    from app.oneshot.report import render_posted, render_result

    api_url, web_url = endpoints(request.pr, settings.github_api_url, settings.github_web_url)
    async with display:
        display.start(f"prmedic run {request.action} {request.pr}" + (" (dry run: nothing is posted)" if dry_run
                                                                         else ""))
        async with open_parts(settings, dry_run=dry_run, display=display, api_url=api_url, web_url=web_url,
                              client=client) as parts:
            display.step(f"reading {request.pr} from {api_url}")
            job = await prepare_job(parts, request)
            display.step(f"{WHAT[request.action]} {request.pr} at {str(job.head_sha)[:7]} "
                         f"({'a token' if parts.credential == 'token' else 'the App'})")
            result = await run_job(parts, job)
            writes, inputs = list(parts.writes.writes), parts.inputs
    text = render_result(request.action, str(request.pr), result, dry_run=dry_run)
    return result, f"{text}\n\n{render_posted(writes, inputs, dry_run=dry_run)}"


def cmd_run(args: argparse.Namespace) -> int:
    # Imported here: `prmedic --help` and the other commands do not load the agents' machinery.
    from app.errors import describe
    from app.logs import configure_logging, redact
    from app.oneshot.display import make_display
    from app.oneshot.settings import load_run_settings, require_anthropic

    try:
        request = parse_request(args.action, args.pull_request, args.words)
        settings = load_run_settings()
        configure_logging(settings.log_format, settings.log_level)
        _ = settings.auth  # no credentials at all: say so before anything starts
        require_anthropic()
    except UsageError as exc:
        print(f"prmedic run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result, text = asyncio.run(run_once(request, settings, dry_run=args.dry_run, display=make_display()))
    except UsageError as exc:
        print(f"prmedic run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise KeyboardInterrupt from None
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback (PRMEDIC_LOG_LEVEL=DEBUG shows it)
        log.debug("prmedic run failed", exc_info=True)
        print(f"prmedic run: {describe(exc)}", file=sys.stderr)
        return EXIT_FAILED
    print(redact(text), flush=True)
    return result.exit_code
