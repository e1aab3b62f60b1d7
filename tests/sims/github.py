"""A strict, stateful simulator of the parts of GitHub's REST API that prmedic calls.

Everything lives in memory in a :class:`GitHubState`; :func:`make_github_app` wraps it in an
aiohttp application. Every request is checked against GitHub's own OpenAPI description
(``tests/fixtures/github-openapi.json``, trimmed from ``@octokit/openapi``) with openapi-core,
plus a few rules the description cannot express (unknown body keys, GitHub's semantic checks).
A request that GitHub would refuse is answered the way GitHub answers it *and* recorded in
``state.violations`` so the test fails even if the client swallows the error.

Git objects are real: blobs, trees and commits are stored in git's own encoding and named by
their real SHA-1, so objects imported from a local repository (``add_repo(from_git=...)``) and
objects created through the API agree with what ``git`` computes.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import difflib
import hashlib
import json
import math
import random
import re
import secrets
import string
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import quote, unquote, urlencode

import jwt
from aiohttp import web

SPEC_PATH = Path(__file__).resolve().parent.parent / "fixtures" / "github-openapi.json"
DOCS_URL = "https://docs.github.com/rest"
HTML_BASE = "https://github.com"
ZERO_SHA = "0" * 40
PERM_LEVEL = {"none": 0, "read": 1, "write": 2, "admin": 3}
DEFAULT_APP_PERMISSIONS = {
    "actions": "read",
    "checks": "write",
    "contents": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
}
DEFAULT_APP_EVENTS = ["check_run", "check_suite", "issue_comment", "pull_request",
                      "pull_request_review", "pull_request_review_comment", "workflow_job",
                      "workflow_run"]
REACTIONS = ["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"]
MAX_PR_FILES = 3000
MAX_PR_COMMITS = 250
MAX_COMMENT_BODY = 65536

# --------------------------------------------------------------------------------------------
# The OpenAPI description: loaded once per process.
# --------------------------------------------------------------------------------------------

_SPEC_CACHE: dict[str, Any] = {}


def load_spec() -> tuple[dict, Any]:
    """(raw dict, openapi_core.OpenAPI) for the trimmed description, cached per process."""
    if "spec" not in _SPEC_CACHE:
        from openapi_core import Config, OpenAPI

        raw = json.loads(SPEC_PATH.read_text())
        # The trim script validates the description; skipping that here makes loading ~instant.
        api = OpenAPI.from_dict(raw, config=Config(spec_validator_cls=None))
        _SPEC_CACHE["spec"] = (raw, api)
    return _SPEC_CACHE["spec"]


def _resolve(raw: dict, node: Any) -> Any:
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        cur: Any = raw
        for part in node["$ref"][2:].split("/"):
            cur = cur[part.replace("~1", "/").replace("~0", "~")]
        node = cur
        seen += 1
        if seen > 50:
            raise RuntimeError("reference loop")
    return node


def _unknown_keys(raw: dict, value: Any, schema: Any, where: str = "") -> list[str]:
    """Keys of ``value`` that ``schema`` does not declare (GitHub: "is not a permitted key")."""
    schema = _resolve(raw, schema)
    if not isinstance(schema, dict):
        return []
    branches = [schema]
    for comb in ("allOf", "oneOf", "anyOf"):
        branches += [_resolve(raw, s) for s in schema.get(comb, [])]
    out: list[str] = []
    if isinstance(value, dict):
        props: dict[str, Any] = {}
        open_ = False
        for b in branches:
            if not isinstance(b, dict):
                continue
            if b.get("additionalProperties") not in (None, False):
                open_ = True
            props.update(b.get("properties", {}))
        if not props:
            return []
        for k, v in value.items():
            if k in props:
                out += _unknown_keys(raw, v, props[k], f"{where}{k}.")
            elif not open_:
                out.append(f"{where}{k}")
    elif isinstance(value, list):
        for b in branches:
            if isinstance(b, dict) and "items" in b:
                for i, item in enumerate(value):
                    out += _unknown_keys(raw, item, b["items"], f"{where}{i}.")
                break
    return out


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(int(ts), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(s: str) -> tuple[int, int]:
    """ISO 8601 → (unix seconds, utc offset in minutes)."""
    d = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    off = d.utcoffset() or dt.timedelta(0)
    return int(d.timestamp()), int(off.total_seconds() // 60)


def node_id(kind: str, ident: Any) -> str:
    return kind + "_" + base64.b64encode(f"{kind}:{ident}".encode()).decode().rstrip("=")


def b64_wrapped(data: bytes) -> str:
    enc = base64.b64encode(data).decode()
    return "".join(enc[i:i + 60] + "\n" for i in range(0, len(enc), 60))


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:8000]


def _split_lines(text: str) -> list[str]:
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


class HTTPError(Exception):
    """Raised by handlers: becomes a GitHub-style JSON error answer."""

    def __init__(self, status: int, message: str, errors: list | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}


def error_body(status: int, message: str, errors: list | None = None) -> dict:
    body: dict[str, Any] = {"message": message}
    if errors is not None:
        body["errors"] = errors
    body["documentation_url"] = DOCS_URL
    body["status"] = str(status)
    return body


def not_found() -> HTTPError:
    return HTTPError(404, "Not Found")


def validation_failed(resource: str, field_: str | None = None, code: str = "custom",
                      message: str | None = None) -> HTTPError:
    err: dict[str, Any] = {"resource": resource, "code": code}
    if field_:
        err["field"] = field_
    if message:
        err["message"] = message
    return HTTPError(422, "Validation Failed", [err])


def unprocessable(*messages: str) -> HTTPError:
    return HTTPError(422, "Unprocessable Entity", list(messages))


# --------------------------------------------------------------------------------------------
# Git objects
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Diffs, the way GitHub's "files" endpoints show them
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------


@dataclass
class Installation:
    id: int
    account: str
    account_type: str = "Organization"
    repository_selection: str = "all"
    repositories: set[str] = field(default_factory=set)  # lower-case full names when "selected"
    permissions: dict[str, str] = field(default_factory=dict)
    suspended: bool = False


@dataclass
class IssuedToken:
    token: str
    installation_id: int
    expires_at: float
    permissions: dict[str, str]
    repositories: set[str] | None  # lower-case full names, or None = all of the installation's
    created_at: float


@dataclass
class Repo:
    id: int
    owner: str
    name: str
    private: bool = False
    default_branch: str = "main"
    fork_of: "Repo | None" = None
    owner_type: str = "Organization"
    store: GitStore = field(default_factory=GitStore)
    refs: dict[str, str] = field(default_factory=dict)
    permissions: dict[str, str] = field(default_factory=dict)  # login → admin|maintain|write|triage|read|none
    next_number: int = 1
    created_at: float = 0.0

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def key(self) -> str:
        return self.full_name.lower()

    def branch_sha(self, branch: str) -> str | None:
        return self.refs.get(f"refs/heads/{branch}")


@dataclass
class Issue:
    repo: Repo
    number: int
    title: str
    body: str | None
    user: str
    state: str = "open"
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class PullRequest:
    repo: Repo
    number: int
    id: int
    head_repo: Repo
    head_ref: str
    base_ref: str
    user: str
    title: str
    body: str | None
    draft: bool = False
    state: str = "open"
    merged: bool = False
    maintainer_can_modify: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0
    closed_at: float | None = None
    head_sha_fixed: str | None = None  # remembered when the head branch disappears
    base_sha_fixed: str | None = None

    @property
    def head_sha(self) -> str:
        return self.head_repo.branch_sha(self.head_ref) or self.head_sha_fixed or ZERO_SHA

    @property
    def base_sha(self) -> str:
        return self.repo.branch_sha(self.base_ref) or self.base_sha_fixed or ZERO_SHA


@dataclass
class IssueComment:
    id: int
    repo: Repo
    issue_number: int
    user: str
    body: str
    created_at: float
    updated_at: float
    via_app: bool = False
    reactions: list[dict] = field(default_factory=list)


@dataclass
class Review:
    id: int
    pr: PullRequest
    user: str
    body: str
    state: str  # APPROVED, CHANGES_REQUESTED, COMMENTED, PENDING, DISMISSED
    commit_id: str
    submitted_at: float | None


@dataclass
class ReviewComment:
    id: int
    pr: PullRequest
    review_id: int
    user: str
    body: str
    path: str
    commit_id: str
    line: int | None
    side: str | None
    start_line: int | None
    start_side: str | None
    position: int | None
    diff_hunk: str
    created_at: float
    updated_at: float
    in_reply_to_id: int | None = None
    subject_type: str = "line"
    reactions: list[dict] = field(default_factory=list)


@dataclass
class CheckRun:
    id: int
    repo: Repo
    name: str
    head_sha: str
    status: str
    conclusion: str | None
    started_at: float | None
    completed_at: float | None
    details_url: str | None
    external_id: str | None
    output: dict
    annotations: list[dict]
    actions: list[dict]
    check_suite_id: int
    app_id: int


@dataclass
class ActionsJob:
    id: int
    repo: Repo
    run_id: int
    name: str
    status: str
    conclusion: str | None
    head_sha: str
    head_branch: str | None
    log_text: str | None
    steps: list[dict]
    workflow_name: str
    run_attempt: int
    started_at: float
    completed_at: float | None
    labels: list[str]


@dataclass
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    json: Any
    status: int = 0
    auth: str | None = None  # "jwt", "token", None

    def __repr__(self) -> str:
        return f"<{self.method} {self.path} → {self.status}>"


@dataclass
class Violation:
    method: str
    path: str
    kind: str  # unknown-route, invalid-request, unknown-key, ...
    detail: str
    body: Any = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}: {self.kind}: {self.detail}"


@dataclass
class Fault:
    method: str
    path_regex: str
    status: int
    headers: dict[str, str] | None
    body: Any
    times: int
    hits: int = 0
    landed: bool = False  # the request takes effect, then this answer replaces GitHub's
    chance: float = 1.0  # of firing on a matching request, drawn from ``rng``
    rng: random.Random | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.times > 0 and self.method in ("*", method.upper())
                and re.search(self.path_regex, path) is not None
                and (self.chance >= 1.0 or (self.rng or random).random() < self.chance))


class GitHubState:
    """The simulated GitHub: app, installations, repositories and everything in them."""

    def __init__(self, *, app_id: int = 12345, app_slug: str = "prmedic", app_name: str = "prmedic",
                 app_owner: str = "prmedic-dev", app_private_key: str | bytes | None = None,
                 app_public_key: Any = None, client_id: str = "Iv1.0123456789abcdef",
                 permissions: dict[str, str] | None = None, events: list[str] | None = None,
                 clock: Callable[[], float] = time.time, rate_limit: int = 5000):
        self.app_id = app_id
        self.app_slug = app_slug
        self.app_name = app_name
        self.app_owner = app_owner
        self.client_id = client_id
        self.app_permissions = dict(permissions or DEFAULT_APP_PERMISSIONS)
        self.app_events = list(events or DEFAULT_APP_EVENTS)
        self.app_public_key = None
        if app_public_key is not None or app_private_key is not None:
            self.set_app_key(private_key=app_private_key, public_key=app_public_key)
        self.clock = clock
        self.time_offset = 0.0
        self.rate_limit = rate_limit
        self.installations: dict[int, Installation] = {}
        self.repos: dict[str, Repo] = {}
        self.repos_by_id: dict[int, Repo] = {}
        self.pulls: dict[tuple[str, int], PullRequest] = {}
        self.issues: dict[tuple[str, int], Issue] = {}
        self.issue_comments: dict[int, IssueComment] = {}
        self.reviews: dict[int, Review] = {}
        self.review_comments: dict[int, ReviewComment] = {}
        self.check_runs: dict[int, CheckRun] = {}
        self.check_suites: dict[tuple[str, str], int] = {}
        self.jobs: dict[int, ActionsJob] = {}
        self.other_apps: dict[int, str] = {}  # id → slug of Apps other than this one (check runs)
        self.users: dict[str, dict] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.tokens_issued: list[IssuedToken] = []
        self.requests: list[RequestRecord] = []
        self.violations: list[Violation] = []
        # Requests GitHub would refuse for semantic reasons (e.g. a review line outside the diff,
        # "Reference already exists"). Clients may legitimately meet these, so they do not fail a test.
        self.refusals: list[Violation] = []
        self.expect_violations = False
        self.faults: list[Fault] = []
        self.rate_buckets: dict[str, list[float]] = {}  # key → [used, reset]
        self._ids: dict[str, int] = {}
        self._diff_cache: dict[tuple[int, str | None, str], list[FileDiff]] = {}
        self._log_nonces: dict[str, int] = {}

    # ----- clock, ids, users -------------------------------------------------------------------

    def now(self) -> float:
        return self.clock() + self.time_offset

    def advance(self, seconds: float) -> None:
        """Move the simulated clock forward (tokens expire, rate-limit windows reset)."""
        self.time_offset += seconds

    def next_id(self, kind: str, start: int = 1000) -> int:
        self._ids[kind] = self._ids.get(kind, start) + 1
        return self._ids[kind]

    @property
    def bot_login(self) -> str:
        return f"{self.app_slug}[bot]"

    @property
    def bot_id(self) -> int:
        return 41898282 + self.app_id  # any stable number

    @property
    def bot_email(self) -> str:
        return f"{self.bot_id}+{self.bot_login}@users.noreply.github.com"

    def add_user(self, login: str, *, type: str = "User", id: int | None = None,
                 email: str | None = None) -> dict:
        if login in self.users:
            return self.users[login]
        uid = id if id is not None else (self.bot_id if login == self.bot_login else self.next_id("user", 5000))
        url = f"https://api.github.com/users/{quote(login)}"
        u = {"login": login, "id": uid, "node_id": node_id("U", uid),
             "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
             "gravatar_id": "", "url": url, "html_url": f"{HTML_BASE}/{quote(login)}",
             "followers_url": f"{url}/followers", "following_url": f"{url}/following{{/other_user}}",
             "gists_url": f"{url}/gists{{/gist_id}}", "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
             "subscriptions_url": f"{url}/subscriptions", "organizations_url": f"{url}/orgs",
             "repos_url": f"{url}/repos", "events_url": f"{url}/events{{/privacy}}",
             "received_events_url": f"{url}/received_events", "type": type, "user_view_type": "public",
             "site_admin": False, "_email": email or f"{uid}+{login}@users.noreply.github.com"}
        if login.endswith("[bot]"):
            u["type"] = "Bot"
        self.users[login] = u
        return u

    def user(self, login: str) -> dict:
        u = self.add_user(login)
        return {k: v for k, v in u.items() if not k.startswith("_")}

    def user_by_email(self, email: str) -> dict | None:
        for u in self.users.values():
            if u["_email"].lower() == email.lower():
                return self.user(u["login"])
        return None

    def set_app_key(self, *, private_key: str | bytes | None = None, public_key: Any = None) -> None:
        from cryptography.hazmat.primitives import serialization

        if public_key is None and private_key is not None:
            pk = serialization.load_pem_private_key(
                private_key.encode() if isinstance(private_key, str) else private_key, password=None)
            public_key = pk.public_key()
        if isinstance(public_key, (str, bytes)):
            public_key = serialization.load_pem_public_key(
                public_key.encode() if isinstance(public_key, str) else public_key)
        self.app_public_key = public_key

    # ----- set-up helpers ----------------------------------------------------------------------

    def add_installation(self, installation_id: int, account: str, *, account_type: str = "Organization",
                         repositories: Iterable[str] | None = None,
                         permissions: dict[str, str] | None = None) -> Installation:
        """``repositories=None`` means "all repositories" of ``account``; otherwise "owner/name"s
        (or bare names of the account's repositories)."""
        inst = Installation(installation_id, account, account_type,
                            "all" if repositories is None else "selected", set(),
                            dict(permissions or self.app_permissions))
        for r in repositories or []:
            full = r if "/" in r else f"{account}/{r}"
            inst.repositories.add(full.lower())
        self.installations[installation_id] = inst
        self.add_user(account, type=account_type)
        return inst

    def installation_repos(self, inst: Installation) -> list[Repo]:
        if inst.repository_selection == "all":
            return [r for r in self.repos.values() if r.owner.lower() == inst.account.lower()]
        return [self.repos[k] for k in sorted(inst.repositories) if k in self.repos]

    def add_repo(self, owner: str, name: str, *, id: int | None = None, default_branch: str | None = None,
                 private: bool = False, fork_of: "str | Repo | None" = None,
                 from_git: str | Path | None = None, owner_type: str | None = None,
                 installation_id: int | None = None) -> Repo:
        """Create a repository; ``from_git`` imports every object and branch/tag of a local repo.

        ``default_branch`` defaults to "main" (or, with ``from_git``, main/master if present, else the
        checked-out branch). A fork (``fork_of="owner/name"``) without ``from_git`` copies its parent's
        objects and branches."""
        parent = self.repo(fork_of) if fork_of is not None else None
        if owner_type is None:
            owner_type = next((i.account_type for i in self.installations.values()
                               if i.account.lower() == owner.lower()), "User" if parent else "Organization")
        rid = id if id is not None else self.next_id("repo", 100000)
        repo = Repo(rid, owner, name, private, default_branch or "main", parent, owner_type,
                    created_at=self.now())
        self.add_user(owner, type=owner_type)
        if from_git is not None:
            objects, refs, head = read_git_repo(from_git)
            repo.store.objects.update(objects)
            repo.refs.update(refs)
            if default_branch is None:  # main/master if present, else the checked-out branch
                repo.default_branch = next((b for b in ("main", "master") if f"refs/heads/{b}" in refs),
                                           head or "main")
        elif parent is not None:
            repo.store.objects.update(parent.store.objects)
            repo.refs.update({k: v for k, v in parent.refs.items() if k.startswith("refs/heads/")})
            if default_branch is None:
                repo.default_branch = parent.default_branch
        self.repos[repo.key] = repo
        self.repos_by_id[repo.id] = repo
        if installation_id is not None:
            inst = self.installations[installation_id]
            if inst.repository_selection == "selected":
                inst.repositories.add(repo.key)
        return repo

    def repo(self, r: "str | Repo") -> Repo:
        if isinstance(r, Repo):
            return r
        try:
            return self.repos[r.lower()]
        except KeyError:
            raise KeyError(f"no repository {r!r} in the simulator") from None

    def import_git(self, repo: "str | Repo", path: str | Path, *, refs: bool = True) -> None:
        """Import (more) objects, and optionally branches/tags, from a local git repository."""
        repo = self.repo(repo)
        objects, git_refs, _ = read_git_repo(path)
        repo.store.objects.update(objects)
        if refs:
            repo.refs.update(git_refs)

    def set_branch(self, repo: "str | Repo", branch: str, sha: str) -> None:
        self.repo(repo).refs[f"refs/heads/{branch}"] = sha

    def set_permission(self, repo: "str | Repo", user: str, permission: str) -> None:
        assert permission in ("admin", "maintain", "write", "triage", "read", "none"), permission
        self.repo(repo).permissions[user] = permission
        self.add_user(user)

    def add_file_content(self, repo: "str | Repo", path: str, content: str | bytes, *,
                         branch: str | None = None, message: str | None = None,
                         mode: str = "100644", author: str | None = None) -> str:
        """Commit one file on ``branch`` (default branch by default); returns the new commit sha.
        ``content=None`` is not supported; use :meth:`commit_files` with ``None`` to delete."""
        return self.commit_files(repo, {path: content}, branch=branch, message=message or f"Update {path}",
                                 mode=mode, author=author)

    def commit_files(self, repo: "str | Repo", files: dict[str, str | bytes | None], *,
                     branch: str | None = None, message: str = "Update files", mode: str = "100644",
                     author: str | None = None) -> str:
        repo = self.repo(repo)
        branch = branch or repo.default_branch
        parent = repo.branch_sha(branch) or repo.branch_sha(repo.default_branch)
        base_tree = repo.store.commit(parent).tree if parent else None
        entries = []
        for p, c in files.items():
            if c is None:
                entries.append({"path": p, "mode": mode, "type": "blob", "sha": None})
            else:
                data = c.encode() if isinstance(c, str) else c
                entries.append({"path": p, "mode": mode, "type": "blob", "sha": repo.store.put_blob(data)})
        tree = self.build_tree(repo, base_tree, entries)
        login = author or "octocat"
        u = self.add_user(login)
        sig = Signature(login, u["_email"], int(self.now()))
        sha = repo.store.put_commit(tree, [parent] if parent else [], sig, sig, message + "\n")
        repo.refs[f"refs/heads/{branch}"] = sha
        return sha

    def add_issue(self, repo: "str | Repo", number: int | None = None, *, title: str = "An issue",
                  body: str | None = None, user: str = "octocat") -> Issue:
        repo = self.repo(repo)
        number = number if number is not None else repo.next_number
        repo.next_number = max(repo.next_number, number + 1)
        issue = Issue(repo, number, title, body, user, "open", self.now(), self.now())
        self.issues[(repo.key, number)] = issue
        self.add_user(user)
        return issue

    def add_pull_request(self, repo: "str | Repo", number: int | None = None, *, head_ref: str,
                         base_ref: str | None = None, user: str = "octocat", head_repo: "str | Repo | None" = None,
                         title: str | None = None, body: str | None = "", draft: bool = False,
                         state: str = "open") -> PullRequest:
        """A pull request from ``head_repo:head_ref`` (default: same repo) into ``base_ref``."""
        repo = self.repo(repo)
        hrepo = self.repo(head_repo) if head_repo is not None else repo
        base_ref = base_ref or repo.default_branch
        if hrepo.branch_sha(head_ref) is None:
            raise ValueError(f"{hrepo.full_name} has no branch {head_ref!r}")
        if repo.branch_sha(base_ref) is None:
            raise ValueError(f"{repo.full_name} has no branch {base_ref!r}")
        number = number if number is not None else repo.next_number
        repo.next_number = max(repo.next_number, number + 1)
        if hrepo is not repo:  # GitHub makes the fork's commits reachable in the base repository
            repo.store.objects.update(hrepo.store.objects)
        now = self.now()
        pr = PullRequest(repo, number, self.next_id("pull", 2000000), hrepo, head_ref, base_ref, user,
                         title or f"Change {head_ref}", body, draft, state, created_at=now, updated_at=now,
                         head_sha_fixed=hrepo.branch_sha(head_ref), base_sha_fixed=repo.branch_sha(base_ref))
        if state != "open":
            pr.closed_at = now
        repo.refs[f"refs/pull/{number}/head"] = pr.head_sha
        self.pulls[(repo.key, number)] = pr
        self.issues[(repo.key, number)] = Issue(repo, number, pr.title, body, user, state, now, now)
        self.add_user(user)
        return pr

    def pull(self, repo: "str | Repo", number: int) -> PullRequest:
        return self.pulls[(self.repo(repo).key, number)]

    def add_actions_job(self, repo: "str | Repo", job_id: int, run_id: int, name: str,
                        conclusion: str | None, log_text: str | None, head_sha: str, *,
                        status: str = "completed", steps: list[dict] | None = None,
                        workflow_name: str = "CI", head_branch: str | None = None,
                        run_attempt: int = 1, labels: list[str] | None = None) -> ActionsJob:
        repo = self.repo(repo)
        now = self.now()
        job = ActionsJob(job_id, repo, run_id, name, status, conclusion, head_sha, head_branch, log_text,
                         steps if steps is not None else [
                             {"name": "Set up job", "status": "completed", "conclusion": "success",
                              "number": 1, "started_at": iso(now - 60), "completed_at": iso(now - 59)},
                             {"name": "Run tests", "status": status, "conclusion": conclusion,
                              "number": 2, "started_at": iso(now - 59),
                              "completed_at": iso(now) if status == "completed" else None}],
                         workflow_name, run_attempt, now - 60, now if status == "completed" else None,
                         labels or ["ubuntu-latest"])
        self.jobs[job_id] = job
        return job

    def add_check_run(self, repo: "str | Repo", name: str, head_sha: str, *, conclusion: str | None = "failure",
                      status: str = "completed", app_slug: str = "github-actions", app_id: int = 15368,
                      id: int | None = None, output: dict | None = None, annotations: list[dict] | None = None,
                      details_url: str | None = None) -> CheckRun:
        """A check run made by another App (GitHub Actions by default: give it its job's id)."""
        repo = self.repo(repo)
        self.other_apps.setdefault(app_id, app_slug)
        suite = self.check_suites.setdefault((repo.key, head_sha), self.next_id("check_suite", 7000000))
        now = self.now()
        out = {"title": None, "summary": None, "text": None, **(output or {})}
        anns = [dict(a, blob_href=f"{HTML_BASE}/{repo.full_name}/blob/{head_sha}/{a['path']}")
                for a in annotations or []]
        run = CheckRun(id if id is not None else self.next_id("check_run", 6000000), repo, name, head_sha, status,
                       conclusion, now - 30, now if status == "completed" else None, details_url, None, out, anns,
                       [], suite, app_id)
        self.check_runs[run.id] = run
        return run

    def issue_token(self, installation_id: int = 1, *, repositories: Iterable[str] | None = None,
                    permissions: dict[str, str] | None = None, ttl: float = 3600) -> str:
        """Mint an installation token directly (bypassing the App JWT flow)."""
        inst = self.installations[installation_id]
        repos = None
        if repositories is not None:
            repos = {(r if "/" in r else f"{inst.account}/{r}").lower() for r in repositories}
        tok = IssuedToken("ghs_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36)),
                          installation_id, self.now() + ttl, dict(permissions or inst.permissions), repos, self.now())
        self.tokens[tok.token] = tok
        return tok.token

    # ----- fault injection ---------------------------------------------------------------------

    def inject_fault(self, method: str, path_regex: str, status: int, headers: dict[str, str] | None = None,
                     body: Any = None, times: int = 1, *, landed: bool = False, chance: float = 1.0,
                     seed: int | None = None) -> Fault:
        """The next ``times`` requests matching ``method`` ("*" = any) and ``path_regex``
        (``re.search`` on the URL path) get this answer instead of the real one. ``landed``: the
        request is carried out first (GitHub answering 502 after it made the review). ``chance``:
        each matching request is hit with this probability, from a generator seeded with ``seed``."""
        f = Fault(method.upper(), path_regex, status, headers, body, times, landed=landed, chance=chance,
                  rng=random.Random(seed))
        self.faults.append(f)
        return f

    def inject_secondary_rate_limit(self, method: str, path_regex: str, retry_after: int = 1,
                                    times: int = 1) -> Fault:
        return self.inject_fault(method, path_regex, 403, {"Retry-After": str(retry_after)}, error_body(
            403, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                 "If you reach out to GitHub Support for help, please include the request ID."), times)

    def inject_primary_rate_limit(self, method: str, path_regex: str, reset_in: int = 60,
                                  times: int = 1) -> Fault:
        return self.inject_fault(method, path_regex, 403, {
            "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(self.now()) + reset_in)},
            error_body(403, "API rate limit exceeded for installation ID 1. If you reach out to GitHub "
                            "Support for help, please include the request ID."), times)

    def inject_too_many_requests(self, method: str, path_regex: str, retry_after: int = 1,
                                 times: int = 1) -> Fault:
        return self.inject_fault(method, path_regex, 429, {"Retry-After": str(retry_after)},
                                 error_body(429, "Too Many Requests"), times)

    # ----- queries for tests -------------------------------------------------------------------

    def calls(self, method: str | None = None, path_regex: str | None = None) -> list[RequestRecord]:
        return [r for r in self.requests
                if (method is None or r.method == method.upper())
                and (path_regex is None or re.search(path_regex, r.path))]

    def count(self, method: str | None = None, path_regex: str | None = None) -> int:
        return len(self.calls(method, path_regex))

    def api_calls(self) -> list[RequestRecord]:
        """Requests to the API proper (not the log-download redirects' targets)."""
        return [r for r in self.requests if not r.path.startswith("/_sim/")]

    def resolve(self, repo: "str | Repo", ref: str) -> str | None:
        """A commit sha for a sha, short sha, branch, tag or "heads/…"/"refs/…" name."""
        repo = self.repo(repo)
        if re.fullmatch(r"[0-9a-f]{40}", ref) and repo.store.kind(ref):
            return repo.store.peel(ref)
        for cand in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}", f"refs/{ref}"):
            if cand in repo.refs:
                return repo.store.peel(repo.refs[cand])
        if re.fullmatch(r"[0-9a-f]{7,39}", ref):
            hits = [s for s in repo.store.objects if s.startswith(ref)]
            if len(hits) == 1:
                return repo.store.peel(hits[0])
        return None

    def files_at(self, repo: "str | Repo", ref: str) -> dict[str, bytes]:
        """Every file of ``ref``'s tree: path → content (for asserting what the app pushed)."""
        repo = self.repo(repo)
        sha = self.resolve(repo, ref)
        if sha is None:
            raise KeyError(ref)
        commit = repo.store.commit(sha)
        return {p: repo.store.data(s) or b"" for p, (m, s) in repo.store.flatten(commit.tree).items()}

    def read_file(self, repo: "str | Repo", ref: str, path: str) -> bytes | None:
        return self.files_at(repo, ref).get(path)

    def review_comments_of(self, repo: "str | Repo", number: int) -> list[ReviewComment]:
        key = self.repo(repo).key
        return [c for c in self.review_comments.values() if c.pr.repo.key == key and c.pr.number == number]

    def issue_comments_of(self, repo: "str | Repo", number: int) -> list[IssueComment]:
        key = self.repo(repo).key
        return [c for c in self.issue_comments.values() if c.repo.key == key and c.issue_number == number]

    def reviews_of(self, repo: "str | Repo", number: int) -> list[Review]:
        key = self.repo(repo).key
        return [r for r in self.reviews.values() if r.pr.repo.key == key and r.pr.number == number]

    def check_runs_for(self, repo: "str | Repo", head_sha: str | None = None) -> list[CheckRun]:
        key = self.repo(repo).key
        return [c for c in self.check_runs.values()
                if c.repo.key == key and (head_sha is None or c.head_sha == head_sha)]

    # ----- git operations shared by handlers and helpers ---------------------------------------

    def build_tree(self, repo: Repo, base_tree: str | None, entries: list[dict]) -> str:
        """GitHub's "create a tree": nested paths, ``sha: null`` deletes, ``content`` makes a blob."""
        store = repo.store

        class Node:
            __slots__ = ("mode", "sha", "children")

            def __init__(self, mode: str, sha: str | None, children: dict | None):
                self.mode, self.sha, self.children = mode, sha, children

        def load(sha: str | None) -> dict[str, Node]:
            return {e.name: Node(e.mode, e.sha, None) for e in (store.tree(sha) if sha else [])}

        root = Node("40000", base_tree, load(base_tree))
        for i, ent in enumerate(entries):
            path = ent.get("path") or ""
            parts = path.split("/")
            if not path or any(p in ("", ".", "..", ".git") for p in parts):
                raise HTTPError(422, "tree.path contains a malformed path component",
                                [{"resource": "Tree", "field": f"tree.{i}.path", "code": "invalid"}])
            mode = ent.get("mode")
            kind = ent.get("type")
            git_mode = "40000" if mode == "040000" else mode
            expect = {"40000": "tree", "160000": "commit"}.get(git_mode, "blob")
            if kind != expect:
                raise HTTPError(422, f"Invalid tree info: mode {mode} does not match type {kind}",
                                [{"resource": "Tree", "field": f"tree.{i}.type", "code": "invalid"}])
            has_sha = "sha" in ent
            sha = ent.get("sha")
            if has_sha and "content" in ent:
                raise HTTPError(422, "Only one of tree.sha or tree.content may be given")
            if not has_sha and "content" not in ent:
                raise HTTPError(422, "Must supply either tree.sha or tree.content")
            if "content" in ent:
                if kind != "blob":
                    raise HTTPError(422, "tree.content is only allowed for blobs")
                sha = store.put_blob(ent["content"].encode())
            elif sha is not None:
                if not re.fullmatch(r"[0-9a-f]{40}", sha):
                    raise HTTPError(422, f"tree.sha {sha} is not a valid {kind}")
                if kind != "commit" and store.kind(sha) != kind:
                    raise HTTPError(422, f"tree.sha {sha} is not a valid {kind}")
            node = root
            for part in parts[:-1]:
                child = node.children.get(part)
                if child is None or child.mode != "40000":
                    if sha is None:  # deleting under a missing directory: nothing to do
                        node = None
                        break
                    child = Node("40000", None, {})
                    node.children[part] = child
                if child.children is None:
                    child.children = load(child.sha)
                node = child
            if node is None:
                continue
            if sha is None:
                node.children.pop(parts[-1], None)
            else:
                node.children[parts[-1]] = Node(git_mode, sha, None)

        def write(node: Node) -> str | None:
            if node.children is None:
                return node.sha
            out = []
            for name, child in node.children.items():
                csha = write(child)
                if csha is None:
                    continue
                out.append(TreeEntry(child.mode, name, csha))
            if not out and node is not root:
                return None  # git never stores empty directories
            return store.put_tree(out)

        return write(root) or store.put_tree([])

    def sync_pull(self, pr: PullRequest) -> None:
        """Make a fork's newest head commits reachable in the base repository (as GitHub does)."""
        if pr.head_repo is not pr.repo and pr.repo.store.kind(pr.head_sha) is None:
            pr.repo.store.objects.update(pr.head_repo.store.objects)
        if pr.state == "open":
            pr.repo.refs[f"refs/pull/{pr.number}/head"] = pr.head_sha

    def pr_diff(self, pr: PullRequest, head_sha: str | None = None) -> tuple[str | None, list[FileDiff]]:
        self.sync_pull(pr)
        head = head_sha or pr.head_sha
        store = pr.repo.store
        base = store.merge_base(pr.base_sha, head)
        return base, self.diff(pr.repo, base, head)

    def diff(self, repo: Repo, base_sha: str | None, head_sha: str) -> list[FileDiff]:
        key = (repo.id, base_sha, head_sha)
        if key not in self._diff_cache:
            store = repo.store
            base_tree = store.commit(base_sha).tree if base_sha else None
            self._diff_cache[key] = diff_trees(store, base_tree, store.commit(head_sha).tree)
        return self._diff_cache[key]


# --------------------------------------------------------------------------------------------
# JSON renderers
# --------------------------------------------------------------------------------------------


_REPO_URLS = {
    "archive_url": "/{archive_format}{/ref}", "assignees_url": "/assignees{/user}",
    "blobs_url": "/git/blobs{/sha}", "branches_url": "/branches{/branch}",
    "collaborators_url": "/collaborators{/collaborator}", "comments_url": "/comments{/number}",
    "commits_url": "/commits{/sha}", "compare_url": "/compare/{base}...{head}", "contents_url": "/contents/{+path}",
    "contributors_url": "/contributors", "deployments_url": "/deployments", "downloads_url": "/downloads",
    "events_url": "/events", "forks_url": "/forks", "git_commits_url": "/git/commits{/sha}",
    "git_refs_url": "/git/refs{/sha}", "git_tags_url": "/git/tags{/sha}", "hooks_url": "/hooks",
    "issue_comment_url": "/issues/comments{/number}", "issue_events_url": "/issues/events{/number}",
    "issues_url": "/issues{/number}", "keys_url": "/keys{/key_id}", "labels_url": "/labels{/name}",
    "languages_url": "/languages", "merges_url": "/merges", "milestones_url": "/milestones{/number}",
    "notifications_url": "/notifications{?since,all,participating}", "pulls_url": "/pulls{/number}",
    "releases_url": "/releases{/id}", "stargazers_url": "/stargazers", "statuses_url": "/statuses/{sha}",
    "subscribers_url": "/subscribers", "subscription_url": "/subscription", "tags_url": "/tags",
    "teams_url": "/teams", "trees_url": "/git/trees{/sha}",
}


class Render:
    def __init__(self, state: GitHubState, api: str):
        self.s = state
        self.api = api.rstrip("/")

    def repo_url(self, repo: Repo) -> str:
        return f"{self.api}/repos/{repo.full_name}"

    def repo(self, repo: Repo, *, full: bool = True) -> dict:
        s = self.s
        url = self.repo_url(repo)
        out = {
            "id": repo.id, "node_id": node_id("R", repo.id), "name": repo.name, "full_name": repo.full_name,
            "private": repo.private, "owner": s.user(repo.owner), "html_url": f"{HTML_BASE}/{repo.full_name}",
            "description": None, "fork": repo.fork_of is not None, "url": url,
            "git_url": f"git://github.com/{repo.full_name}.git", "ssh_url": f"git@github.com:{repo.full_name}.git",
            "clone_url": f"{HTML_BASE}/{repo.full_name}.git", "svn_url": f"{HTML_BASE}/{repo.full_name}",
            "mirror_url": None, "homepage": None, "default_branch": repo.default_branch,
            "visibility": "private" if repo.private else "public", "archived": False, "disabled": False,
            "created_at": iso(repo.created_at), "updated_at": iso(repo.created_at),
            "pushed_at": iso(repo.created_at), "size": 0, "language": None, "license": None, "topics": [],
            "has_issues": True, "has_projects": True, "has_wiki": True, "has_pages": False,
            "has_downloads": True, "has_discussions": False, "allow_forking": True, "is_template": False,
            "forks": 0, "forks_count": 0, "open_issues": 0, "open_issues_count": 0, "stargazers_count": 0,
            "watchers": 0, "watchers_count": 0, "network_count": 0, "subscribers_count": 0,
        }
        for k, suffix in _REPO_URLS.items():
            out[k] = url + suffix
        if full and repo.fork_of is not None:
            out["parent"] = self.repo(repo.fork_of, full=False)
            root = repo.fork_of
            while root.fork_of is not None:
                root = root.fork_of
            out["source"] = self.repo(root, full=False)
        return out

    def commit_api(self, repo: Repo, sha: str) -> dict:
        """A git commit object (GET git/commits/{sha})."""
        c = repo.store.commit(sha)
        url = self.repo_url(repo)
        return {
            "sha": sha, "node_id": node_id("C", sha), "url": f"{url}/git/commits/{sha}",
            "html_url": f"{HTML_BASE}/{repo.full_name}/commit/{sha}",
            "author": c.author.api(), "committer": c.committer.api(), "message": c.message,
            "tree": {"sha": c.tree, "url": f"{url}/git/trees/{c.tree}"},
            "parents": [{"sha": p, "url": f"{url}/git/commits/{p}",
                         "html_url": f"{HTML_BASE}/{repo.full_name}/commit/{p}"} for p in c.parents],
            "verification": {"verified": False, "reason": "unsigned", "signature": c.signature,
                             "payload": None, "verified_at": None},
        }

    def commit_rest(self, repo: Repo, sha: str) -> dict:
        """A commit as the commits/compare/pulls-commits endpoints show it."""
        c = repo.store.commit(sha)
        url = self.repo_url(repo)
        return {
            "sha": sha, "node_id": node_id("C", sha), "url": f"{url}/commits/{sha}",
            "html_url": f"{HTML_BASE}/{repo.full_name}/commit/{sha}", "comments_url": f"{url}/commits/{sha}/comments",
            "commit": {"author": c.author.api(), "committer": c.committer.api(), "message": c.message,
                       "tree": {"sha": c.tree, "url": f"{url}/git/trees/{c.tree}"},
                       "url": f"{url}/git/commits/{sha}", "comment_count": 0,
                       "verification": {"verified": False, "reason": "unsigned", "signature": None,
                                        "payload": None, "verified_at": None}},
            "author": self.s.user_by_email(c.author.email), "committer": self.s.user_by_email(c.committer.email),
            "parents": [{"sha": p, "url": f"{url}/commits/{p}",
                         "html_url": f"{HTML_BASE}/{repo.full_name}/commit/{p}"} for p in c.parents],
        }

    def file(self, repo: Repo, d: FileDiff, head_sha: str) -> dict:
        url = self.repo_url(repo)
        sha = d.new_sha or d.old_sha
        ref = head_sha
        out = {
            "sha": sha, "filename": d.filename, "status": d.status, "additions": d.additions,
            "deletions": d.deletions, "changes": d.additions + d.deletions,
            "blob_url": f"{HTML_BASE}/{repo.full_name}/blob/{ref}/{quote(d.filename)}",
            "raw_url": f"{HTML_BASE}/{repo.full_name}/raw/{ref}/{quote(d.filename)}",
            "contents_url": f"{url}/contents/{quote(d.filename)}?ref={ref}",
        }
        if d.patch is not None:
            out["patch"] = d.patch
        if d.status == "renamed":
            out["previous_filename"] = d.old_path
        return out

    def branch_side(self, repo: Repo, ref: str, sha: str) -> dict:
        return {"label": f"{repo.owner}:{ref}", "ref": ref, "sha": sha, "user": self.s.user(repo.owner),
                "repo": self.repo(repo, full=False)}

    def pull(self, pr: PullRequest, *, full: bool = True) -> dict:
        s = self.s
        url = f"{self.repo_url(pr.repo)}/pulls/{pr.number}"
        html = f"{HTML_BASE}/{pr.repo.full_name}/pull/{pr.number}"
        issue_url = f"{self.repo_url(pr.repo)}/issues/{pr.number}"
        out = {
            "url": url, "id": pr.id, "node_id": node_id("PR", pr.id), "html_url": html,
            "diff_url": html + ".diff", "patch_url": html + ".patch", "issue_url": issue_url,
            "commits_url": url + "/commits", "review_comments_url": url + "/comments",
            "review_comment_url": f"{self.repo_url(pr.repo)}/pulls/comments{{/number}}",
            "comments_url": issue_url + "/comments",
            "statuses_url": f"{self.repo_url(pr.repo)}/statuses/{pr.head_sha}",
            "number": pr.number, "state": pr.state, "locked": False, "title": pr.title, "user": s.user(pr.user),
            "body": pr.body, "labels": [], "milestone": None, "active_lock_reason": None,
            "created_at": iso(pr.created_at), "updated_at": iso(pr.updated_at),
            "closed_at": iso(pr.closed_at) if pr.closed_at else None, "merged_at": None,
            "merge_commit_sha": None, "assignee": None, "assignees": [], "requested_reviewers": [],
            "requested_teams": [],
            "head": self.branch_side(pr.head_repo, pr.head_ref, pr.head_sha),
            "base": self.branch_side(pr.repo, pr.base_ref, pr.base_sha),
            "_links": {"self": {"href": url}, "html": {"href": html}, "issue": {"href": issue_url},
                       "comments": {"href": issue_url + "/comments"},
                       "review_comments": {"href": url + "/comments"},
                       "review_comment": {"href": f"{self.repo_url(pr.repo)}/pulls/comments{{/number}}"},
                       "commits": {"href": url + "/commits"},
                       "statuses": {"href": f"{self.repo_url(pr.repo)}/statuses/{pr.head_sha}"}},
            "author_association": self.association(pr.repo, pr.user), "auto_merge": None, "draft": pr.draft,
        }
        if full:
            base, files = s.pr_diff(pr)
            commits = pr.repo.store.commits_between(base, pr.head_sha)
            out.update({
                "merged": pr.merged, "mergeable": True if pr.state == "open" else None, "rebaseable": True,
                "mergeable_state": "clean", "merged_by": None,
                "comments": len(s.issue_comments_of(pr.repo, pr.number)),
                "review_comments": len(s.review_comments_of(pr.repo, pr.number)),
                "maintainer_can_modify": pr.maintainer_can_modify, "commits": len(commits),
                "additions": sum(f.additions for f in files), "deletions": sum(f.deletions for f in files),
                "changed_files": len(files),
            })
        return out

    def association(self, repo: Repo, login: str) -> str:
        if login.lower() == repo.owner.lower():
            return "OWNER"
        perm = repo.permissions.get(login)
        if perm and perm != "none":
            return "COLLABORATOR"
        if login == self.s.bot_login:
            return "NONE"
        return "CONTRIBUTOR" if any(p.user == login and p.repo is repo for p in self.s.pulls.values()) else "NONE"

    def reactions_rollup(self, url: str, reactions: list[dict]) -> dict:
        out = {"url": url, "total_count": len(reactions)}
        for r in REACTIONS:
            out[r] = sum(1 for x in reactions if x["content"] == r)
        return out

    def issue_comment(self, c: IssueComment) -> dict:
        url = f"{self.repo_url(c.repo)}/issues/comments/{c.id}"
        issue_html = f"{HTML_BASE}/{c.repo.full_name}/{'pull' if (c.repo.key, c.issue_number) in self.s.pulls else 'issues'}/{c.issue_number}"
        return {
            "id": c.id, "node_id": node_id("IC", c.id), "url": url, "html_url": f"{issue_html}#issuecomment-{c.id}",
            "body": c.body, "user": self.s.user(c.user), "created_at": iso(c.created_at),
            "updated_at": iso(c.updated_at), "issue_url": f"{self.repo_url(c.repo)}/issues/{c.issue_number}",
            "author_association": self.association(c.repo, c.user),
            "performed_via_github_app": self.app() if c.via_app else None,
            "reactions": self.reactions_rollup(url + "/reactions", c.reactions),
        }

    def review(self, r: Review) -> dict:
        pr_url = f"{self.repo_url(r.pr.repo)}/pulls/{r.pr.number}"
        html = f"{HTML_BASE}/{r.pr.repo.full_name}/pull/{r.pr.number}#pullrequestreview-{r.id}"
        out = {"id": r.id, "node_id": node_id("PRR", r.id), "user": self.s.user(r.user), "body": r.body,
               "state": r.state, "html_url": html, "pull_request_url": pr_url,
               "_links": {"html": {"href": html}, "pull_request": {"href": pr_url}},
               "commit_id": r.commit_id, "author_association": self.association(r.pr.repo, r.user)}
        if r.submitted_at is not None:
            out["submitted_at"] = iso(r.submitted_at)
        return out

    def review_comment(self, c: ReviewComment) -> dict:
        repo_url = self.repo_url(c.pr.repo)
        url = f"{repo_url}/pulls/comments/{c.id}"
        pr_url = f"{repo_url}/pulls/{c.pr.number}"
        html = f"{HTML_BASE}/{c.pr.repo.full_name}/pull/{c.pr.number}#discussion_r{c.id}"
        out = {
            "url": url, "pull_request_review_id": c.review_id, "id": c.id, "node_id": node_id("PRRC", c.id),
            "diff_hunk": c.diff_hunk, "path": c.path, "position": c.position, "original_position": c.position,
            "commit_id": c.commit_id, "original_commit_id": c.commit_id, "user": self.s.user(c.user),
            "body": c.body, "created_at": iso(c.created_at), "updated_at": iso(c.updated_at), "html_url": html,
            "pull_request_url": pr_url, "author_association": self.association(c.pr.repo, c.user),
            "_links": {"self": {"href": url}, "html": {"href": html}, "pull_request": {"href": pr_url}},
            "start_line": c.start_line, "original_start_line": c.start_line,
            "start_side": c.start_side if c.start_line else None, "line": c.line, "original_line": c.line,
            "side": c.side, "subject_type": c.subject_type,
            "reactions": self.reactions_rollup(url + "/reactions", c.reactions),
        }
        if c.in_reply_to_id is not None:
            out["in_reply_to_id"] = c.in_reply_to_id
        return out

    def app(self) -> dict:
        s = self.s
        return {
            "id": s.app_id, "slug": s.app_slug, "node_id": node_id("A", s.app_id), "client_id": s.client_id,
            "owner": s.user(s.app_owner), "name": s.app_name, "description": "",
            "external_url": f"https://{s.app_slug}.example", "html_url": f"{HTML_BASE}/apps/{s.app_slug}",
            "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
            "permissions": dict(s.app_permissions), "events": list(s.app_events),
            "installations_count": len(s.installations),
        }

    def app_for(self, app_id: int) -> dict:
        if app_id == self.s.app_id or app_id not in self.s.other_apps:
            return self.app()
        slug = self.s.other_apps[app_id]
        return {**self.app(), "id": app_id, "slug": slug, "node_id": node_id("A", app_id), "name": slug,
                "client_id": f"Iv1.{app_id:016x}", "html_url": f"{HTML_BASE}/apps/{slug}"}

    def check_run(self, c: CheckRun) -> dict:
        url = f"{self.repo_url(c.repo)}/check-runs/{c.id}"
        html = f"{HTML_BASE}/{c.repo.full_name}/runs/{c.id}"
        prs = [p for p in self.s.pulls.values()
               if p.repo is c.repo and p.head_repo is c.repo and p.state == "open" and p.head_sha == c.head_sha]
        return {
            "id": c.id, "head_sha": c.head_sha, "node_id": node_id("CR", c.id), "external_id": c.external_id,
            "url": url, "html_url": html, "details_url": c.details_url or html, "status": c.status,
            "conclusion": c.conclusion, "started_at": iso(c.started_at) if c.started_at else None,
            "completed_at": iso(c.completed_at) if c.completed_at else None,
            "output": {"title": c.output.get("title"), "summary": c.output.get("summary"),
                       "text": c.output.get("text"), "annotations_count": len(c.annotations),
                       "annotations_url": url + "/annotations"},
            "name": c.name, "check_suite": {"id": c.check_suite_id}, "app": self.app_for(c.app_id),
            "pull_requests": [{"url": f"{self.repo_url(p.repo)}/pulls/{p.number}", "id": p.id, "number": p.number,
                               "head": {"ref": p.head_ref, "sha": p.head_sha,
                                        "repo": {"id": p.head_repo.id, "url": self.repo_url(p.head_repo),
                                                 "name": p.head_repo.name}},
                               "base": {"ref": p.base_ref, "sha": p.base_sha,
                                        "repo": {"id": p.repo.id, "url": self.repo_url(p.repo),
                                                 "name": p.repo.name}}} for p in prs],
            "actions": c.actions,
        }

    def job(self, j: ActionsJob) -> dict:
        url = f"{self.repo_url(j.repo)}/actions/jobs/{j.id}"
        return {
            "id": j.id, "run_id": j.run_id, "run_url": f"{self.repo_url(j.repo)}/actions/runs/{j.run_id}",
            "run_attempt": j.run_attempt, "node_id": node_id("CR", j.id), "head_sha": j.head_sha, "url": url,
            "html_url": f"{HTML_BASE}/{j.repo.full_name}/actions/runs/{j.run_id}/job/{j.id}",
            "status": j.status, "conclusion": j.conclusion, "created_at": iso(j.started_at),
            "started_at": iso(j.started_at), "completed_at": iso(j.completed_at) if j.completed_at else None,
            "name": j.name, "steps": j.steps, "check_run_url": f"{self.repo_url(j.repo)}/check-runs/{j.id}",
            "labels": j.labels, "runner_id": 1, "runner_name": "GitHub Actions 1", "runner_group_id": 1,
            "runner_group_name": "GitHub Actions", "workflow_name": j.workflow_name, "head_branch": j.head_branch,
        }


# --------------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------------

# Path parameters that may contain slashes (GitHub's "x-multi-segment").
MULTI_SEGMENT = {"path", "ref", "basehead"}


@dataclass
class Route:
    method: str
    template: str
    handler: Callable
    auth: str  # "jwt", "token" (installation token, no repo), "repo" (installation token + repo)
    perms: list[tuple[str, str]] | None  # alternatives: any one (permission, level) suffices
    regex: re.Pattern = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        def sub(m: re.Match) -> str:
            name = m.group(1)
            return f"(?P<{name}>.+)" if name in MULTI_SEGMENT else f"(?P<{name}>[^/]+)"

        self.regex = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", sub, re.escape(self.template)) + "$")


@dataclass
class Ctx:
    request: web.Request
    state: GitHubState
    render: Render
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    repo: Repo | None = None
    token: IssuedToken | None = None
    base_url: str = ""


ROUTES: list[Route] = []


def route(method: str, template: str, *, auth: str = "repo", perms: list[tuple[str, str]] | None = None):
    def deco(fn: Callable) -> Callable:
        ROUTES.append(Route(method, template, fn, auth, perms))
        return fn

    return deco


def find_route(method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """(route, params, path_known). path_known: some route has that path with another method."""
    path_known = False
    for r in ROUTES:
        m = r.regex.match(path)
        if m:
            if r.method == method:
                return r, {k: unquote(v) for k, v in m.groupdict().items()}, True
            path_known = True
    return None, {}, path_known


def paginate(ctx: Ctx, items: list, *, default: int = 30, max_per_page: int = 100) -> tuple[list, dict]:
    try:
        per_page = int(ctx.query.get("per_page", default))
    except ValueError:
        per_page = default
    per_page = default if per_page < 1 else min(per_page, max_per_page)
    try:
        page = max(int(ctx.query.get("page", 1)), 1)
    except ValueError:
        page = 1
    last = max(1, math.ceil(len(items) / per_page))
    chunk = items[(page - 1) * per_page: page * per_page]
    links = []

    def link(p: int, rel: str) -> str:
        q = dict(ctx.query)
        q["per_page"] = str(per_page)
        q["page"] = str(p)
        return f'<{ctx.base_url}{ctx.request.rel_url.raw_path}?{urlencode(q)}>; rel="{rel}"'

    if page > 1:
        links.append(link(page - 1, "prev"))
    if page < last:
        links.append(link(page + 1, "next"))
        links.append(link(last, "last"))
    if page > 1:
        links.append(link(1, "first"))
    return chunk, ({"Link": ", ".join(links)} if links else {})


def _pr_or_404(ctx: Ctx, number: str) -> PullRequest:
    pr = ctx.state.pulls.get((ctx.repo.key, int(number)))
    if pr is None:
        raise not_found()
    ctx.state.sync_pull(pr)
    return pr


def _commit_or(ctx: Ctx, sha: str, status: int = 404, message: str = "Not Found") -> str:
    if ctx.repo.store.kind(sha) != "commit":
        raise HTTPError(status, message)
    return sha


# ----- App ----------------------------------------------------------------------------------


@route("GET", "/app", auth="jwt")
def get_app(ctx: Ctx):
    return 200, ctx.render.app()


@route("POST", "/app/installations/{installation_id}/access_tokens", auth="jwt")
def create_token(ctx: Ctx):
    s = ctx.state
    inst = s.installations.get(int(ctx.params["installation_id"]))
    if inst is None:
        raise not_found()
    if inst.suspended:
        raise HTTPError(403, "This installation has been suspended")
    body = ctx.body or {}
    available = {r.key: r for r in s.installation_repos(inst)}
    selected: set[str] | None = None
    if body.get("repositories") or body.get("repository_ids"):
        selected = set()
        for name in body.get("repositories") or []:
            key = (name if "/" in name else f"{inst.account}/{name}").lower()
            if key not in available:
                raise HTTPError(422, "There is at least one repository that does not exist or is not "
                                     "accessible to the parent installation.")
            selected.add(key)
        for rid in body.get("repository_ids") or []:
            r = s.repos_by_id.get(rid)
            if r is None or r.key not in available:
                raise HTTPError(422, "There is at least one repository that does not exist or is not "
                                     "accessible to the parent installation.")
            selected.add(r.key)
        if len(selected) > 500:
            raise HTTPError(422, "Too many repositories")
    perms = dict(inst.permissions)
    if body.get("permissions"):
        for k, v in body["permissions"].items():
            if PERM_LEVEL.get(v, 0) > PERM_LEVEL.get(inst.permissions.get(k, "none"), 0):
                raise HTTPError(422, "The permissions requested are not granted to this installation.")
        perms = dict(body["permissions"])
        perms.setdefault("metadata", "read")
    token = s.issue_token(inst.id, permissions=perms)
    tok = s.tokens[token]
    tok.repositories = selected
    s.tokens_issued.append(tok)
    out = {"token": token, "expires_at": iso(tok.expires_at), "permissions": perms,
           "repository_selection": "selected" if selected is not None else inst.repository_selection}
    if selected is not None:
        out["repositories"] = [ctx.render.repo(available[k], full=False) for k in sorted(selected)]
    return 201, out


@route("GET", "/installation/repositories", auth="token")
def installation_repositories(ctx: Ctx):
    s = ctx.state
    inst = s.installations[ctx.token.installation_id]
    repos = [r for r in s.installation_repos(inst)
             if ctx.token.repositories is None or r.key in ctx.token.repositories]
    chunk, headers = paginate(ctx, repos)
    return 200, {"total_count": len(repos), "repositories": [ctx.render.repo(r, full=False) for r in chunk],
                 "repository_selection": "selected" if ctx.token.repositories is not None
                 else inst.repository_selection}, headers


# ----- Repository, contents, collaborators ---------------------------------------------------


@route("GET", "/repos/{owner}/{repo}", perms=[("metadata", "read")])
def get_repo(ctx: Ctx):
    return 200, ctx.render.repo(ctx.repo)


@route("GET", "/repos/{owner}/{repo}/contents/{path}", perms=[("contents", "read")])
def get_contents(ctx: Ctx):
    repo = ctx.repo
    ref = ctx.query.get("ref") or repo.default_branch
    sha = ctx.state.resolve(repo, ref)
    if sha is None:
        raise HTTPError(404, f"No commit found for the ref {ref}")
    path = ctx.params["path"].strip("/")
    entry = repo.store.lookup_path(repo.store.commit(sha).tree, path)
    if entry is None:
        raise not_found()
    url = ctx.render.repo_url(repo)

    def describe(e: TreeEntry, p: str) -> dict:
        kind = {"40000": "dir", "160000": "submodule", "120000": "symlink"}.get(e.mode, "file")
        size = len(repo.store.data(e.sha) or b"") if kind in ("file", "symlink") else 0
        self_url = f"{url}/contents/{quote(p)}?ref={quote(ref)}"
        git_url = f"{url}/git/{'trees' if kind == 'dir' else 'blobs'}/{e.sha}"
        html = f"{HTML_BASE}/{repo.full_name}/{'tree' if kind == 'dir' else 'blob'}/{ref}/{quote(p)}"
        return {"type": kind, "size": size, "name": p.rsplit("/", 1)[-1], "path": p, "sha": e.sha,
                "url": self_url, "git_url": git_url, "html_url": html,
                "download_url": None if kind == "dir" else
                f"https://raw.githubusercontent.com/{repo.full_name}/{ref}/{quote(p)}",
                "_links": {"self": self_url, "git": git_url, "html": html}}

    if entry.mode == "40000":
        return 200, [describe(e, f"{path}/{e.name}") for e in repo.store.tree(entry.sha) or []]
    data = repo.store.data(entry.sha) or b""
    accept = ctx.request.headers.get("Accept", "")
    if "vnd.github.raw" in accept or "vnd.github.v3.raw" in accept:
        if len(data) > 100 * 1024 * 1024:
            raise HTTPError(403, "This API returns blobs up to 100 MB in size.")
        return 200, data, {"Content-Type": "application/vnd.github.raw"}
    out = describe(entry, path)
    if len(data) > 1024 * 1024:
        out.update({"content": "", "encoding": "none"})
    else:
        out.update({"content": b64_wrapped(data), "encoding": "base64"})
    if entry.mode == "120000":
        out["target"] = data.decode("utf-8", "replace")
    return 200, out


@route("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission", perms=[("metadata", "read")])
def collaborator_permission(ctx: Ctx):
    repo = ctx.repo
    login = ctx.params["username"]
    role = repo.permissions.get(login)
    if role is None:
        role = "admin" if login.lower() == repo.owner.lower() else ("none" if repo.private else "read")
    perm = {"maintain": "write", "triage": "read"}.get(role, role)
    user = ctx.state.user(login)
    user["permissions"] = {"admin": perm == "admin", "maintain": role in ("admin", "maintain"),
                           "push": perm in ("admin", "write"), "triage": role in ("admin", "maintain", "write", "triage"),
                           "pull": perm != "none"}
    user["role_name"] = role
    return 200, {"permission": perm, "role_name": role, "user": user}


# ----- Pull requests -------------------------------------------------------------------------


def _parse_head(ctx: Ctx, head: str, head_repo_name: str | None) -> tuple[Repo | None, str]:
    s = ctx.state
    base = ctx.repo
    if ":" in head:
        owner, ref = head.split(":", 1)
    else:
        owner, ref = base.owner, head
    if head_repo_name:
        hr = s.repos.get(head_repo_name.lower()) or s.repos.get(f"{owner}/{head_repo_name}".lower())
        return hr, ref
    if owner.lower() == base.owner.lower():
        return base, ref
    for r in s.repos.values():  # a fork in the same network owned by `owner`
        if r.owner.lower() == owner.lower() and r.fork_of is not None:
            root, broot = r, base
            while root.fork_of is not None:
                root = root.fork_of
            while broot.fork_of is not None:
                broot = broot.fork_of
            if root is broot:
                return r, ref
    return None, ref


@route("GET", "/repos/{owner}/{repo}/pulls", perms=[("pull_requests", "read")])
def list_pulls(ctx: Ctx):
    q = ctx.query
    state = q.get("state", "open")
    prs = [p for p in ctx.state.pulls.values() if p.repo is ctx.repo]
    if state != "all":
        prs = [p for p in prs if p.state == state]
    if q.get("head"):
        owner, _, ref = q["head"].partition(":")
        prs = [p for p in prs if p.head_repo.owner.lower() == owner.lower() and (not ref or p.head_ref == ref)]
    if q.get("base"):
        prs = [p for p in prs if p.base_ref == q["base"]]
    sort = q.get("sort", "created")
    direction = q.get("direction", "desc" if sort == "created" else "asc")
    keyf = {"created": lambda p: (p.created_at, p.number), "updated": lambda p: (p.updated_at, p.number)}.get(
        sort, lambda p: (p.created_at, p.number))
    prs.sort(key=keyf, reverse=direction == "desc")
    chunk, headers = paginate(ctx, prs)
    return 200, [ctx.render.pull(p, full=False) for p in chunk], headers


@route("POST", "/repos/{owner}/{repo}/pulls", perms=[("pull_requests", "write")])
def create_pull(ctx: Ctx):
    s = ctx.state
    body = ctx.body
    repo = ctx.repo
    if not body.get("title") and not body.get("issue"):
        raise validation_failed("PullRequest", "title", "missing_field")
    base_ref = body["base"]
    if repo.branch_sha(base_ref) is None:
        raise validation_failed("PullRequest", "base", "invalid")
    hrepo, head_ref = _parse_head(ctx, body["head"], body.get("head_repo"))
    if hrepo is None or hrepo.branch_sha(head_ref) is None:
        raise validation_failed("PullRequest", "head", "invalid")
    if hrepo is not repo:
        repo.store.objects.update(hrepo.store.objects)
    ahead = repo.store.commits_between(repo.branch_sha(base_ref), hrepo.branch_sha(head_ref))
    if not ahead:
        raise validation_failed("PullRequest", message=f"No commits between {base_ref} and {body['head']}")
    for p in s.pulls.values():
        if p.repo is repo and p.state == "open" and p.head_repo is hrepo and p.head_ref == head_ref \
                and p.base_ref == base_ref:
            raise validation_failed("PullRequest",
                                    message=f"A pull request already exists for {hrepo.owner}:{head_ref}.")
    login = s.bot_login
    pr = s.add_pull_request(repo, head_ref=head_ref, base_ref=base_ref, user=login, head_repo=hrepo,
                            title=body.get("title") or f"Issue {body.get('issue')}", body=body.get("body"),
                            draft=bool(body.get("draft", False)))
    pr.maintainer_can_modify = bool(body.get("maintainer_can_modify", False))
    out = ctx.render.pull(pr)
    return 201, out, {"Location": out["url"]}


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", perms=[("pull_requests", "read")])
def get_pull(ctx: Ctx):
    pr = _pr_or_404(ctx, ctx.params["pull_number"])
    accept = ctx.request.headers.get("Accept", "")
    if "vnd.github.diff" in accept or "vnd.github.v3.diff" in accept:
        _, files = ctx.state.pr_diff(pr)
        parts = []
        for f in files:
            oldp, newp = f.old_path or f.filename, f.filename
            parts.append(f"diff --git a/{oldp} b/{newp}")
            if f.status == "added":
                parts.append(f"new file mode {f.new_mode}")
            elif f.status == "removed":
                parts.append(f"deleted file mode {f.old_mode}")
            parts.append(f"index {(f.old_sha or ZERO_SHA)[:7]}..{(f.new_sha or ZERO_SHA)[:7]}")
            if f.patch:
                parts.append(f"--- {'a/' + oldp if f.old_sha else '/dev/null'}")
                parts.append(f"+++ {'b/' + newp if f.new_sha else '/dev/null'}")
                parts.append(f.patch)
        return 200, ("\n".join(parts) + "\n").encode(), {"Content-Type": "application/vnd.github.diff"}
    return 200, ctx.render.pull(pr)


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files", perms=[("pull_requests", "read")])
def pull_files(ctx: Ctx):
    pr = _pr_or_404(ctx, ctx.params["pull_number"])
    _, files = ctx.state.pr_diff(pr)
    chunk, headers = paginate(ctx, files[:MAX_PR_FILES])
    return 200, [ctx.render.file(pr.repo, f, pr.head_sha) for f in chunk], headers


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/commits", perms=[("pull_requests", "read")])
def pull_commits(ctx: Ctx):
    pr = _pr_or_404(ctx, ctx.params["pull_number"])
    base = pr.repo.store.merge_base(pr.base_sha, pr.head_sha)
    commits = pr.repo.store.commits_between(base, pr.head_sha)[:MAX_PR_COMMITS]
    chunk, headers = paginate(ctx, commits)
    return 200, [ctx.render.commit_rest(pr.repo, c) for c in chunk], headers


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews", perms=[("pull_requests", "read")])
def list_reviews(ctx: Ctx):
    pr = _pr_or_404(ctx, ctx.params["pull_number"])
    reviews = sorted(ctx.state.reviews_of(pr.repo, pr.number), key=lambda r: r.id)
    chunk, headers = paginate(ctx, reviews)
    return 200, [ctx.render.review(r) for r in chunk], headers


def _diff_hunk_text(f: FileDiff, hunk: Hunk, upto_position: int) -> str:
    lines = f.patch_lines
    return "\n".join(lines[hunk.header_position:upto_position + 1])


def _locate(f: FileDiff, line: int, side: str) -> tuple[Hunk, HunkLine] | None:
    for h in f.hunks:
        for hl in h.lines:
            if side == "RIGHT" and hl.kind in (" ", "+") and hl.new == line:
                return h, hl
            if side == "LEFT" and hl.kind in (" ", "-") and hl.old == line:
                return h, hl
    return None


def _check_review_comment(f: FileDiff | None, c: dict) -> dict:
    """Validate one review comment against the diff; return its resolved placement."""
    if f is None:
        raise unprocessable("Path could not be resolved")
    if c.get("subject_type") == "file":
        return {"line": None, "side": None, "start_line": None, "start_side": None, "position": None,
                "diff_hunk": f.patch_lines[0] if f.patch else "", "subject_type": "file"}
    if c.get("line") is None and c.get("position") is None:
        raise unprocessable("Pull request review thread position or line is required")
    if c.get("line") is None:
        pos = c["position"]
        for h in f.hunks:
            for hl in h.lines:
                if hl.position == pos:
                    return {"line": hl.new if hl.kind != "-" else hl.old,
                            "side": "LEFT" if hl.kind == "-" else "RIGHT", "start_line": None,
                            "start_side": None, "position": pos, "diff_hunk": _diff_hunk_text(f, h, pos),
                            "subject_type": "line"}
        raise unprocessable("Pull request review thread position is invalid")
    side = c.get("side") or "RIGHT"
    if side not in ("LEFT", "RIGHT"):
        raise unprocessable(f"Pull request review thread side is invalid: {side}")
    hit = _locate(f, c["line"], side)
    if hit is None:
        raise unprocessable("Pull request review thread line must be part of the diff")
    hunk, hl = hit
    start_line = c.get("start_line")
    start_side = c.get("start_side") or (side if start_line is not None else None)
    if start_line is not None:
        if start_side not in ("LEFT", "RIGHT"):
            raise unprocessable(f"Pull request review thread start_side is invalid: {start_side}")
        if start_line >= c["line"] and start_side == side:
            raise unprocessable("Pull request review thread start_line must precede the end line")
        shit = _locate(f, start_line, start_side)
        if shit is None:
            raise unprocessable("Pull request review thread start line must be part of the diff")
        if shit[0] is not hunk:
            raise unprocessable("Pull request review thread start line must be in the same hunk as the line")
    return {"line": c["line"], "side": side, "start_line": start_line, "start_side": start_side,
            "position": hl.position, "diff_hunk": _diff_hunk_text(f, hunk, hl.position), "subject_type": "line"}


def _check_body_length(body: str | None, resource: str) -> None:
    if body is not None and len(body) > MAX_COMMENT_BODY:
        raise validation_failed(resource, "body", message=f"body is too long (maximum is {MAX_COMMENT_BODY} characters)")


@route("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews", perms=[("pull_requests", "write")])
def create_review(ctx: Ctx):
    s = ctx.state
    pr = _pr_or_404(ctx, ctx.params["pull_number"])
    body = ctx.body or {}
    event = body.get("event")
    text = body.get("body") or ""
    comments = body.get("comments") or []
    login = s.bot_login
    _check_body_length(text, "PullRequestReview")
    if event == "REQUEST_CHANGES" and not text:
        raise unprocessable("Body is required when using the REQUEST_CHANGES event")
    if event == "COMMENT" and not text and not comments:
        raise unprocessable("Body is required when using the COMMENT event without comments")
    if event in ("APPROVE", "REQUEST_CHANGES") and pr.user == login:
        raise unprocessable(f"Can not {'approve' if event == 'APPROVE' else 'request changes on'} your own pull request")
    if event is None and any(r.state == "PENDING" and r.user == login for r in s.reviews_of(pr.repo, pr.number)):
        raise unprocessable("User can only have one pending review per pull request")
    commit_id = body.get("commit_id") or pr.head_sha
    if pr.repo.store.kind(commit_id) != "commit" or commit_id not in pr.repo.store.ancestors(pr.head_sha):
        raise unprocessable("Commit ID could not be resolved" if pr.repo.store.kind(commit_id) != "commit"
                            else "Commit ID is not part of the pull request")
    _, files = s.pr_diff(pr, commit_id)
    by_path = {f.filename: f for f in files}
    placed = []
    for c in comments:  # validate everything before creating anything
        _check_body_length(c.get("body"), "PullRequestReviewComment")
        placed.append(_check_review_comment(by_path.get(c["path"]), c))
    now = s.now()
    state = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED",
             None: "PENDING"}[event]
    review = Review(s.next_id("review", 80000000), pr, login, text, state, commit_id,
                    None if state == "PENDING" else now)
    s.reviews[review.id] = review
    for c, p in zip(comments, placed):
        rc = ReviewComment(s.next_id("review_comment", 90000000), pr, review.id, login, c["body"], c["path"],
                           commit_id, p["line"], p["side"], p["start_line"], p["start_side"], p["position"],
                           p["diff_hunk"], now, now, subject_type=p["subject_type"])
        s.review_comments[rc.id] = rc
    return 200, ctx.render.review(review)


@route("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}", perms=[("pull_requests", "write")])
def update_review(ctx: Ctx):
    pr = _pr_or_404(ctx, ctx.params["pull_number"])
    r = ctx.state.reviews.get(int(ctx.params["review_id"]))
    if r is None or r.pr is not pr:
        raise not_found()
    if r.user != ctx.state.bot_login:
        raise HTTPError(403, "Resource not accessible by integration")
    _check_body_length(ctx.body["body"], "PullRequestReview")
    r.body = ctx.body["body"]
    return 200, ctx.render.review(r)


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/comments", perms=[("pull_requests", "read")])
def list_review_comments(ctx: Ctx):
    pr = _pr_or_404(ctx, ctx.params["pull_number"])
    comments = ctx.state.review_comments_of(pr.repo, pr.number)
    if ctx.query.get("since"):
        since = parse_iso(ctx.query["since"])[0]
        comments = [c for c in comments if c.updated_at >= since]
    sort = ctx.query.get("sort", "created")
    comments.sort(key=(lambda c: (c.updated_at, c.id)) if sort == "updated" else (lambda c: (c.created_at, c.id)),
                  reverse=ctx.query.get("direction", "asc") == "desc")
    chunk, headers = paginate(ctx, comments)
    return 200, [ctx.render.review_comment(c) for c in chunk], headers


@route("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies",
       perms=[("pull_requests", "write")])
def reply_review_comment(ctx: Ctx):
    s = ctx.state
    pr = _pr_or_404(ctx, ctx.params["pull_number"])
    parent = s.review_comments.get(int(ctx.params["comment_id"]))
    if parent is None or parent.pr is not pr:
        raise not_found()
    _check_body_length(ctx.body["body"], "PullRequestReviewComment")
    root = parent
    while root.in_reply_to_id is not None:
        root = s.review_comments[root.in_reply_to_id]
    now = s.now()
    review = Review(s.next_id("review", 80000000), pr, s.bot_login, "", "COMMENTED", root.commit_id, now)
    s.reviews[review.id] = review
    rc = ReviewComment(s.next_id("review_comment", 90000000), pr, review.id, s.bot_login, ctx.body["body"],
                       root.path, root.commit_id, root.line, root.side, root.start_line, root.start_side,
                       root.position, root.diff_hunk, now, now, in_reply_to_id=root.id,
                       subject_type=root.subject_type)
    s.review_comments[rc.id] = rc
    return 201, ctx.render.review_comment(rc)


# ----- Checks --------------------------------------------------------------------------------


def _check_annotations(annotations: list[dict]) -> None:
    for i, a in enumerate(annotations):
        for k in ("path", "start_line", "end_line", "annotation_level", "message"):
            if a.get(k) is None:
                raise validation_failed("CheckRun", f"output.annotations[{i}].{k}", "missing_field")
        if a["end_line"] < a["start_line"]:
            raise validation_failed("CheckRun", f"output.annotations[{i}].end_line", "invalid")
        if ("start_column" in a or "end_column" in a) and a["start_line"] != a["end_line"]:
            raise HTTPError(422, "Invalid request.\n\nstart_column and end_column are only allowed when "
                                 "start_line and end_line are equal.")


def _apply_check_fields(ctx: Ctx, run: CheckRun, body: dict) -> None:
    now = ctx.state.now()
    for k in ("name", "details_url", "external_id"):
        if k in body:
            setattr(run, k, body[k])
    if "started_at" in body:
        run.started_at = parse_iso(body["started_at"])[0]
    if "status" in body:
        run.status = body["status"]
    if body.get("conclusion"):
        run.conclusion = body["conclusion"]
        run.status = "completed"
    if run.status == "completed" and not run.conclusion:
        raise HTTPError(422, "Invalid request.\n\nconclusion is required when status is completed.")
    if "completed_at" in body:
        run.completed_at = parse_iso(body["completed_at"])[0]
    elif run.status == "completed" and run.completed_at is None:
        run.completed_at = now
    if run.status == "in_progress" and run.started_at is None:
        run.started_at = now
    if "actions" in body:
        if len(body["actions"]) > 3:
            raise HTTPError(422, "Invalid request.\n\nNo more than 3 actions are allowed.")
        run.actions = body["actions"]
    out = body.get("output")
    if out is not None:
        if not out.get("title") or not out.get("summary"):
            raise validation_failed("CheckRun", "output.title" if not out.get("title") else "output.summary",
                                    "missing_field")
        anns = out.get("annotations") or []
        _check_annotations(anns)
        for k in ("title", "summary", "text"):
            if k in out:
                run.output[k] = out[k]
        run.annotations.extend(dict(a, blob_href=f"{HTML_BASE}/{run.repo.full_name}/blob/{run.head_sha}/{a['path']}")
                               for a in anns)


@route("POST", "/repos/{owner}/{repo}/check-runs", perms=[("checks", "write")])
def create_check_run(ctx: Ctx):
    s = ctx.state
    body = ctx.body
    sha = body["head_sha"]
    if not re.fullmatch(r"[0-9a-f]{40}", sha) or ctx.repo.store.kind(sha) != "commit":
        raise HTTPError(422, f"No commit found for SHA: {sha}")
    suite = s.check_suites.setdefault((ctx.repo.key, sha), s.next_id("check_suite", 7000000))
    run = CheckRun(s.next_id("check_run", 6000000), ctx.repo, body["name"], sha, "queued", None, None, None,
                   None, None, {"title": None, "summary": None, "text": None}, [], [], suite, s.app_id)
    _apply_check_fields(ctx, run, body)  # before storing: a refused request leaves nothing behind
    if run.started_at is None:
        run.started_at = s.now()
    s.check_runs[run.id] = run
    return 201, ctx.render.check_run(run)


def _check_run_or_404(ctx: Ctx) -> CheckRun:
    run = ctx.state.check_runs.get(int(ctx.params["check_run_id"]))
    if run is None or run.repo is not ctx.repo:
        raise not_found()
    return run


@route("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}", perms=[("checks", "read")])
def get_check_run(ctx: Ctx):
    return 200, ctx.render.check_run(_check_run_or_404(ctx))


@route("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}", perms=[("checks", "write")])
def update_check_run(ctx: Ctx):
    run = _check_run_or_404(ctx)
    if run.app_id != ctx.state.app_id:
        raise HTTPError(403, "Invalid app_id `%d` - check run can only be modified by the GitHub App that "
                             "created it." % ctx.state.app_id)
    trial = dataclasses.replace(run, output=dict(run.output), annotations=list(run.annotations))
    _apply_check_fields(ctx, trial, ctx.body or {})
    ctx.state.check_runs[run.id] = trial
    return 200, ctx.render.check_run(trial)


@route("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations", perms=[("checks", "read")])
def list_annotations(ctx: Ctx):
    run = _check_run_or_404(ctx)
    chunk, headers = paginate(ctx, run.annotations)
    return 200, [{"path": a["path"], "start_line": a["start_line"], "end_line": a["end_line"],
                  "start_column": a.get("start_column"), "end_column": a.get("end_column"),
                  "annotation_level": a["annotation_level"], "title": a.get("title"), "message": a["message"],
                  "raw_details": a.get("raw_details"), "blob_href": a["blob_href"]} for a in chunk], headers


@route("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs", perms=[("checks", "read")])
def check_runs_for_ref(ctx: Ctx):
    s = ctx.state
    sha = s.resolve(ctx.repo, ctx.params["ref"])
    if sha is None:
        raise HTTPError(422, f"No commit found for SHA: {ctx.params['ref']}")
    runs = sorted(s.check_runs_for(ctx.repo, sha), key=lambda r: r.id, reverse=True)
    q = ctx.query
    if q.get("check_name"):
        runs = [r for r in runs if r.name == q["check_name"]]
    if q.get("status"):
        runs = [r for r in runs if r.status == q["status"]]
    if q.get("app_id"):
        runs = [r for r in runs if str(r.app_id) == q["app_id"]]
    if q.get("filter", "latest") == "latest":
        seen, latest = set(), []
        for r in runs:
            if (r.name, r.app_id) not in seen:
                seen.add((r.name, r.app_id))
                latest.append(r)
        runs = latest
    chunk, headers = paginate(ctx, runs)
    return 200, {"total_count": len(runs), "check_runs": [ctx.render.check_run(r) for r in chunk]}, headers


@route("GET", "/repos/{owner}/{repo}/commits/{commit_sha}/pulls", perms=[("pull_requests", "read")])
def pulls_for_commit(ctx: Ctx):
    s = ctx.state
    sha = s.resolve(ctx.repo, ctx.params["commit_sha"])
    if sha is None:
        raise HTTPError(422, f"No commit found for SHA: {ctx.params['commit_sha']}")
    prs = []
    for p in sorted(s.pulls.values(), key=lambda p: p.number, reverse=True):
        if p.repo is not ctx.repo:
            continue
        if p.head_repo is not p.repo and not p.merged:
            continue  # like GitHub: a fork's unmerged commits list no pull request on the base repository
        if sha == p.head_sha or sha in p.repo.store.commits_between(p.repo.store.merge_base(p.base_sha, p.head_sha),
                                                                    p.head_sha):
            prs.append(p)
    chunk, headers = paginate(ctx, prs)
    return 200, [ctx.render.pull(p, full=False) for p in chunk], headers


@route("GET", "/repos/{owner}/{repo}/compare/{basehead}", perms=[("contents", "read")])
def compare(ctx: Ctx):
    s = ctx.state
    bh = ctx.params["basehead"]
    if "..." not in bh:
        raise not_found()
    base_spec, head_spec = bh.split("...", 1)

    def side(spec: str) -> str:
        repo = ctx.repo
        parts = spec.split(":")
        if len(parts) == 3:
            repo = s.repos.get(f"{parts[0]}/{parts[1]}".lower())
        elif len(parts) == 2:
            repo = next((r for r in s.repos.values()
                         if r.owner.lower() == parts[0].lower() and r.name.lower() == ctx.repo.name.lower()), None)
        if repo is None:
            raise not_found()
        if repo is not ctx.repo:
            ctx.repo.store.objects.update(repo.store.objects)
        sha = s.resolve(repo, parts[-1])
        if sha is None:
            raise not_found()
        return sha

    base, head = side(base_spec), side(head_spec)
    store = ctx.repo.store
    mb = store.merge_base(base, head)
    ahead = store.commits_between(base, head)
    behind = store.commits_between(head, base)
    status = "identical" if base == head else ("ahead" if not behind else ("behind" if not ahead else "diverged"))
    files = s.diff(ctx.repo, mb, head) if mb else []
    url = ctx.render.repo_url(ctx.repo)
    if "page" in ctx.query or "per_page" in ctx.query:
        chunk, headers = paginate(ctx, ahead)
    else:
        chunk, headers = ahead[:250], {}
    return 200, {
        "url": f"{url}/compare/{bh}", "html_url": f"{HTML_BASE}/{ctx.repo.full_name}/compare/{bh}",
        "permalink_url": f"{HTML_BASE}/{ctx.repo.full_name}/compare/{base[:7]}...{head[:7]}",
        "diff_url": f"{HTML_BASE}/{ctx.repo.full_name}/compare/{bh}.diff",
        "patch_url": f"{HTML_BASE}/{ctx.repo.full_name}/compare/{bh}.patch",
        "base_commit": ctx.render.commit_rest(ctx.repo, base),
        "merge_base_commit": ctx.render.commit_rest(ctx.repo, mb) if mb else None,
        "status": status, "ahead_by": len(ahead), "behind_by": len(behind), "total_commits": len(ahead),
        "commits": [ctx.render.commit_rest(ctx.repo, c) for c in chunk],
        "files": [ctx.render.file(ctx.repo, f, head) for f in files[:300]],
    }, headers


# ----- Actions -------------------------------------------------------------------------------


@route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", perms=[("actions", "read")])
def list_run_jobs(ctx: Ctx):
    run_id = int(ctx.params["run_id"])
    jobs = sorted((j for j in ctx.state.jobs.values() if j.repo is ctx.repo and j.run_id == run_id),
                  key=lambda j: j.id)
    if ctx.query.get("filter", "latest") == "latest" and jobs:
        top = max(j.run_attempt for j in jobs)
        jobs = [j for j in jobs if j.run_attempt == top]
    chunk, headers = paginate(ctx, jobs)
    return 200, {"total_count": len(jobs), "jobs": [ctx.render.job(j) for j in chunk]}, headers


def _job_or_404(ctx: Ctx) -> ActionsJob:
    job = ctx.state.jobs.get(int(ctx.params["job_id"]))
    if job is None or job.repo is not ctx.repo:
        raise not_found()
    return job


@route("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}", perms=[("actions", "read")])
def get_job(ctx: Ctx):
    return 200, ctx.render.job(_job_or_404(ctx))


@route("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs", perms=[("actions", "read")])
def job_logs(ctx: Ctx):
    job = _job_or_404(ctx)
    if job.log_text is None:
        raise not_found()
    nonce = secrets.token_urlsafe(12)
    ctx.state._log_nonces[nonce] = job.id
    loc = f"{ctx.base_url}/_sim/actions/jobs/{job.id}/logs?sig={nonce}"
    return 302, None, {"Location": loc}


# ----- Issue comments and reactions ----------------------------------------------------------


def _issue_or_404(ctx: Ctx) -> int:
    number = int(ctx.params["issue_number"])
    if (ctx.repo.key, number) not in ctx.state.issues:
        raise not_found()
    return number


@route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments",
       perms=[("issues", "read"), ("pull_requests", "read")])
