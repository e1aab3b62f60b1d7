"""Diffs, the way GitHub's "files" endpoints show them (patches, hunks, positions)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .common import _is_binary, _split_lines

if TYPE_CHECKING:
    from .gitstore import GitStore


@dataclass
class HunkLine:
    kind: str  # " ", "-", "+"
    old: int | None
    new: int | None
    position: int  # 1-based position in the file's patch (the first @@ header is position 0)


@dataclass
class Hunk:
    header: str
    header_position: int
    lines: list[HunkLine]


@dataclass
class FileDiff:
    filename: str
    status: str  # added, removed, modified, renamed, changed
    old_path: str | None
    old_mode: str | None
    old_sha: str | None
    new_mode: str | None
    new_sha: str | None
    additions: int = 0
    deletions: int = 0
    patch: str | None = None
    hunks: list[Hunk] = field(default_factory=list)

    @property
    def patch_lines(self) -> list[str]:
        return self.patch.split("\n") if self.patch else []


def _range(start: int, stop: int) -> str:
    beginning, length = start + 1, stop - start
    if length == 1:
        return str(beginning)
    if not length:
        beginning -= 1
    return f"{beginning},{length}"


def make_patch(old: bytes, new: bytes, context: int = 3) -> tuple[str, list[Hunk], int, int]:
    a = _split_lines(old.decode("utf-8", "replace"))
    b = _split_lines(new.decode("utf-8", "replace"))
    out: list[str] = []
    hunks: list[Hunk] = []
    adds = dels = 0
    sm = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for group in sm.get_grouped_opcodes(context):
        first, last = group[0], group[-1]
        header = f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@"
        # git's default "function context": the nearest earlier line starting with a letter, _ or $.
        for k in range(first[1] - 1, -1, -1):
            if re.match(r"[A-Za-z_$]", a[k]):
                header += " " + a[k].rstrip()[:80].rstrip()
                break
        hunk = Hunk(header, len(out), [])
        out.append(header)

        def emit(kind: str, line: str, o: int | None, n: int | None) -> None:
            out.append(kind + line.rstrip("\n"))
            hunk.lines.append(HunkLine(kind, o, n, len(out) - 1))
            if not line.endswith("\n"):
                out.append("\\ No newline at end of file")

        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                for k in range(i2 - i1):
                    emit(" ", a[i1 + k], i1 + k + 1, j1 + k + 1)
                continue
            if tag in ("replace", "delete"):
                for k in range(i1, i2):
                    emit("-", a[k], k + 1, None)
                    dels += 1
            if tag in ("replace", "insert"):
                for k in range(j1, j2):
                    emit("+", b[k], None, k + 1)
                    adds += 1
        hunks.append(hunk)
    return "\n".join(out), hunks, adds, dels


def diff_trees(store: GitStore, old_tree: str | None, new_tree: str) -> list[FileDiff]:
    old = store.flatten(old_tree) if old_tree else {}
    new = store.flatten(new_tree)
    removed = {p: v for p, v in old.items() if p not in new}
    added = {p: v for p, v in new.items() if p not in old}
    diffs: list[FileDiff] = []
    # Exact renames: same blob removed at one path and added at another.
    by_sha = {}
    for p, (mode, sha) in sorted(removed.items()):
        by_sha.setdefault(sha, []).append(p)
    for p, (mode, sha) in sorted(added.items()):
        if by_sha.get(sha):
            oldp = by_sha[sha].pop(0)
            omode = removed.pop(oldp)[0]
            del added[p]
            diffs.append(FileDiff(p, "renamed", oldp, omode, sha, mode, sha))
    for p in sorted(set(old) | set(new)):
        if p in removed:
            diffs.append(FileDiff(p, "removed", p, removed[p][0], removed[p][1], None, None))
        elif p in added:
            diffs.append(FileDiff(p, "added", None, None, None, added[p][0], added[p][1]))
        elif p in old and p in new and old[p] != new[p]:
            status = "modified" if old[p][1] != new[p][1] else "changed"
            diffs.append(FileDiff(p, status, p, old[p][0], old[p][1], new[p][0], new[p][1]))
    for d in diffs:
        old_data = (store.data(d.old_sha) or b"") if d.old_sha and d.old_mode != "160000" else b""
        new_data = (store.data(d.new_sha) or b"") if d.new_sha and d.new_mode != "160000" else b""
        if d.old_sha == d.new_sha or _is_binary(old_data) or _is_binary(new_data):
            continue
        patch, hunks, adds, dels = make_patch(old_data, new_data)
        d.patch, d.hunks, d.additions, d.deletions = (patch or None), hunks, adds, dels
    diffs.sort(key=lambda d: d.filename)
    return diffs
