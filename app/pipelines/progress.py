"""The agents' progress (`report_progress`), throttled on its way to GitHub: the check run
(`checks.ProgressReporter`), a command's answer comment (`commands.feedback.CommandAnswer`), or
both (`Both`)."""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("prmedic.pipeline")

TITLE_MAX = 200
SUMMARY_MAX = 60_000


def progress_output(message: str, done: list[str], todo: list[str]) -> dict[str, str]:
    """A report as a check run's output: the message's first line as title, a checklist as summary."""
    lines = [message.strip(), ""]
    if done:
        lines += ["**Done**", *(f"- [x] {item}" for item in done), ""]
    if todo:
        lines += ["**To do**", *(f"- [ ] {item}" for item in todo), ""]
    title = message.strip().splitlines()[0] if message.strip() else "Working"
    if len(title) > TITLE_MAX:
        title = title[: TITLE_MAX - 1] + "…"
    return {"title": title, "summary": "\n".join(lines).strip()[:SUMMARY_MAX]}


class ThrottledProgress:
    """Writes the latest report at most once every `min_interval` seconds (`write`, per destination).

    Reports that arrive within the interval replace each other and are written when it is over, or
    by `flush()` when the session ends."""

    def __init__(self, *, min_interval: float = 10.0, sent_at: float | None = None, flush_on_close: bool = True,
                 where: str = "the pull request") -> None:
        """`sent_at`: when the destination was last written (its creation counts), so a report right
        after it waits for the interval. `flush_on_close=False` drops a report still waiting when
        the session ends: for callers that write their final state right after."""
        self.min_interval = min_interval
        self.updates_sent = 0
        self.where = where
        self._pending: dict[str, str] | None = None
        self._last_sent = float("-inf") if sent_at is None else sent_at
        self.flush_on_close = flush_on_close
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def write(self, output: dict[str, str]) -> None:
        raise NotImplementedError

    async def report(self, message: str, done: list[str] | None = None, todo: list[str] | None = None) -> str:
        self._pending = progress_output(message, list(done or ()), list(todo or ()))
        wait = self._last_sent + self.min_interval - time.monotonic()
        if wait <= 0 and not self._lock.locked():
            await self._send()
            return f"Progress shown on {self.where}."
        if self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._send_later(max(wait, 0.0)))
        return f"Progress noted; {self.where} shows it within {max(wait, 0.0):.0f} s."

    async def _send_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            await self._send()
        except Exception as exc:  # noqa: BLE001 - progress is best effort
            log.warning("progress update on %s failed: %s", self.where, exc)

    async def _send(self) -> None:
        async with self._lock:
            output, self._pending = self._pending, None
            if output is None:
                return
            self._last_sent = time.monotonic()
            await self.write(output)
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
            log.warning("final progress update on %s failed: %s", self.where, exc)


class Both:
    """One report, two destinations (a command's check run and its answer comment)."""

    def __init__(self, first: ThrottledProgress, second: ThrottledProgress) -> None:
        self.first, self.second = first, second

    async def report(self, message: str, done: list[str] | None = None, todo: list[str] | None = None) -> str:
        answer = await self.first.report(message, done, todo)
        await self.second.report(message, done, todo)
        return answer.replace(self.first.where, f"{self.first.where} and {self.second.where}")

    async def aclose(self) -> None:
        await self.first.aclose()
        await self.second.aclose()
