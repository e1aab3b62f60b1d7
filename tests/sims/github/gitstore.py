"""Git objects stored in git's own encoding and named by their real SHA-1.

Objects imported from a local repository (:func:`read_git_repo`) and objects created through the
API agree with what ``git`` computes.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from .common import iso


def git_hash(kind: str, data: bytes) -> str:
    return hashlib.sha1(f"{kind} {len(data)}\0".encode() + data).hexdigest()


@dataclass
class TreeEntry:
    mode: str  # as git writes it: "100644", "100755", "120000", "40000", "160000"
    name: str
    sha: str

    @property
    def type(self) -> str:
        return {"40000": "tree", "160000": "commit"}.get(self.mode, "blob")

    @property
    def api_mode(self) -> str:
        return "040000" if self.mode == "40000" else self.mode


@dataclass
class Signature:
    name: str
    email: str
    ts: int
    tz_minutes: int = 0

    def encode(self) -> str:
        sign = "-" if self.tz_minutes < 0 else "+"
        m = abs(self.tz_minutes)
        return f"{self.name} <{self.email}> {self.ts} {sign}{m // 60:02d}{m % 60:02d}"

    @classmethod
    def parse(cls, s: str) -> "Signature":
        m = re.match(r"^(.*?) <(.*?)> (\d+) ([+-])(\d\d)(\d\d)$", s)
        if not m:
            return cls(s, "", 0, 0)
        tz = int(m.group(5)) * 60 + int(m.group(6))
        return cls(m.group(1), m.group(2), int(m.group(3)), -tz if m.group(4) == "-" else tz)

    def api(self) -> dict:
        return {"name": self.name, "email": self.email, "date": iso(self.ts)}


@dataclass
class Commit:
    sha: str
    tree: str
    parents: list[str]
    author: Signature
    committer: Signature
    message: str
    signature: str | None = None


class GitStore:
    """A repository's object database: sha → (type, raw bytes)."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[str, bytes]] = {}

    def put(self, kind: str, data: bytes) -> str:
        sha = git_hash(kind, data)
        self.objects.setdefault(sha, (kind, data))
        return sha

    def kind(self, sha: str) -> str | None:
        o = self.objects.get(sha)
        return o[0] if o else None

    def data(self, sha: str, kind: str | None = None) -> bytes | None:
        o = self.objects.get(sha)
        if o is None or (kind and o[0] != kind):
            return None
        return o[1]

    def put_blob(self, data: bytes) -> str:
        return self.put("blob", data)

    def put_tree(self, entries: Iterable[TreeEntry]) -> str:
        def key(e: TreeEntry) -> bytes:
            return e.name.encode() + (b"/" if e.mode == "40000" else b"")

        out = b"".join(
            e.mode.encode() + b" " + e.name.encode() + b"\0" + bytes.fromhex(e.sha)
            for e in sorted(entries, key=key)
        )
        return self.put("tree", out)

    def tree(self, sha: str) -> list[TreeEntry] | None:
        data = self.data(sha, "tree")
        if data is None:
            return None
        out, i = [], 0
        while i < len(data):
            sp = data.index(b" ", i)
            nul = data.index(b"\0", sp)
            out.append(TreeEntry(data[i:sp].decode(), data[sp + 1:nul].decode("utf-8", "surrogateescape"),
                                 data[nul + 1:nul + 21].hex()))
            i = nul + 21
        return out

    def put_commit(self, tree: str, parents: list[str], author: Signature, committer: Signature,
                   message: str, signature: str | None = None) -> str:
        lines = [f"tree {tree}"] + [f"parent {p}" for p in parents]
        lines += [f"author {author.encode()}", f"committer {committer.encode()}"]
        if signature:
            lines.append("gpgsig " + signature.rstrip("\n").replace("\n", "\n "))
        return self.put("commit", ("\n".join(lines) + "\n\n" + message).encode())

    def commit(self, sha: str) -> Commit | None:
        data = self.data(sha, "commit")
        if data is None:
            return None
        text = data.decode("utf-8", "replace")
        head, _, message = text.partition("\n\n")
        tree, parents, author, committer, sig = "", [], None, None, None
        cur_key = None
        for line in head.split("\n"):
            if line.startswith(" ") and cur_key == "gpgsig":
                sig = (sig or "") + "\n" + line[1:]
                continue
            k, _, v = line.partition(" ")
            cur_key = k
            if k == "tree":
                tree = v
            elif k == "parent":
                parents.append(v)
            elif k == "author":
                author = Signature.parse(v)
            elif k == "committer":
                committer = Signature.parse(v)
            elif k == "gpgsig":
                sig = v
        return Commit(sha, tree, parents, author or Signature("", "", 0), committer or Signature("", "", 0),
                      message, sig)

    def peel(self, sha: str) -> str:
        """Follow annotated tags to what they point at."""
        for _ in range(10):
            if self.kind(sha) != "tag":
                return sha
            m = re.search(rb"^object ([0-9a-f]{40})", self.data(sha) or b"", re.M)
            if not m:
                return sha
            sha = m.group(1).decode()
        return sha

    def flatten(self, tree_sha: str, prefix: str = "") -> dict[str, tuple[str, str]]:
        """path → (mode, sha) for every non-tree entry under ``tree_sha``."""
        out: dict[str, tuple[str, str]] = {}
        for e in self.tree(tree_sha) or []:
            p = prefix + e.name
            if e.mode == "40000":
                out.update(self.flatten(e.sha, p + "/"))
            else:
                out[p] = (e.mode, e.sha)
        return out

    def lookup_path(self, tree_sha: str, path: str) -> TreeEntry | None:
        parts = [p for p in path.split("/") if p]
        cur = TreeEntry("40000", "", tree_sha)
        for part in parts:
            if cur.mode != "40000":
                return None
            nxt = next((e for e in self.tree(cur.sha) or [] if e.name == part), None)
            if nxt is None:
                return None
            cur = nxt
        return cur

    def ancestors(self, sha: str) -> set[str]:
        seen: set[str] = set()
        stack = [sha]
        while stack:
            s = stack.pop()
            if s in seen:
                continue
            seen.add(s)
            c = self.commit(s)
            if c:
                stack.extend(c.parents)
        return seen

    def merge_base(self, a: str, b: str) -> str | None:
        anc_a = self.ancestors(a)
        # Breadth-first from b: the first commit also reachable from a.
        queue, seen = [b], set()
        while queue:
            s = queue.pop(0)
            if s in seen:
                continue
            seen.add(s)
            if s in anc_a:
                return s
            c = self.commit(s)
            if c:
                queue.extend(c.parents)
        return None

    def commits_between(self, base: str | None, head: str) -> list[str]:
        """Commits reachable from head but not from base, parents before children."""
        exclude = self.ancestors(base) if base else set()
        out: list[str] = []
        seen: set[str] = set()
        stack: list[tuple[str, bool]] = [(head, False)]
        while stack:
            s, done = stack.pop()
            if done:
                out.append(s)
                continue
            if s in seen or s in exclude:
                continue
            seen.add(s)
            stack.append((s, True))
            c = self.commit(s)
            for p in reversed(c.parents if c else []):
                stack.append((p, False))
        return out