def list_issue_comments(ctx: Ctx):
    number = _issue_or_404(ctx)
    comments = sorted(ctx.state.issue_comments_of(ctx.repo, number), key=lambda c: c.id)
    if ctx.query.get("since"):
        since = parse_iso(ctx.query["since"])[0]
        comments = [c for c in comments if c.updated_at >= since]
    chunk, headers = paginate(ctx, comments)
    return 200, [ctx.render.issue_comment(c) for c in chunk], headers


@route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments",
       perms=[("issues", "write"), ("pull_requests", "write")])
def create_issue_comment(ctx: Ctx):
    s = ctx.state
    number = _issue_or_404(ctx)
    if (ctx.repo.key, number) not in s.pulls and PERM_LEVEL.get(ctx.token.permissions.get("issues", "none")) < 2:
        raise HTTPError(403, "Resource not accessible by integration")
    _check_body_length(ctx.body["body"], "IssueComment")
    if not ctx.body["body"].strip():
        raise validation_failed("IssueComment", "body", "missing_field")
    now = s.now()
    c = IssueComment(s.next_id("issue_comment", 3000000000), ctx.repo, number, s.bot_login, ctx.body["body"],
                     now, now, via_app=True)
    s.issue_comments[c.id] = c
    out = ctx.render.issue_comment(c)
    return 201, out, {"Location": out["url"]}


