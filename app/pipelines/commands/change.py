"""Placeholder while this command is being built (replaced in this session)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.pipelines.commands import texts

if TYPE_CHECKING:
    from app.pipelines.commands.pipeline import Command


async def _not_yet(command: Command) -> tuple[bool, dict[str, Any]]:
    await command.feedback.answer(texts.not_available(command.name))
    return False, {"result": "not_available"}


HANDLERS = {"fix": _not_yet, "test": _not_yet}
