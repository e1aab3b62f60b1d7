"""A pull request's changed files as GitHub lists them, with hunks parsed into line numbers.

`pulls/{n}/files` gives each file's `patch` (unified diff hunks, no file header). GitHub accepts
an inline review comment only on a line inside a hunk, on the side it names: RIGHT for added
and context lines (new line numbers), LEFT for deleted and context lines (old line numbers),
and a multi-line comment only when both ends lie in the same hunk. `FileChange.locate` answers
exactly that question, so comments can be checked before GitHub sees them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

MAX_PR_FILES = 3000  # GitHub lists at most this many files of a pull request
FILES_PER_PAGE = 100

Side = Literal["RIGHT", "LEFT"]
_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class PullFile(BaseModel):
    """One entry of `GET /repos/{owner}/{repo}/pulls/{n}/files` (the fields used here)."""

    model_config = ConfigDict(extra="ignore")

    filename: str
    status: str = "modified"  # added, removed, modified, renamed, copied, changed, unchanged
    additions: int = 0
    deletions: int = 0
    sha: str | None = None  # blob sha of the new version
    patch: str | None = None  # absent for binary files and diffs GitHub finds too large
    previous_filename: str | None = None


@dataclass(frozen=True, slots=True)
class DiffLine:
    kind: str  # " " context, "+" added, "-" deleted
    old: int | None
    new: int | None
    text: str


@dataclass(slots=True)
class Hunk:
    header: str
    lines: list[DiffLine] = field(default_factory=list)

    def side_lines(self, side: Side) -> list[int]:
        if side == "RIGHT":
            return [ln.new for ln in self.lines if ln.new is not None]
        return [ln.old for ln in self.lines if ln.old is not None]


@dataclass
class FileChange:
    path: str
    status: str
    additions: int
    deletions: int
    blob_sha: str | None
    patch: str | None
    previous_path: str | None = None
    hunks: list[Hunk] = field(default_factory=list)

    @classmethod
    def from_github(cls, entry: PullFile | dict[str, Any]) -> "FileChange":
        f = entry if isinstance(entry, PullFile) else PullFile.model_validate(entry)
        return cls(path=f.filename, status=f.status, additions=f.additions, deletions=f.deletions,
                   blob_sha=f.sha, patch=f.patch, previous_path=f.previous_filename,
                   hunks=parse_patch(f.patch) if f.patch else [])

    @property
    def changes(self) -> int:
        return self.additions + self.deletions

    @functools.cached_property
    def _index(self) -> dict[tuple[Side, int], tuple[int, DiffLine]]:
        index: dict[tuple[Side, int], tuple[int, DiffLine]] = {}
        for number, hunk in enumerate(self.hunks):
            for line in hunk.lines:
                if line.new is not None:
                    index[("RIGHT", line.new)] = (number, line)
                if line.old is not None:
                    index[("LEFT", line.old)] = (number, line)
        return index

    def locate(self, line: int, side: Side) -> tuple[int, DiffLine] | None:
        """(hunk number, the diff line) for `line` on `side`, or None if it is outside the diff."""
        return self._index.get((side, line))

    def line_text(self, start: int, end: int, side: Side) -> list[str]:
        return [hit[1].text for n in range(start, end + 1) if (hit := self.locate(n, side)) is not None]

    def ranges(self, side: Side) -> str:
        """The commentable line ranges on `side`, e.g. '10–18, 40–52' (for messages to the agent)."""
        spans = []
        for hunk in self.hunks:
            numbers = hunk.side_lines(side)
            if numbers:
                spans.append(f"{numbers[0]}–{numbers[-1]}" if numbers[-1] != numbers[0] else str(numbers[0]))
        return ", ".join(spans) or "none"


def parse_patch(patch: str) -> list[Hunk]:
    """Hunks of a GitHub `patch` with the old and new line number of every line.

    Each hunk takes as many lines as its header counts, so a blank context line whose space was
    stripped and a trailing newline cannot be confused.
    """
    hunks: list[Hunk] = []
    old = new = old_left = new_left = 0
    current: Hunk | None = None
    for raw in patch.split("\n"):
        match = _HUNK_HEADER.match(raw)
        if match:
            old, new = int(match[1]), int(match[3])
            old_left = int(match[2]) if match[2] is not None else 1
            new_left = int(match[4]) if match[4] is not None else 1
            current = Hunk(raw)
            hunks.append(current)
            continue
        if current is None or raw.startswith("\\") or (old_left <= 0 and new_left <= 0):
            continue
        kind, text = raw[:1], raw[1:]
        if kind == "+":
            current.lines.append(DiffLine("+", None, new, text))
            new, new_left = new + 1, new_left - 1
        elif kind == "-":
            current.lines.append(DiffLine("-", old, None, text))
            old, old_left = old + 1, old_left - 1
        elif kind in (" ", ""):
            current.lines.append(DiffLine(" ", old, new, text))
            old, new, old_left, new_left = old + 1, new + 1, old_left - 1, new_left - 1
    return hunks


async def fetch_pull_files(gh: Any, repo: str, number: int, *, limit: int = MAX_PR_FILES) -> list[FileChange]:
    """Every changed file (GitHub stops at 3,000), one request per 100 files."""
    files: list[FileChange] = []
    url = f"/repos/{repo}/pulls/{number}/files?per_page={FILES_PER_PAGE}"
    async for entry in gh.getiter(url):
        files.append(FileChange.from_github(entry))
        if len(files) >= limit:
            break
    return files


# -- path globs (gitignore-like: `*` stays within a directory, `**` crosses them) -------------

@functools.lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    pattern = pattern.strip().lstrip("/")
    if "/" not in pattern.rstrip("/"):
        pattern = "**/" + pattern  # a bare name matches at any depth, as in .gitignore
    if pattern.endswith("/"):
        pattern += "**"
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("(?:/.*)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches_any(path: str, patterns: Iterable[str]) -> str | None:
    """The first pattern that matches `path`, or None."""
    for pattern in patterns:
        if pattern.strip() and _glob_regex(pattern).match(path):
            return pattern
    return None


_GENERATED_MARKERS = re.compile(r"(?i)(@generated\b|code generated .* do not edit|auto-?generated file|do not edit.*generated)")


def looks_generated(change: FileChange) -> bool:
    """A marker such as '// Code generated by protoc. DO NOT EDIT.' in the first added lines."""
    if not change.hunks or change.status != "added":
        return False
    head = [ln.text for ln in change.hunks[0].lines[:5]]
    return any(_GENERATED_MARKERS.search(text) for text in head)
