"""`prmedic action`: one workflow step, one job (README, "GitHub Action").

The runner's environment (`inputs`) → the event's job, routed as the App routes a delivery
(`event`) → the engine of `prmedic run` runs it inline (`app.oneshot.engine`: the same pipelines,
custom tools and rules, a throw-away store), with the workflow's token as the installation and the
mount rule of `github` → the step's outputs and job summary (`outputs`).

Exit status: the engine's (0 done or nothing to do, 1 findings at or above `fail_on`, 3 the job
failed or did not deliver), 2 when the step is set up wrong (inputs, event file, a private
repository without the App inputs): all decided before any session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from pydantic import SecretStr

from app.action.event import PULL_REQUEST_EVENTS, Routed, parse_event, route_event
from app.action.github import ActionGitHub, AppMount, ConfigOverride, allow_mount
from app.action.inputs import ActionInputs, read_inputs
from app.action.outputs import Summary, append, output_lines, summary_markdown
from app.errors import describe
from app.oneshot.commands import command_payload
from app.oneshot.display import Display
from app.oneshot.engine import Parts, open_parts, run_job
from app.oneshot.result import EXIT_DONE, EXIT_FAILED, EXIT_USAGE, RunResult, UsageError
from app.oneshot.settings import RunSettings
from app.store import JobKind, NewJob

log = logging.getLogger("prmedic.action")

# How a comment's command ended, from its last reaction (🚀 delivered, 😕 not).
_REACTIONS = re.compile(r"/repos/[^/]+/[^/]+/(?:issues|pulls)/comments/(?P<id>\d+)/reactions")
# Commands that end without delivering, but not because anything went wrong: the step stays green.
NOT_FAILURES = ("refused", "disabled", "unknown", "answered", "not_available", "closed", "paused", "resumed",
                "stopped", "already_reviewed", "running")


EXIT_CANCELLED = 130
NO_ANTHROPIC_KEY = ("the `anthropic_api_key` input is empty: pass a secret holding an Anthropic API key. A workflow "
                    "run for a pull request from a fork gets no secrets: review forks with `pull_request_target`")


@contextlib.contextmanager
def _cancel_on_signals() -> Iterator[None]:
    """SIGINT or SIGTERM (how the runner cancels a step) cancels the run's task, so that the engine
    stops the agents' session rather than leaving it running (and billing)."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, task.cancel)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or not on this platform
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


@dataclass
class Ran:
    """What the step reports: the engine's result (None when no job ran) and what it was about."""

    routed: Routed
    result: RunResult | None = None
    reason: str | None = None
    tests: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def conclusion(self) -> str:
        return self.result.conclusion if self.result else "skipped"

    def outputs(self) -> dict[str, str]:
        if self.result is None:
            return {"conclusion": "skipped", "review_url": "", "fix_pr_url": "", "comment_url": "", "cost_usd": "",
                    "session_id": ""}
        return self.result.outputs


def action_settings(inputs: ActionInputs) -> RunSettings:
    """The engine's settings for this step: PRMEDIC_* variables the workflow sets (a store to keep
    with `actions/cache`, log level…), never a `.env` file of the workspace (a checkout's, perhaps
    the pull request's own), and GitHub as the runner names it, with the `github_token` input."""
    settings = RunSettings(_env_file=None)  # type: ignore[call-arg]
    return settings.model_copy(update={
        "github_token": SecretStr(inputs.token), "app_id": None, "private_key": None, "private_key_path": None,
        "app_slug": None, "github_api_url": inputs.api_url, "github_web_url": inputs.web_url})


def prepared_job(routed: NewJob, inputs: ActionInputs, event_name: str, user: str | None) -> NewJob:
    """The routed job, or for `mode: fix | describe` on a pull request the engine's command job
    (as `prmedic run fix|describe` makes it: the workflow asked, so no commenter's permission)."""
    if inputs.mode in ("fix", "describe") and event_name in PULL_REQUEST_EVENTS and routed.kind is not JobKind.command:
        pr = routed.payload["pull_request"]
        payload = command_payload(inputs.mode, "", repository=routed.payload["repository"],
                                  pr_author=pr.get("author"), user=user)
        return NewJob(kind=JobKind.command, repo=routed.repo, installation_id=routed.installation_id,
                      pr_number=routed.pr_number, head_sha=routed.head_sha, payload=payload)
    return routed


