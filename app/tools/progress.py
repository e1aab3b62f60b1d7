"""`report_progress`: the agent's progress, shown on the job's check run (throttled, coalescing).

The pipeline creates the check run (`start_check_run`) and a `ProgressReporter` for it; the
tool handler hands each report to the reporter, which PATCHes the check run at most once every
`min_interval` seconds. Reports that arrive in between replace each other (only the latest
counts) and are sent when the interval is over, or by `flush()` when the session ends.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from app.tools.registry import ToolContext
from app.tools.schemas import ReportProgressInput

log = logging.getLogger("prmedic.tools.progress")

TITLE_MAX = 200
SUMMARY_MAX = 60_000


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def start_check_run(gh: Any, repo: str, head_sha: str, name: str, *, title: str = "Starting",
                          summary: str = "prmedic is starting a session.", details_url: str | None = None,
                          external_id: str | None = None) -> int:
    """Create an in-progress check run on `head_sha`; return its id."""
    body: dict[str, Any] = {"name": name, "head_sha": head_sha, "status": "in_progress", "started_at": _now_iso(),
                            "output": {"title": title, "summary": summary}}
    if details_url:
        body["details_url"] = details_url
    if external_id:
        body["external_id"] = external_id
    answer = await gh.post(f"/repos/{repo}/check-runs", data=body)
    return int(answer["id"])


async def complete_check_run(gh: Any, repo: str, check_run_id: int, conclusion: str, title: str,
                             summary: str) -> None:
    """Complete the check run (`conclusion`: success, failure, neutral, cancelled, skipped, …)."""
    await gh.patch(f"/repos/{repo}/check-runs/{check_run_id}", data={
        "status": "completed", "conclusion": conclusion, "completed_at": _now_iso(),
        "output": {"title": title[:TITLE_MAX], "summary": summary[:SUMMARY_MAX] or title[:TITLE_MAX]},
    })


def progress_output(message: str, done: list[str], todo: list[str]) -> dict[str, str]:
    lines = [message.strip(), ""]
    if done:
        lines += ["**Done**", *(f"- [x] {item}" for item in done), ""]
    if todo:
        lines += ["**To do**", *(f"- [ ] {item}" for item in todo), ""]
    title = message.strip().splitlines()[0] if message.strip() else "Working"
    if len(title) > TITLE_MAX:
        title = title[: TITLE_MAX - 1] + "…"
    return {"title": title, "summary": "\n".join(lines).strip()[:SUMMARY_MAX]}


class ProgressReporter:
    """Updates one check run, at most once every `min_interval` seconds (latest report wins)."""

    def __init__(self, github: Callable[[], Awaitable[Any]], repo: str, check_run_id: int, *,
                 min_interval: float = 10.0, sent_at: float | None = None, flush_on_close: bool = True) -> None:
        """`sent_at`: when the check run's output was last written (its creation counts), so a report
        right after it waits for the interval. `flush_on_close=False` drops a report still waiting
        when the session ends: for callers that complete the check run right after."""
        self.github = github
        self.repo = repo
        self.check_run_id = check_run_id
        self.min_interval = min_interval
        self.updates_sent = 0
        self._pending: dict[str, str] | None = None
        self._last_sent = float("-inf") if sent_at is None else sent_at
        self.flush_on_close = flush_on_close
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def report(self, message: str, done: list[str] | None = None, todo: list[str] | None = None) -> str:
        self._pending = progress_output(message, list(done or ()), list(todo or ()))
        wait = self._last_sent + self.min_interval - time.monotonic()
        if wait <= 0 and not self._lock.locked():
            await self._send()
            return "Progress shown on the check run."
        if self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._send_later(max(wait, 0.0)))
        return f"Progress noted; the check run shows it within {max(wait, 0.0):.0f} s."

    async def _send_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self._send()
        except Exception as exc:  # noqa: BLE001 - progress is best effort
            log.warning("check run %s: progress update failed: %s", self.check_run_id, exc)

    async def _send(self) -> None:
        async with self._lock:
            output, self._pending = self._pending, None
            if output is None:
                return
            self._last_sent = time.monotonic()
            gh = await self.github()
            await gh.patch(f"/repos/{self.repo}/check-runs/{self.check_run_id}",
                           data={"status": "in_progress", "output": output})
            self.updates_sent += 1

    async def flush(self) -> None:
        """Send a coalesced report now (when the session ends)."""
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
            try:
                await self._timer
            except asyncio.CancelledError:
                pass
        self._timer = None
        if self._pending is not None:
            await self._send()

    async def aclose(self) -> None:
        if not self.flush_on_close:
            self._pending = None
        try:
            await self.flush()
        except Exception as exc:  # noqa: BLE001 - progress is best effort
            log.warning("check run %s: final progress update failed: %s", self.check_run_id, exc)


async def report_progress(ctx: ToolContext, args: ReportProgressInput) -> str:
    reporter: ProgressReporter | None = ctx.progress
    if reporter is None:
        return "Progress noted (this job has no check run to show it on)."
    return await reporter.report(args.message, args.done, args.todo)
