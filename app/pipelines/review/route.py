"""How deep a review goes: `light`, `standard` or `deep` (`review.depth`, `/review deep|light|standard`).

The route is decided before any session starts, in this order:
1. a `/review deep|light|standard` command (once, for that review);
2. `review.depth` set to `light`, `standard` or `deep` in `.github/prmedic.yml`;
3. with `review.depth: auto` (the default), plain rules for the obvious cases:
   - only documentation, lock files or generated files changed → `light` (nothing that runs);
   - any changed path matches `review.deep_paths` → `deep` (checked before the size, so a one-line
     change to authentication code is still `deep`);
   - a tiny diff (≤ TINY_LINES changed lines in ≤ TINY_FILES files) → `light`;
   (ignored files — `ignore_paths` and its defaults, generated files — count for neither of these two)
   - otherwise `standard`, marked `by="default"`: no rule decided it. The review pipeline then asks
     the router agent (`router.py`), whose answer makes a route `by="router"`.

Pure: the same files and config give the same route, so it can be tested as a table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from app.pipelines.diff import FileChange, looks_generated, matches_any
from app.repo_config import RepoConfig

Depth = Literal["light", "standard", "deep"]
DecidedBy = Literal["command", "config", "rules", "default", "router"]
DEPTHS: tuple[Depth, ...] = ("light", "standard", "deep")
TINY_LINES = 10
TINY_FILES = 2

_DOCS = re.compile(r"(?i)((^|/)docs?/|\.(md|markdown|rst|adoc|txt)$|(^|/)(LICENSE|CHANGELOG|AUTHORS|NOTICE)[^/]*$)")
# `.txt` files that are build input, not prose.
_NOT_DOCS = re.compile(r"(?i)(^|/)(requirements[^/]*|constraints[^/]*|CMakeLists)\.txt$")


@dataclass(frozen=True, slots=True)
class Route:
    """The review's depth, why, and what decided it (`command`, `config`, `rules`, `default` or
    `router`); a router's route carries what its session cost."""

    depth: Depth
    reason: str
    by: DecidedBy
    router_usd: float | None = None

    def as_dict(self) -> dict[str, str]:
        return {"depth": self.depth, "reason": self.reason, "by": self.by}

    @property
    def line(self) -> str:
        """One line for the check run summary: `Route: light — only documentation changed`, or
        `Route: standard — <reason> (router, $0.003)`."""
        cost = f", ${self.router_usd:.3f}" if self.router_usd is not None else ""
        return f"Route: {self.depth} — {self.reason}" + (f" (router{cost})" if self.by == "router" else "")


def is_docs(path: str) -> bool:
    return bool(_DOCS.search(path)) and not _NOT_DOCS.search(path)


def route_for(config: RepoConfig, files: list[FileChange], pr: dict[str, Any] | None = None,
              override: str | None = None) -> Route:
    """The route for a review of `files` (all the PR's changed files, ignored ones included).

    `pr` (app.routing.fields.pull_request_fields) is not needed by the plain rules; it is the
    input the router agent will read for the cases they leave open."""
    if override in DEPTHS:
        return Route(override, f"asked for with `/review {override}`", "command")  # type: ignore[arg-type]
    depth = config.review.depth
    if depth != "auto":
        return Route(depth, f"`review.depth: {depth}` in `.github/prmedic.yml`", "config")
    if not files:
        return Route("standard", "no changed files to judge by", "default")
    light = _only_inert(config, files)
    if light:
        return Route("light", light, "rules")
    # Lock files, vendored and generated files are not reviewed: they neither make a review deep
    # nor make a small change big.
    files = [change for change in files if not _ignored(config, change)]
    for change in files:
        for path in filter(None, (change.path, change.previous_path)):
            pattern = matches_any(path, config.review.deep_paths)
            if pattern:
                return Route("deep", f"`{path}` matches `{pattern}` (`review.deep_paths`)", "rules")
    lines = sum(change.changes for change in files)
    if len(files) <= TINY_FILES and lines <= TINY_LINES:
        return Route("light", f"a tiny change: {lines} line(s) in {len(files)} file(s)", "rules")
    return Route("standard", "no plain rule applies", "default")


def _only_inert(config: RepoConfig, files: list[FileChange]) -> str | None:
    """Why every file is documentation, a lock file or generated (the light reason), or None."""
    docs = generated = 0
    for change in files:
        if is_docs(change.path):
            docs += 1
        elif _ignored(config, change):
            generated += 1
        else:
            return None
    if not generated:
        return "only documentation changed"
    if not docs:
        return "only lock files or generated files changed"
    return "only documentation, lock files or generated files changed"


def _ignored(config: RepoConfig, change: FileChange) -> bool:
    return bool(matches_any(change.path, config.all_ignore_paths)) or looks_generated(change)