@route("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}",
       perms=[("issues", "write"), ("pull_requests", "write")])
def update_issue_comment(ctx: Ctx):
    s = ctx.state
    c = s.issue_comments.get(int(ctx.params["comment_id"]))
    if c is None or c.repo is not ctx.repo:
        raise not_found()
    if c.user != s.bot_login:
        raise HTTPError(403, "Resource not accessible by integration")
    _check_body_length(ctx.body["body"], "IssueComment")
    c.body = ctx.body["body"]
    c.updated_at = s.now()
    return 200, ctx.render.issue_comment(c)


def _react(ctx: Ctx, reactions: list[dict]):
    s = ctx.state
    content = ctx.body["content"]
    for r in reactions:
        if r["user"]["login"] == s.bot_login and r["content"] == content:
            return 200, r
    r = {"id": s.next_id("reaction", 100000000), "node_id": None, "user": s.user(s.bot_login),
         "content": content, "created_at": iso(s.now())}
    r["node_id"] = node_id("REA", r["id"])
    reactions.append(r)
    return 201, r


@route("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
       perms=[("issues", "write"), ("pull_requests", "write")])
def react_issue_comment(ctx: Ctx):
    c = ctx.state.issue_comments.get(int(ctx.params["comment_id"]))
    if c is None or c.repo is not ctx.repo:
        raise not_found()
    return _react(ctx, c.reactions)