def read_git_repo(path: str | Path) -> tuple[dict[str, tuple[str, bytes]], dict[str, str], str | None]:
    """Every object, the refs (heads and tags) and the HEAD branch of a local git repository."""
    path = str(path)
    env_args = ["git", "-C", path]
    raw = subprocess.run(env_args + ["cat-file", "--batch-all-objects", "--batch"],
                         check=True, capture_output=True).stdout
    objects: dict[str, tuple[str, bytes]] = {}
    i = 0
    while i < len(raw):
        nl = raw.index(b"\n", i)
        sha, kind, size = raw[i:nl].decode().split(" ")
        start = nl + 1
        data = raw[start:start + int(size)]
        i = start + int(size) + 1
        if git_hash(kind, data) != sha:  # pragma: no cover - would mean our hashing is wrong
            raise AssertionError(f"hash mismatch for {sha}")
        objects[sha] = (kind, data)
    refs_out = subprocess.run(env_args + ["for-each-ref", "--format=%(objectname) %(refname)",
                                          "refs/heads", "refs/tags"],
                              check=True, capture_output=True, text=True).stdout
    refs = {}
    for line in refs_out.splitlines():
        sha, ref = line.split(" ", 1)
        refs[ref] = sha
    head = subprocess.run(env_args + ["symbolic-ref", "-q", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip() or None
    return objects, refs, head
