"""Unified diffs as `git diff` writes them: parse, check against the safety rules
(docs/architecture.md, "Safety rules") and apply to file contents, strictly (no fuzz), the way `git apply` does.

Everything here is pure: the caller fetches the files and writes the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NULL_PATH = "/dev/null"
REGULAR_MODES = ("100644", "100755")
WORKFLOWS_DIR = ".github/workflows/"

_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$")
_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


class PatchError(ValueError):
    """The patch cannot be read, or breaks a rule; the message says exactly what and where."""


class HunkMismatch(PatchError):
    """A hunk's old lines are not in the file: the message shows the hunk and the lines found."""


@dataclass
class Hunk:
    old_start: int
    old_count: int
    new_start: int
    new_count: int
    header: str
    lines: list[str] = field(default_factory=list)  # each begins with " ", "-" or "+"
    old_missing_newline: bool = False  # "\ No newline at end of file" after the old side's last line
    new_missing_newline: bool = False

    @property
    def old_lines(self) -> list[str]:
        return [line[1:] for line in self.lines if line[0] in " -"]

    @property
    def new_lines(self) -> list[str]:
        return [line[1:] for line in self.lines if line[0] in " +"]

    def text(self) -> str:
        return "\n".join([self.header, *self.lines])


@dataclass
class FilePatch:
    old_path: str | None  # None: the file is created
    new_path: str | None  # None: the file is deleted
    old_mode: str | None = None
    new_mode: str | None = None
    hunks: list[Hunk] = field(default_factory=list)
    binary: bool = False
    copy: bool = False

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or ""

    @property
    def status(self) -> str:
        if self.old_path is None:
            return "added"
        if self.new_path is None:
            return "deleted"
        if self.old_path != self.new_path:
            return "copied" if self.copy else "renamed"
        return "modified"


# ---------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------


def _unquote(name: str) -> str:
    """git's C-style quoting of unusual file names ("a/t\\303\\251st.py")."""
    if not (len(name) >= 2 and name[0] == name[-1] == '"'):
        return name
    body, out, i = name[1:-1], bytearray(), 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode()
            i += 1
        elif body[i + 1: i + 2] in _ESCAPES:
            out.append(_ESCAPES[body[i + 1]])
            i += 2
        elif re.match(r"[0-7]{3}", body[i + 1: i + 4]):
            out.append(int(body[i + 1: i + 4], 8))
            i += 4
        else:
            raise PatchError(f"cannot read the quoted file name {name}")
    return out.decode("utf-8", "surrogateescape")


def _strip_prefix(name: str) -> str | None:
    name = _unquote(name.split("\t", 1)[0].rstrip() if not name.startswith('"') else name.rstrip())
    if name == NULL_PATH:
        return None
    return name[2:] if name[:2] in ("a/", "b/") else name


def _git_header_paths(rest: str) -> tuple[str, str] | None:
    """The two names of `diff --git a/X b/Y` (used when no ---/+++ lines follow)."""
    if rest.startswith('"'):
        m = re.match(r'^("(?:[^"\\]|\\.)*")\s+(.*)$', rest)
        return (_unquote(m.group(1))[2:], _strip_prefix(m.group(2)) or "") if m else None
    length = (len(rest) - 5) // 2
    if len(rest) % 2 == 1 and rest.startswith("a/") and rest[2 + length: 5 + length] == " b/" \
            and rest[2: 2 + length] == rest[5 + length:]:
        return rest[2: 2 + length], rest[2: 2 + length]
    if " b/" in rest:
        a, b = rest.split(" b/", 1)
        return a.removeprefix("a/"), b
    return None