@route("POST", "/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions", perms=[("pull_requests", "write")])
def react_review_comment(ctx: Ctx):
    c = ctx.state.review_comments.get(int(ctx.params["comment_id"]))
    if c is None or c.pr.repo is not ctx.repo:
        raise not_found()
    return _react(ctx, c.reactions)


# ----- Git database --------------------------------------------------------------------------


def _sha_param(ctx: Ctx, name: str) -> str:
    sha = ctx.params[name]
    if not re.fullmatch(r"[0-9a-f]{40}", sha):
        raise not_found()
    return sha


@route("GET", "/repos/{owner}/{repo}/git/commits/{commit_sha}", perms=[("contents", "read")])
def get_git_commit(ctx: Ctx):
    sha = _commit_or(ctx, _sha_param(ctx, "commit_sha"))
    return 200, ctx.render.commit_api(ctx.repo, sha)


@route("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}", perms=[("contents", "read")])
def get_git_tree(ctx: Ctx):
    store = ctx.repo.store
    sha = ctx.params["tree_sha"]
    resolved = sha if store.kind(sha) else ctx.state.resolve(ctx.repo, sha)
    if resolved is None:
        raise not_found()
    if store.kind(resolved) == "commit":
        resolved = store.commit(resolved).tree
    if store.kind(resolved) != "tree":
        raise HTTPError(422, "Invalid tree info")
    url = ctx.render.repo_url(ctx.repo)
    recursive = ctx.query.get("recursive") not in (None, "", "0", "false")

    def entries(tree: str, prefix: str) -> list[dict]:
        out = []
        for e in store.tree(tree) or []:
            p = prefix + e.name
            item = {"path": p, "mode": e.api_mode, "type": e.type, "sha": e.sha}
            if e.type == "blob":
                item["size"] = len(store.data(e.sha) or b"")
                item["url"] = f"{url}/git/blobs/{e.sha}"
            elif e.type == "tree":
                item["url"] = f"{url}/git/trees/{e.sha}"
            out.append(item)
            if recursive and e.type == "tree":
                out += entries(e.sha, p + "/")
        return out

    items = entries(resolved, "")
    truncated = len(items) > 100000
    return 200, {"sha": resolved, "url": f"{url}/git/trees/{resolved}", "tree": items[:100000],
                 "truncated": truncated}