def final_reaction(writes: list[Any], comment_id: int | None) -> str | None:
    """The last reaction the run put on the command's comment (pure, over the engine's write log)."""
    found = None
    for write in writes:
        match = _REACTIONS.fullmatch(write.path)
        if match and comment_id is not None and int(match["id"]) == int(comment_id) and isinstance(write.body, dict):
            found = write.body.get("content")
    return found


def comment_command_result(result: RunResult, parts: Parts, job: NewJob) -> RunResult:
    """A command from a comment ends as its comment shows (the engine reads `ok`, which only the
    commands `prmedic run` makes carry): 🚀 is success; a refusal, `/help` or nothing to do is
    neutral and keeps the step green; anything else the engine's verdict."""
    if result.error or result.conclusion == "cancelled" or job.payload.get("source") not in (
            "issue_comment", "pull_request_review_comment"):
        return result
    body = result.result
    review = body.get("review") if isinstance(body.get("review"), dict) else {}
    result.review_url = result.review_url or review.get("review_url")
    reaction = final_reaction(parts.writes.writes, (job.payload.get("comment") or {}).get("id"))
    if reaction == "rocket":
        result.conclusion, result.exit_code = "success", EXIT_DONE
    elif body.get("result") in NOT_FAILURES or body.get("skipped"):
        result.conclusion, result.exit_code = "neutral", EXIT_DONE
    return result


def ci_fix_result(result: RunResult) -> RunResult:
    """A fix job made from a failed check or workflow run (the engine knows reviews and commands):
    success when a fix was delivered, skipped when there was nothing to do, else neutral and the
    engine's exit status for a job that did not deliver."""
    if result.kind != JobKind.fix.value or result.error or result.conclusion == "cancelled":
        return result
    body = result.result
    if body.get("fix_url"):
        result.conclusion, result.exit_code = "success", EXIT_DONE
    elif body.get("skipped"):
        result.conclusion, result.exit_code = "skipped", EXIT_DONE
    else:
        result.conclusion, result.exit_code = "neutral", EXIT_FAILED
    return result


async def session_facts(parts: Parts, result: RunResult) -> None:
    """Cost and session from the store when the job's result does not carry them (a `/review`)."""
    if result.job_id is None or (result.cost_usd is not None and result.session_id):
        return
    sessions = await parts.store.list_sessions(result.job_id)
    if not sessions:
        return
    last = sessions[-1]
    result.session_id = result.session_id or last.session_id
    cents = [s.list_cost_cents for s in sessions if s.list_cost_cents is not None]
    if result.cost_usd is None and cents:
        result.cost_usd = round(sum(cents) / 100, 2)


def _mask(token: str | None, out: TextIO) -> None:
    if token:
        print(f"::add-mask::{token}", file=out, flush=True)


async def run_routed(inputs: ActionInputs, routed: Routed, event: Mapping[str, Any], display: Display,
                     out: TextIO, *, actor: str | None = None, client: Any = None) -> Ran:
    """Run the routed job through the engine, with the Action's GitHub in place of the token's."""
    assert routed.job is not None
    ran = Ran(routed)
    config_text = inputs.config_path.read_text(encoding="utf-8") if inputs.config_path else None
    override = ConfigOverride(config_text, inputs.budget_usd, inputs.fail_on)
    async with open_parts(action_settings(inputs), dry_run=False, display=display, api_url=inputs.api_url,
                          web_url=inputs.web_url, client=client) as parts:
        github = ActionGitHub(inputs.token, override=override, base_url=parts.settings.github_api_url,
                              writes=parts.writes, max_retry_wait=parts.settings.github_max_retry_wait_seconds,
                              metrics=parts.metrics,
                              mount=AppMount(inputs.app_id, inputs.app_private_key or "", base_url=inputs.api_url)
                              if inputs.has_app else None)
        parts.github = github
        assert parts.sessions is not None
        parts.sessions.github_app = github
        try:
            _mask(await allow_mount(github, event.get("repository") or routed.job.payload["repository"]), out)
            job = prepared_job(routed.job, inputs, inputs.event_name, actor or (event.get("sender") or {}).get("login"))
            display.start(f"prmedic {job.kind.value} {job.repo}" + (f"#{job.pr_number}" if job.pr_number else ""))
            result = ci_fix_result(comment_command_result(await run_job(parts, job), parts, job))
            await session_facts(parts, result)
            ran.result = result
            ran.tests = list((parts.inputs.last("publish_review") or {}).get("tests_run") or [])
        finally:
            await github.close()
    return ran


