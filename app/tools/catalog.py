"""Running the custom-tool contract (`schemas.CUSTOM_TOOLS`: name → input model, description, handler).

Agent definitions (`custom_tools:` in `agents/*.md`) may name only tools of this table, and every
registry built by `default_registry()` answers all of them, so an agent is never offered a tool
the app cannot run. A tool whose handler needs what only one kind of job provides (`needs`: the
`ToolContext` attribute its pipeline sets, e.g. `review` for `publish_review`) is refused in
other jobs with `instead`: what to do in its place.

Handlers are named `module:function` and imported on first use: the pipelines that hold them
import `app.tools` themselves, so the tools never import a pipeline.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any

from pydantic import BaseModel

from app.tools.registry import Tool, ToolContext, ToolError
from app.tools.schemas import CUSTOM_TOOLS


@functools.cache
def handler_of(name: str) -> Any:
    """The handler function of a tool of the table (imported once); raises LookupError if it cannot be found."""
    tool = CUSTOM_TOOLS.get(name)
    if tool is None:
        raise LookupError(f"the app has no handler for the custom tool {name!r}")
    module, _, attr = tool.handler.partition(":")
    try:
        handler = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise LookupError(f"the handler of {name!r} ({tool.handler}) cannot be loaded: {exc}") from exc
    if not callable(handler):
        raise LookupError(f"the handler of {name!r} ({tool.handler}) is not callable")
    if tool.needs is not None and tool.needs not in {f.name for f in dataclasses.fields(ToolContext)}:
        raise LookupError(f"{name!r} needs {tool.needs!r}, which a tool's context never has")
    return handler


def unhandled(names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """For each name the app cannot run: why (not in the table, or its handler does not load)."""
    problems: dict[str, str] = {}
    for name in names:
        try:
            handler_of(name)
        except LookupError as exc:
            problems[name] = str(exc)
    return problems


def catalog_tool(name: str) -> Tool:
    """The registry entry of a table tool: refused with advice where its job's service is missing,
    else its handler."""
    spec = CUSTOM_TOOLS[name]

    async def run(ctx: ToolContext, args: BaseModel) -> str:
        if spec.needs is not None and getattr(ctx, spec.needs) is None:
            kind = getattr(ctx.job.kind, "value", ctx.job.kind)
            raise ToolError(f"{spec.name} does not apply to this {kind} job; nothing was done. {spec.instead}")
        return await handler_of(spec.name)(ctx, args)

    return Tool(spec.name, spec.input_model, run, spec.description)