@route("GET", "/repos/{owner}/{repo}/git/blobs/{file_sha}", perms=[("contents", "read")])
def get_git_blob(ctx: Ctx):
    sha = _sha_param(ctx, "file_sha")
    data = ctx.repo.store.data(sha, "blob")
    if data is None:
        raise not_found()
    accept = ctx.request.headers.get("Accept", "")
    if "vnd.github.raw" in accept:
        return 200, data, {"Content-Type": "application/vnd.github.raw"}
    url = ctx.render.repo_url(ctx.repo)
    return 200, {"sha": sha, "node_id": node_id("B", sha), "size": len(data), "url": f"{url}/git/blobs/{sha}",
                 "content": b64_wrapped(data), "encoding": "base64"}


@route("POST", "/repos/{owner}/{repo}/git/blobs", perms=[("contents", "write")])
def create_git_blob(ctx: Ctx):
    body = ctx.body
    enc = body.get("encoding", "utf-8")
    if enc in ("utf-8", "utf8"):
        data = body["content"].encode()
    elif enc == "base64":
        try:
            data = base64.b64decode(body["content"], validate=False)
        except (binascii.Error, ValueError):
            raise HTTPError(422, "Invalid base64 content")
    else:
        raise validation_failed("Blob", "encoding", "invalid", message=f"encoding {enc!r} is not supported")
    sha = ctx.repo.store.put_blob(data)
    url = f"{ctx.render.repo_url(ctx.repo)}/git/blobs/{sha}"
    return 201, {"url": url, "sha": sha}, {"Location": url}