def summarize(ran: Ran) -> Summary:
    result = ran.result
    body = result.result if result else {}
    job = ran.routed.job
    name = None
    if job is not None:
        name = f"/{job.payload.get('command')}" if job.kind is JobKind.command else job.kind.value
    findings = body.get("findings") or {}
    if not findings and isinstance(body.get("review"), dict):
        findings = body["review"].get("findings") or {}
    reason = ran.reason or ran.routed.reason or (result.error if result else None) or body.get("skipped")
    return Summary(
        conclusion=ran.conclusion, event=ran.routed.label, job=name, reason=reason, findings=findings,
        tests=ran.tests, cost_usd=result.cost_usd if result else None,
        duration_seconds=time.monotonic() - ran.started,
        links={"the review": result.review_url if result else None,
               "the fix": (result.fix_pr_url or result.fix_url) if result else None,
               "the answer": result.comment_url if result else None,
               "the description": body.get("description_url")})


def report(ran: Ran, inputs: ActionInputs) -> None:
    append(inputs.output_path, output_lines(ran.outputs()))
    append(inputs.summary_path, summary_markdown(summarize(ran)))


async def run_action(env: Mapping[str, str], *, out: TextIO, client: Any = None) -> int:
    """The whole step; the exit status. `client`: an Anthropic client (tests), else from the environment."""
    try:
        inputs = read_inputs(env)
    except UsageError as exc:
        print(f"::error title=prmedic::{_one_line(exc)}", file=out, flush=True)
        print(exc, file=out)
        return EXIT_USAGE
    started = time.monotonic()
    display = Display(out)
    try:
        raw = inputs.event_path.read_bytes()
    except OSError as exc:
        return _usage(inputs, started, f"cannot read the event file {inputs.event_path}: {exc.strerror}", out)
    try:
        data = parse_event(raw)
        event = json.loads(raw)
        routed = await route_event(inputs.event_name, data, mention=inputs.mention, mode=inputs.mode,
                                   app_id=inputs.app_id)
    except UsageError as exc:
        return _usage(inputs, started, str(exc), out)
    if routed.job is None:
        display.step(f"nothing to do for {routed.label}: {routed.reason}")
        report(Ran(routed, started=started), inputs)
        return EXIT_DONE
    if client is None and not (env.get("ANTHROPIC_API_KEY") or env.get("ANTHROPIC_AUTH_TOKEN")):
        return _usage(inputs, started, NO_ANTHROPIC_KEY, out, routed)
    try:
        with _cancel_on_signals():
            ran = await run_routed(inputs, routed, event, display, out, actor=env.get("GITHUB_ACTOR"),
                                       client=client)
    except UsageError as exc:
        return _usage(inputs, started, str(exc), out, routed)
    except asyncio.CancelledError:
        # The run was cancelled (the workflow's "Cancel", a newer push under `concurrency`): the
        # engine has stopped the session and closed the check run; the outputs say so.
        display.step("cancelled")
        ran = Ran(routed, RunResult(conclusion="cancelled", exit_code=EXIT_FAILED), reason="The run was cancelled.",
                  started=started)
        report(ran, inputs)
        return EXIT_CANCELLED
    ran.started = started
    assert ran.result is not None
    if ran.result.error:
        print(f"::error title=prmedic::{_one_line(ran.result.error)}", file=out, flush=True)
    display.step(f"{ran.conclusion} (exit status {ran.result.exit_code})")
    report(ran, inputs)
    return ran.result.exit_code


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:500]


def _usage(inputs: ActionInputs, started: float, message: str, out: TextIO, routed: Routed | None = None) -> int:
    """A step set up wrong: said as an error annotation, and in the outputs (`failure`) and summary."""
    print(f"::error title=prmedic::{_one_line(message)}", file=out, flush=True)
    ran = Ran(routed or Routed(None, label=f"`{inputs.event_name}` on {inputs.repository}"), reason=message,
              started=started)
    ran.result = RunResult(conclusion="failure", exit_code=EXIT_USAGE, error=message)
    report(ran, inputs)
    return EXIT_USAGE


def main(env: Mapping[str, str], out: TextIO) -> int:
    try:
        return asyncio.run(run_action(env, out=out))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a step's log should end with one clear line
        print(f"::error title=prmedic::{_one_line(describe(exc))}", file=out, flush=True)
        raise