def parse_patch(text: str) -> list[FilePatch]:
    """Every file of a unified diff; `PatchError` says where the text stops making sense."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    files: list[FilePatch] = []
    current: FilePatch | None = None
    git_paths: tuple[str, str] | None = None
    i = 0

    def finish() -> None:
        if current is None:
            return
        if current.old_path is None and current.new_path is None and git_paths:
            # A header-only section (an empty new file, a pure rename or mode change).
            if current.new_mode and not current.old_mode:
                current.new_path = git_paths[1]
            elif current.old_mode and not current.new_mode and current.hunks == []:
                current.old_path = git_paths[0]
            else:
                current.old_path, current.new_path = git_paths
        files.append(current)

    while i < len(lines):
        line = lines[i]
        if line.startswith("diff --git "):
            finish()
            current = FilePatch(old_path=None, new_path=None)
            git_paths = _git_header_paths(line[len("diff --git "):])
            i += 1
            continue
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            if current is None or current.hunks:
                finish()
                current, git_paths = FilePatch(old_path=None, new_path=None), None
            old, new = _strip_prefix(line[4:]), _strip_prefix(lines[i + 1][4:])
            if old is None and new is None:
                raise PatchError(f"line {i + 1}: both sides of the file are /dev/null")
            current.old_path, current.new_path = old, new
            if old is None and current.new_mode is None:
                current.new_mode = "100644"
            i += 2
            continue
        if line.startswith("@@"):
            if current is None or (current.old_path is None and current.new_path is None):
                raise PatchError(f"line {i + 1}: hunk `{line}` comes before any `--- a/…` / `+++ b/…` file header")
            hunk, i = _read_hunk(lines, i, current.path)
            current.hunks.append(hunk)
            continue
        if current is not None:
            _extended_header(current, line)
        i += 1
    finish()
    if not files:
        raise PatchError("the patch contains no file changes; give a unified diff as `git diff` prints it")
    return files


def _extended_header(current: FilePatch, line: str) -> None:
    if line.startswith("new file mode "):
        current.new_mode = line.split()[-1]
    elif line.startswith("deleted file mode "):
        current.old_mode = line.split()[-1]
    elif line.startswith("old mode "):
        current.old_mode = line.split()[-1]
    elif line.startswith("new mode "):
        current.new_mode = line.split()[-1]
    elif line.startswith(("rename from ", "copy from ")):
        current.old_path = _unquote(line.split(" ", 2)[2])
        current.copy = line.startswith("copy")
    elif line.startswith(("rename to ", "copy to ")):
        current.new_path = _unquote(line.split(" ", 2)[2])
    elif line.startswith("GIT binary patch") or (line.startswith("Binary files ") and line.endswith(" differ")):
        current.binary = True


def _read_hunk(lines: list[str], i: int, path: str) -> tuple[Hunk, int]:
    m = _HUNK_HEADER.match(lines[i])
    if not m:
        raise PatchError(f"{path}: line {i + 1}: `{lines[i]}` is not a hunk header (`@@ -a,b +c,d @@`)")
    old_start, new_start = int(m.group(1)), int(m.group(3))
    old_count = 1 if m.group(2) is None else int(m.group(2))
    new_count = 1 if m.group(4) is None else int(m.group(4))
    hunk = Hunk(old_start, old_count, new_start, new_count, lines[i])
    old_seen = new_seen = 0
    i += 1
    last = ""
    while i < len(lines) and (old_seen < old_count or new_seen < new_count or lines[i].startswith("\\")):
        line = lines[i]
        if line.startswith("\\"):
            if last in (" ", "-"):
                hunk.old_missing_newline = True
            if last in (" ", "+"):
                hunk.new_missing_newline = True
            i += 1
            continue
        if line == "":
            line = " "  # an empty context line whose leading space an editor removed
        kind = line[0]
        if kind not in " -+":
            break
        old_seen += kind in " -"
        new_seen += kind in " +"
        hunk.lines.append(line)
        last = kind
        i += 1
    missing = old_count - old_seen
    if i >= len(lines) and missing > 0 and missing == new_count - new_seen:
        # Trailing blank context lines lost to whitespace stripping (the tool input is stripped).
        hunk.lines += [" "] * missing
        old_seen, new_seen = old_count, new_count
    if (old_seen, new_seen) != (old_count, new_count):
        raise PatchError(
            f"{path}: hunk `{hunk.header}` announces {old_count} old and {new_count} new lines but contains "
            f"{old_seen} old (context and `-`) and {new_seen} new (context and `+`) lines; fix the counts in the "
            "header or the lines (regenerating the patch with `git diff` does both)")
    return hunk, i


# ---------------------------------------------------------------------------------------------
# the rules
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    type: str  # blob | tree | commit
    sha: str


def path_problem(path: str, *, allow_workflows: bool) -> str | None:
    """Why `path` may not be written, or None."""
    if not path or path.startswith("/") or "\\" in path or any(ord(ch) < 32 for ch in path):
        return f"`{path}` is not a relative path inside the repository"
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return f"`{path}` leaves the repository or is not normalised (no `..`, `.` or empty components)"
    if any(part.rstrip(". ").lower() == ".git" for part in parts):
        return f"`{path}` is inside `.git/`, which a patch may never touch"
    if not allow_workflows and path.lower().startswith(WORKFLOWS_DIR):
        return (f"`{path}` is a GitHub Actions workflow; this repository's prmedic config does not allow fixes "
                "to change `.github/workflows/` (fix.allow_workflow_changes)")
    return None


def check_patch(files: list[FilePatch], tree: dict[str, TreeEntry], *, allow_workflows: bool, patch_bytes: int,
                max_patch_bytes: int) -> list[str]:
    """Every rule the patch breaks, against the head commit's tree (path → entry)."""
    problems: list[str] = []
    if patch_bytes > max_patch_bytes:
        problems.append(f"the patch is {patch_bytes} bytes; this repository allows at most {max_patch_bytes} "
                        "(fix.max_patch_bytes): make a smaller change")
    seen: set[str] = set()
    for f in files:
        for path in {p for p in (f.old_path, f.new_path) if p is not None}:
            problem = path_problem(path, allow_workflows=allow_workflows)
            if problem:
                problems.append(problem)
        if f.path in seen:
            problems.append(f"`{f.path}` appears twice in the patch; give each file once")
        seen.add(f.path)
        if f.binary:
            problems.append(f"`{f.path}`: binary patches are not accepted")
        if f.old_path is not None and f.new_path is not None and f.old_mode and f.new_mode \
                and f.old_mode != f.new_mode:
            problems.append(f"`{f.path}`: changing a file's mode ({f.old_mode} → {f.new_mode}) is not accepted")
        if f.new_path is not None and f.new_mode is not None and f.new_mode not in REGULAR_MODES:
            problems.append(f"`{f.path}`: mode {f.new_mode} (symlink or submodule) is not accepted; only regular "
                            "files")
        if f.old_path is not None:
            entry = tree.get(f.old_path)
            if entry is None:
                problems.append(f"`{f.old_path}` does not exist at the head commit")
            elif entry.type != "blob" or entry.mode not in REGULAR_MODES:
                problems.append(f"`{f.old_path}` is a {_kind(entry)} at the head commit; only regular files may be "
                                "patched")
        if f.new_path is not None and f.new_path != f.old_path:
            if f.new_path in tree:
                problems.append(f"`{f.new_path}` already exists at the head commit")
            parts = f.new_path.split("/")
            for n in range(1, len(parts)):
                parent = tree.get("/".join(parts[:n]))
                if parent is not None and parent.type != "tree":
                    problems.append(f"`{f.new_path}`: `{'/'.join(parts[:n])}` is a {_kind(parent)}, not a directory")
                    break
    return problems