@route("POST", "/repos/{owner}/{repo}/git/trees", perms=[("contents", "write")])
def create_git_tree(ctx: Ctx):
    store = ctx.repo.store
    base = ctx.body.get("base_tree")
    if base is not None and store.kind(base) != "tree":
        raise HTTPError(404, "Not Found") if store.kind(base) is None else \
            HTTPError(422, f"base_tree {base} is not a valid tree oid")
    sha = ctx.state.build_tree(ctx.repo, base, ctx.body["tree"])
    return 201, get_git_tree(dataclasses.replace(ctx, params={**ctx.params, "tree_sha": sha}, query={}))[1]


@route("POST", "/repos/{owner}/{repo}/git/commits", perms=[("contents", "write")])
def create_git_commit(ctx: Ctx):
    s = ctx.state
    store = ctx.repo.store
    body = ctx.body
    if store.kind(body["tree"]) != "tree":
        raise HTTPError(422, "Tree SHA does not exist")
    parents = body.get("parents", [])
    for p in parents:
        if store.kind(p) != "commit":
            raise HTTPError(422, "Parent SHA does not exist or is not a commit object")
    now = int(s.now())

    def sig(d: dict | None, fallback: Signature) -> Signature:
        if not d:
            return fallback
        ts, tz = parse_iso(d["date"]) if d.get("date") else (now, 0)
        return Signature(d.get("name", fallback.name), d.get("email", fallback.email), ts, tz)

    bot = Signature(s.bot_login, s.bot_email, now, 0)
    author = sig(body.get("author"), bot)
    committer = sig(body.get("committer"), author if body.get("author") else bot)
    sha = store.put_commit(body["tree"], parents, author, committer, body["message"], body.get("signature"))
    out = ctx.render.commit_api(ctx.repo, sha)
    return 201, out, {"Location": out["url"]}


