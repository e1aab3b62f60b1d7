"""Markdown that survives what it quotes."""

from __future__ import annotations

import re


def fence_ticks(text: str) -> str:
    """A backtick fence longer than any run of backticks inside `text`."""
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=2)
    return "`" * max(3, longest + 1)


def fence(text: str, lang: str = "") -> str:
    """`text` in a code block that nothing inside it can close."""
    ticks = fence_ticks(text)
    return f"{ticks}{lang}\n{text.rstrip(chr(10))}\n{ticks}"