def _kind(entry: TreeEntry) -> str:
    if entry.mode == "120000":
        return "symlink"
    return {"commit": "submodule", "tree": "directory"}.get(entry.type, "special file")


# ---------------------------------------------------------------------------------------------
# applying
# ---------------------------------------------------------------------------------------------


def _split(data: bytes) -> tuple[list[str], bool]:
    text = data.decode("utf-8", "surrogateescape")
    if text == "":
        return [], True
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
        return lines, True
    return lines, False


def _join(lines: list[str], final_newline: bool) -> bytes:
    if not lines:
        return b""
    return ("\n".join(lines) + ("\n" if final_newline else "")).encode("utf-8", "surrogateescape")


def _find(lines: list[str], wanted: list[str], expected: int, start: int) -> int | None:
    """The position of `wanted` nearest to `expected`, not before `start` (as `git apply`)."""
    if not wanted:
        return min(max(expected, start), len(lines))
    hits = (pos for pos in range(start, len(lines) - len(wanted) + 1) if lines[pos: pos + len(wanted)] == wanted)
    return min(hits, key=lambda pos: abs(pos - expected), default=None)


def apply_file(path: str, original: bytes, hunks: list[Hunk], starts: list[int] | None = None) -> bytes:
    """The file after the hunks; `HunkMismatch` shows the first hunk that does not apply.

    `starts`, if given, receives each hunk's first old line where it actually applied (1-based).
    """
    lines, final_newline = _split(original)
    offset = 0
    start = 0
    for number, hunk in enumerate(hunks, 1):
        old, new = hunk.old_lines, hunk.new_lines
        expected = (hunk.old_start - 1 if hunk.old_count else hunk.old_start) + offset
        pos = _find(lines, old, expected, start)
        if pos is None:
            raise HunkMismatch(_mismatch(path, number, len(hunks), hunk, lines, max(expected, 0)))
        if starts is not None:
            starts.append(pos - offset + 1)
        at_end = pos + len(old) == len(lines)
        if at_end and old and hunk.old_missing_newline == final_newline:
            raise HunkMismatch(_mismatch(path, number, len(hunks), hunk, lines, pos,
                                         note="the hunk disagrees with the file about the newline at its end"))
        lines[pos: pos + len(old)] = new
        if at_end:
            final_newline = not hunk.new_missing_newline
        offset += len(new) - len(old)
        start = pos + len(new)
    return _join(lines, final_newline)