def _ref_json(ctx: Ctx, ref: str) -> dict:
    sha = ctx.repo.refs[ref]
    url = ctx.render.repo_url(ctx.repo)
    kind = ctx.repo.store.kind(sha) or "commit"
    return {"ref": ref, "node_id": node_id("REF", f"{ctx.repo.id}:{ref}"), "url": f"{url}/git/{ref}",
            "object": {"type": kind, "sha": sha, "url": f"{url}/git/{kind}s/{sha}"}}


@route("GET", "/repos/{owner}/{repo}/git/ref/{ref}", perms=[("contents", "read")])
def get_ref(ctx: Ctx):
    ref = ctx.params["ref"]
    if ref.startswith("refs/"):
        raise not_found()  # GitHub wants "heads/main", not "refs/heads/main"
    full = f"refs/{ref}"
    if full not in ctx.repo.refs:
        raise not_found()
    return 200, _ref_json(ctx, full)


@route("POST", "/repos/{owner}/{repo}/git/refs", perms=[("contents", "write")])
def create_ref(ctx: Ctx):
    ref, sha = ctx.body["ref"], ctx.body["sha"]
    if not ref.startswith("refs/") or ref.count("/") < 2:
        raise HTTPError(422, "Reference name must start with 'refs/' and have at least two slashes.")
    if (not re.fullmatch(r"refs/[A-Za-z0-9._/\-]+", ref) or ".." in ref or ref.endswith((".lock", "/", "."))
            or "//" in ref):
        raise HTTPError(422, f"{ref} is not a valid ref name.")
    if ref in ctx.repo.refs:
        raise HTTPError(422, "Reference already exists")
    if ctx.repo.store.kind(sha) is None:
        raise HTTPError(422, "Object does not exist")
    if ref.startswith("refs/heads/") and ctx.repo.store.kind(sha) != "commit":
        raise HTTPError(422, "Object is not a commit")
    ctx.repo.refs[ref] = sha
    out = _ref_json(ctx, ref)
    return 201, out, {"Location": out["url"]}


