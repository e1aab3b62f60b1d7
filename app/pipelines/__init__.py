"""Pipelines turn a job into GitHub writes. Each job kind has at most one."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.store import Job, Store

Pipeline = Callable[["JobContext"], Awaitable[dict[str, Any] | None]]


@dataclass
class JobContext:
    """What a pipeline gets: its job and the services it may use."""

    job: Job
    store: Store
    github: Any = None
    settings: Any = None
    services: dict[str, Any] = field(default_factory=dict)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("prmedic.pipeline"))


def default_pipelines() -> dict[str, Pipeline]:
    """The pipelines this version ships. A kind missing here is marked `no_pipeline`, visibly."""
    from app.pipelines.fix import fix_pipeline
    from app.pipelines.review import review_pipeline

    return {"fix": fix_pipeline, "review": review_pipeline}
