"""What a one-shot run shows while it works, on stdout (logs go to stderr).

Not a terminal (CI logs, a pipe): one plain line per thing worth reading, with the time since the
start — the steps, what `report_progress` said, each tool call, refusals, notes. A terminal: the
same lines, and under them one status line redrawn in place (a spinner, the time, the latest
step). Standard library only: a status line needs no more than `\\r` and one ANSI "erase line".
Everything shown is redacted first.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from app.logs import redact

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
ERASE_LINE = "\r\x1b[2K"
REACTIONS = {"eyes": "started", "rocket": "done", "confused": "did not succeed"}
SHORT = 100  # characters of a tool's input shown on its line


def _short(text: object, limit: int = SHORT) -> str:
    one = " ".join(str(text).split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:  # type: ignore[union-attr]
        text = getattr(block, "text", None) if not isinstance(block, dict) else block.get("text")
        if text:
            parts.append(text)
    return " ".join(parts)


def custom_tool_line(name: str, args: dict[str, Any]) -> str:
    """One line for a custom tool call (pure): what the agents did through prmedic."""
    if name == "report_progress":
        done, todo = args.get("done") or [], args.get("todo") or []
        counts = f" ({len(done)} done, {len(todo)} to do)" if done or todo else ""
        return f"progress: {_short(args.get('message') or '')}{counts}"
    if name == "publish_review":
        comments = args.get("comments") or []
        return f"publish_review: {len(comments)} comment(s), {args.get('event') or 'COMMENT'}"
    if name == "propose_fix":
        return f"propose_fix: {_short(args.get('title') or '')}"
    if name in ("reply", "write_description"):
        return f"{name}: {len(str(args.get('body') or ''))} characters"
    return name


def event_line(ev: Any) -> str | None:
    """The line a session event is worth, or None (pure)."""
    kind = getattr(ev, "type", "")
    args = getattr(ev, "input", None) or {}
    if kind == "agent.custom_tool_use":
        return custom_tool_line(ev.name, args)
    if kind == "agent.tool_use":
        detail = next((args[key] for key in ("command", "file_path", "path", "pattern", "query", "url")
                       if args.get(key)), "")
        return f"· {ev.name}" + (f": {_short(detail)}" if detail else "")
    if kind == "user.custom_tool_result" and getattr(ev, "is_error", False):
        return f"  refused: {_short(_text_of(getattr(ev, 'content', None)), 200)}"
    if kind == "session.error":
        error = getattr(ev, "error", None)
        return f"session error: {_short(getattr(error, 'message', None) or error or 'unknown', 200)}"
    return None


def elapsed(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


class Display:
    """Plain lines: for logs and pipes."""

    def __init__(self, out: TextIO | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out or sys.stdout
        self.clock = clock
        self.started = clock()
        self.title = ""
        self.status = "starting"
        self.answer_text: str | None = None  # a command's answer as it stands

    async def __aenter__(self) -> Display:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def _write(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def line(self, text: str) -> None:
        self._write(f"[{elapsed(self.clock() - self.started)}] {redact(text)}")

    def start(self, title: str) -> None:
        self.title = title
        self.line(title)

    def step(self, text: str) -> None:
        self.status = text
        self.line(text)

    def note(self, text: str) -> None:
        self.line(f"note: {text}")

    def event(self, session_id: str, ev: Any) -> None:
        """The session runtime's event hook (`SessionRuntime.on_event`)."""
        text = event_line(ev)
        if text is not None:
            self.status = text.strip()
            self.line(text)

    def reaction(self, content: str) -> None:
        """A command's reaction: there is no comment to put it on, so it is a line here."""
        if content in REACTIONS:
            self.step(f"command {REACTIONS[content]}")

    def answer(self, body: str) -> None:
        self.answer_text = body

    def block(self, text: str) -> None:
        """Text shown as it is, after the work (the result, what a dry run would have posted)."""
        self._write(redact(text))


class LiveDisplay(Display):
    """A terminal: the plain lines, and a status line under them redrawn in place."""

    def __init__(self, out: TextIO | None = None, *, interval: float = 0.1, **kw: Any) -> None:
        super().__init__(out, **kw)
        self.interval = interval
        self._frame = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveDisplay:
        self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.out.write(ERASE_LINE)
        self.out.flush()

    async def _tick(self) -> None:
        while True:
            self._frame += 1
            self._redraw()
            await asyncio.sleep(self.interval)

    def status_line(self) -> str:
        width = shutil.get_terminal_size((100, 20)).columns
        text = (f"{SPINNER[self._frame % len(SPINNER)]} {elapsed(self.clock() - self.started)} "
                f"{self.title} · {redact(self.status)}")
        return text if len(text) < width else text[: max(width - 2, 10)] + "…"

    def _redraw(self) -> None:
        self.out.write(ERASE_LINE + self.status_line())
        self.out.flush()

    def _write(self, text: str) -> None:
        self.out.write(ERASE_LINE + text + "\n")
        if self._task is not None:
            self.out.write(self.status_line())
        self.out.flush()


def make_display(out: TextIO | None = None) -> Display:
    """A live status line on a terminal, plain lines anywhere else."""
    out = out or sys.stdout
    return LiveDisplay(out) if out.isatty() else Display(out)