def _mismatch(path: str, number: int, total: int, hunk: Hunk, lines: list[str], at: int, note: str = "") -> str:
    shown_from = max(at - 2, 0)
    shown_to = min(at + max(hunk.old_count, 1) + 2, len(lines))
    found = "\n".join(f"{n + 1:>6}| {lines[n]}" for n in range(shown_from, shown_to)) or "(the file is empty)"
    hint = ""
    first = next((line for line in hunk.old_lines if line.strip()), None)
    if first is not None:
        where = [str(n + 1) for n, line in enumerate(lines) if line == first][:5]
        hint = (f"\nThe hunk's first non-blank old line occurs at line(s) {', '.join(where)}." if where
                else "\nThe hunk's first non-blank old line does not occur anywhere in the file.")
    return (f"Hunk {number} of {total} for `{path}` does not apply{': ' + note if note else ''}. Its context and "
            f"`-` lines must match the file at the pull request's head exactly.\n\nThe hunk:\n```diff\n{hunk.text()}\n"
            f"```\nWhat the file has at lines {shown_from + 1}-{shown_to}:\n```\n{found}\n```{hint}\n"
            "Regenerate the patch with `git diff` in the checkout (which is at the head commit) and call propose_fix "
            "again.")


@dataclass
class Change:
    """One path's new state: content and mode, or None (deleted)."""

    path: str
    content: bytes | None
    mode: str = "100644"


def apply_patch(files: list[FilePatch], read: dict[str, bytes], tree: dict[str, TreeEntry],
                starts: dict[str, list[int]] | None = None) -> list[Change]:
    """The changes the patch makes, given the old contents of the files it reads (path → bytes).
    `starts` receives, per path, where each hunk applied (see `apply_file`)."""
    changes: list[Change] = []
    for f in files:
        original = read.get(f.old_path, b"") if f.old_path is not None else b""
        where = starts.setdefault(f.path, []) if starts is not None else None
        content = apply_file(f.path, original, f.hunks, where) if f.hunks else original
        if f.new_path is None:
            if content:
                raise HunkMismatch(f"`{f.old_path}`: the deletion does not remove the file's whole content as it is "
                                   "at the head commit; regenerate the patch with `git diff`")
            changes.append(Change(f.old_path or "", None))
            continue
        mode = tree[f.old_path].mode if f.old_path is not None and f.old_path in tree else (f.new_mode or "100644")
        changes.append(Change(f.new_path, content, mode))
        if f.old_path is not None and f.old_path != f.new_path and not f.copy:
            changes.append(Change(f.old_path, None))
    return changes


def summarize(files: list[FilePatch]) -> str:
    added = sum(1 for f in files for h in f.hunks for line in h.lines if line[0] == "+")
    removed = sum(1 for f in files for h in f.hunks for line in h.lines if line[0] == "-")
    return f"{len(files)} file(s), +{added} −{removed}"