@route("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}", perms=[("contents", "write")])
def update_ref(ctx: Ctx):
    repo = ctx.repo
    full = "refs/" + ctx.params["ref"].removeprefix("refs/")
    if full not in repo.refs:
        raise HTTPError(422, "Reference does not exist")
    sha = ctx.body["sha"]
    if repo.store.kind(sha) != "commit":
        raise HTTPError(422, "Object does not exist")
    old = repo.refs[full]
    if not ctx.body.get("force", False) and old not in repo.store.ancestors(sha):
        raise HTTPError(422, "Update is not a fast forward")
    repo.refs[full] = sha
    if full.startswith("refs/heads/"):
        branch = full[len("refs/heads/"):]
        for pr in ctx.state.pulls.values():
            if pr.head_repo is repo and pr.head_ref == branch and pr.state == "open":
                if pr.repo is not repo:
                    pr.repo.store.objects.update(repo.store.objects)
                pr.repo.refs[f"refs/pull/{pr.number}/head"] = sha
                pr.head_sha_fixed = sha
                pr.updated_at = ctx.state.now()
    return 200, _ref_json(ctx, full)


# --------------------------------------------------------------------------------------------
# Request pipeline
# --------------------------------------------------------------------------------------------


class _OARequest:
    """openapi-core's request protocol over already-read request parts."""

    def __init__(self, method: str, path: str, query: list[tuple[str, str]], headers: Iterable[tuple[str, str]],
                 body: bytes | None, content_type: str):
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        self.method = method.lower()
        self.path = path
        self.host_url = "https://api.github.com"
        self.parameters = RequestParameters(query=ImmutableMultiDict(query), header=Headers(list(headers)),
                                            cookie=ImmutableMultiDict())
        self.body = body
        self.content_type = content_type


def _schema_errors(exc: BaseException) -> list:
    out = []
    seen = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        out += list(getattr(cur, "schema_errors", None) or [])
        cur = cur.__cause__ or cur.__context__
    return out


def _validate(route_: Route, params: dict[str, str], request: web.Request, raw_body: bytes,
              body: Any) -> tuple[int, str, list] | None:
    """None if valid, else (status, message, errors)."""
    raw, api = load_spec()
    path = route_.template
    for k, v in params.items():
        path = path.replace("{" + k + "}", quote(v, safe=""))
    ct = request.headers.get("Content-Type", "application/json").split(";")[0].strip() or "application/json"
    oareq = _OARequest(route_.method, path, list(request.query.items()), request.headers.items(),
                       raw_body if raw_body else None, "application/json" if raw_body else ct)
    result = api.unmarshal_request(oareq)
    if result.errors:
        from openapi_core.templating.paths.exceptions import PathError

        first = result.errors[0]
        if isinstance(first, PathError):
            return 404, "Not Found", [str(first)]
        name = type(first).__name__
        if name == "ParameterValidationError" or "Parameter" in name:
            loc = getattr(first, "location", "")
            if loc == "path":
                return 404, "Not Found", [str(first)]
            cause = first.__cause__
            return 422, "Validation Failed", [{"resource": "Parameter", "code": "invalid",
                                               "field": getattr(first, "name", ""),
                                               "message": f"{first}: {cause}" if cause else str(first)}]
        errors = []
        for e in _schema_errors(first):
            fld = ".".join(str(p) for p in e.absolute_path)
            if e.validator == "required":
                missing = re.findall(r"'([^']+)' is a required property", e.message)
                errors.append({"resource": "Body", "code": "missing_field",
                               "field": (fld + "." if fld else "") + (missing[0] if missing else ""),
                               "message": e.message})
            else:
                errors.append({"resource": "Body", "code": "invalid", "field": fld, "message": e.message})
        if not errors:
            errors = [{"resource": "Body", "code": "invalid", "message": str(first)}]
        return 422, "Validation Failed", errors
    # Stricter than the description: body keys it does not declare.
    op = raw["paths"][route_.template][route_.method.lower()]
    if body is not None and "requestBody" in op:
        rb = _resolve(raw, op["requestBody"])
        schema = rb["content"]["application/json"]["schema"]
        unknown = _unknown_keys(raw, body, schema)
        if unknown:
            return 422, f'Invalid request.\n\n"{unknown[0]}" is not a permitted key.', \
                [f"{k} is not a permitted key" for k in unknown]
    return None


def _unknown_query(route_: Route, query: Iterable[str]) -> list[str]:
    raw, _ = load_spec()
    item = raw["paths"][route_.template]
    op = item[route_.method.lower()]
    names = {_resolve(raw, p)["name"] for p in op.get("parameters", []) + item.get("parameters", [])
             if _resolve(raw, p)["in"] == "query"}
    return [q for q in query if q not in names]


def _authenticate(ctx: Ctx, route_: Route) -> None:
    s = ctx.state
    header = ctx.request.headers.get("Authorization", "")
    scheme, _, cred = header.partition(" ")
    scheme = scheme.lower()
    cred = cred.strip()
    if route_.auth == "jwt":
        if scheme != "bearer" or not cred:
            raise HTTPError(401, "A JSON web token could not be decoded")
        if s.app_public_key is None:
            raise RuntimeError("GitHubState has no app key: pass app_private_key/app_public_key")
        try:
            claims = jwt.decode(cred, s.app_public_key, algorithms=["RS256"],
                                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                                         "verify_aud": False, "require": ["iat", "exp", "iss"]})
        except jwt.PyJWTError:
            raise HTTPError(401, "A JSON web token could not be decoded")
        now = s.now()
        if str(claims["iss"]) not in (str(s.app_id), s.client_id):
            raise HTTPError(401, "'Issuer' claim ('iss') must be an Integer")
        if not isinstance(claims["iat"], (int, float)) or claims["iat"] > now + 60:
            raise HTTPError(401, "'Issued at' claim ('iat') must be an Integer representing a time in the past.")
        if not isinstance(claims["exp"], (int, float)) or claims["exp"] <= now:
            raise HTTPError(401, "'Expiration time' claim ('exp') must be a numeric value representing the "
                                 "future time at which the assertion expires.")
        if claims["exp"] - claims["iat"] > 600 or claims["exp"] > now + 660:
            raise HTTPError(401, "'Expiration time' claim ('exp') is too far in the future")
        return
    if scheme not in ("token", "bearer") or not cred:
        raise HTTPError(401, "Requires authentication")
    tok = s.tokens.get(cred)
    if tok is None or tok.expires_at <= s.now():
        raise HTTPError(401, "Bad credentials")
    ctx.token = tok
    if route_.auth == "token":
        return
    owner, name = ctx.params["owner"], ctx.params["repo"]
    repo = s.repos.get(f"{owner}/{name}".lower())
    inst = s.installations.get(tok.installation_id)
    covered = False
    if repo is not None and inst is not None:
        inst_keys = {r.key for r in s.installation_repos(inst)}
        covered = repo.key in inst_keys and (tok.repositories is None or repo.key in tok.repositories)
    if repo is None or (not covered and repo.private):
        raise not_found()
    ctx.repo = repo
    if not covered:
        if route_.method != "GET":
            raise HTTPError(403, "Resource not accessible by integration")
        return  # public repositories are readable by any token
    if route_.perms:
        ok = any(PERM_LEVEL.get(tok.permissions.get(p, "none"), 0) >= PERM_LEVEL[lvl] for p, lvl in route_.perms)
        if not ok and not all(p == "metadata" for p, _ in route_.perms):
            raise HTTPError(403, "Resource not accessible by integration")


def _rate_bucket(ctx: Ctx, route_: Route | None) -> tuple[str, list[float], int]:
    s = ctx.state
    header = ctx.request.headers.get("Authorization", "")
    cred = header.partition(" ")[2].strip()
    if route_ is not None and route_.auth == "jwt":
        key, limit = "app", s.rate_limit
    elif cred in s.tokens:
        key, limit = f"installation:{s.tokens[cred].installation_id}", s.rate_limit
    else:
        key, limit = "anonymous", 60
    bucket = s.rate_buckets.setdefault(key, [0, s.now() + 3600])
    if s.now() >= bucket[1]:
        bucket[0], bucket[1] = 0, s.now() + 3600
    return key, bucket, limit


def _rate_headers(bucket: list[float], limit: int) -> dict[str, str]:
    return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(max(0, limit - int(bucket[0]))),
            "x-ratelimit-reset": str(int(bucket[1])), "x-ratelimit-used": str(int(bucket[0])),
            "x-ratelimit-resource": "core"}


def _respond(status: int, body: Any, headers: dict[str, str]) -> web.Response:
    hdrs = {"X-GitHub-Media-Type": "github.v3; format=json", "X-GitHub-Api-Version-Selected": "2022-11-28",
            "X-GitHub-Request-Id": secrets.token_hex(8).upper()}
    hdrs.update(headers)
    if body is None:
        return web.Response(status=status, headers=hdrs)
    if isinstance(body, (bytes, str)):
        ct = hdrs.pop("Content-Type", "text/plain; charset=utf-8")
        resp = web.Response(status=status, body=body.encode() if isinstance(body, str) else body, headers=hdrs)
        resp.content_type = ct.split(";")[0]
        return resp
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=hdrs)


STATE_KEY = web.AppKey("github_state", GitHubState)


async def _handle(request: web.Request) -> web.StreamResponse:
    s: GitHubState = request.app[STATE_KEY]
    raw_body = await request.read()
    path = request.rel_url.raw_path
    base_url = f"{request.scheme}://{request.host}"
    query = dict(request.query)
    body: Any = None
    json_error = False
    if raw_body.strip():
        try:
            body = json.loads(raw_body)
        except ValueError:
            json_error = True
    rec = RequestRecord(request.method, unquote(path), query, body)
    s.requests.append(rec)

    # The log archive a logs redirect points at: no API rules apply.
    m = re.fullmatch(r"/_sim/actions/jobs/(\d+)/logs", path)
    if m and request.method == "GET":
        rec.auth = "token" if request.headers.get("Authorization") else None  # a leaked token shows here
        job = s.jobs.get(int(m.group(1)))
        if job is None or s._log_nonces.get(query.get("sig", "")) != job.id or job.log_text is None:
            rec.status = 404
            return web.Response(status=404, text="Not Found")
        rec.status = 200
        return web.Response(status=200, text=job.log_text, content_type="text/plain")

    route_, params, path_known = find_route(request.method, path)
    ctx = Ctx(request, s, Render(s, base_url), params, query, body, base_url=base_url)
    key, bucket, limit = _rate_bucket(ctx, route_)
    rec.auth = "jwt" if route_ is not None and route_.auth == "jwt" else (
        "token" if request.headers.get("Authorization") else None)

    def finish(status: int, out: Any, headers: dict | None = None) -> web.Response:
        rec.status = status
        h = _rate_headers(bucket, limit)
        h.update(headers or {})
        return _respond(status, out, h)

    def violation(kind: str, detail: str) -> None:
        s.violations.append(Violation(request.method, unquote(path), kind, detail, body))

    # 1. Validate against GitHub's description (violations are recorded even if a fault fires).
    invalid: tuple[int, str, list] | None = None
    if route_ is None:
        violation("unknown-route", f"{request.method} {path} is not an operation in the simulator's "
                                   f"OpenAPI description" + (" (wrong method)" if path_known else ""))
        invalid = (404, "Not Found", None)
    elif json_error:
        violation("invalid-json", "request body is not JSON")
        invalid = (400, "Problems parsing JSON", None)
    else:
        if not request.headers.get("User-Agent"):
            violation("no-user-agent", "GitHub refuses requests without a User-Agent header")
            invalid = (403, "Request forbidden by administrative rules. Please make sure your request has a "
                            "User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api"
                            "#user-agent-required). Check https://developer.github.com for other possible causes.",
                       None)
        else:
            res = _validate(route_, params, request, raw_body, body)
            if res is not None:
                violation("invalid-request", f"{res[1]} {res[2]}")
                invalid = res
            extra = _unknown_query(route_, query.keys())
            if extra:
                violation("unknown-query-parameter", ", ".join(extra))

    # 2. Injected faults.
    def fault_answer(f: Fault) -> web.Response:
        fbody = f.body if f.body is not None else error_body(f.status, {
            502: "Server Error", 500: "Server Error", 503: "Service Unavailable", 429: "Too Many Requests",
            403: "Forbidden", 404: "Not Found", 422: "Validation Failed"}.get(f.status, "Error"))
        return finish(f.status, fbody, f.headers)

    after: Fault | None = None
    for f in s.faults:
        if f.matches(request.method, unquote(path)):
            f.times -= 1
            f.hits += 1
            if f.landed:
                after = f
                break
            bucket[0] += 1
            return fault_answer(f)

    if invalid is not None:
        status, message, errors = invalid
        return finish(status, error_body(status, message, errors))

    # 3. Primary rate limit.
    if bucket[0] >= limit:
        rec.status = 403
        return finish(403, error_body(403, f"API rate limit exceeded for {key}."))
    bucket[0] += 1

    # 4. Authentication, authorisation, then the handler.
    try:
        _authenticate(ctx, route_)
        result = route_.handler(ctx)
    except HTTPError as e:
        s.refusals.append(Violation(request.method, unquote(path), f"http-{e.status}",
                                    e.message + (f" {e.errors}" if e.errors else ""), body))
        return finish(e.status, error_body(e.status, e.message, e.errors), e.headers)
    status, out = result[0], result[1]
    headers = result[2] if len(result) > 2 else {}
    if after is not None:
        return fault_answer(after)
    return finish(status, out, headers)


def make_github_app(state: GitHubState) -> web.Application:
    """An aiohttp application serving ``state`` as GitHub's REST API."""
    load_spec()
    app = web.Application(client_max_size=256 * 1024 * 1024)
    app[STATE_KEY] = state
    app.router.add_route("*", "/{tail:.*}", _handle)
    return app


def make_app_jwt(private_key: str | bytes, app_id: int | str, *, now: float | None = None,
                 ttl: int = 540, backdate: int = 60) -> str:
    """An App JWT the way GitHub documents it (for tests that talk to the simulator directly)."""
    now = int(now if now is not None else time.time())
    return jwt.encode({"iat": now - backdate, "exp": now + ttl, "iss": str(app_id)}, private_key, algorithm="RS256")
