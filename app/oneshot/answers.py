"""What GitHub would answer to a write a dry run does not send (pure, but for its id counters).

The pipelines and custom tools read back what they need from a write's answer: an id, an
`html_url`, a commit or tree sha, a pull request's number. `FakeWrites.answer` gives them that,
shaped as GitHub's REST API shapes it, echoing the request's body, so everything after the write
goes on as if it had been posted. Objects written earlier in the run are remembered, so an update
(a check run completed, a comment edited) answers with the whole object.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

FIRST_ID = 9_000_000_001  # far above the ids of today's objects: never mistaken for one that exists
FIRST_PR = 90_001

_REPO = r"/repos/(?P<repo>[^/]+/[^/]+)"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def git_blob_sha(content: bytes) -> str:
    """The sha git gives a blob with this content (what GitHub answers to POST git/blobs)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def fake_sha(*parts: object) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()


@dataclass
class FakeWrites:
    """GitHub's side of the writes a dry run keeps to itself: their answers, with fresh ids."""

    web_url: str = "https://github.com"
    api_url: str = "https://api.github.com"
    login: str = "prmedic[bot]"
    _ids: itertools.count = field(default_factory=lambda: itertools.count(FIRST_ID))
    _numbers: itertools.count = field(default_factory=lambda: itertools.count(FIRST_PR))
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)  # API path of each object written → it

    def answer(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        """(status, JSON answer) GitHub would give to `method path` with `body`."""
        body = dict(body or {})
        for pattern, handler in _ROUTES:
            match = re.fullmatch(pattern, path)
            if match and handler[0] == method:
                return handler[1](self, match, body)
        if method in ("PATCH", "PUT") and path in self.objects:
            return 200, self._update(path, body)
        return (204 if method == "DELETE" else 200), {"id": next(self._ids), **body}

    # -- helpers -------------------------------------------------------------------------------
    def _user(self) -> dict[str, Any]:
        return {"login": self.login, "type": "Bot" if self.login.endswith("[bot]") else "User"}

    def _keep(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[path] = obj
        return obj

    def _update(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        obj = {**self.objects.get(path, {}), **body, "updated_at": _now()}
        return self._keep(path, obj)

    def _html(self, repo: str, rest: str) -> str:
        return f"{self.web_url}/{repo}/{rest}"

    # -- the writes the pipelines make ---------------------------------------------------------
    def check_run(self, m: re.Match[str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        run_id = next(self._ids)
        obj = {"id": run_id, "status": "queued", "conclusion": None, **body, "app": None,
               "html_url": self._html(m["repo"], f"runs/{run_id}"), "started_at": body.get("started_at") or _now()}
        return 201, self._keep(f"/repos/{m['repo']}/check-runs/{run_id}", obj)

    def review(self, m: re.Match[str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        review_id = next(self._ids)
        state = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED"}.get(body.get("event") or "",
                                                                                   "COMMENTED")
        obj = {"id": review_id, "user": self._user(), "body": body.get("body") or "", "state": state,
               "commit_id": body.get("commit_id"), "submitted_at": _now(),
               "html_url": self._html(m["repo"], f"pull/{m['number']}#pullrequestreview-{review_id}")}
        return 200, self._keep(f"/repos/{m['repo']}/pulls/{m['number']}/reviews/{review_id}", obj)

    def issue_comment(self, m: re.Match[str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        comment_id = next(self._ids)
        obj = {"id": comment_id, "user": self._user(), "body": body.get("body") or "", "created_at": _now(),
               "html_url": self._html(m["repo"], f"pull/{m['number']}#issuecomment-{comment_id}")}
        return 201, self._keep(f"/repos/{m['repo']}/issues/comments/{comment_id}", obj)

    def edited_comment(self, m: re.Match[str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        kind, anchor = ("pulls", "discussion_r") if m["kind"] == "pulls" else ("issues", "issuecomment-")
        path = f"/repos/{m['repo']}/{kind}/comments/{m['id']}"
        if path not in self.objects:  # a comment that exists on GitHub: its pull request is not known here
            self.objects[path] = {"id": int(m["id"]), "user": self._user(),
                                  "html_url": self._html(m["repo"], f"pulls#{anchor}{m['id']}")}
        return 200, self._update(path, body)

    def review_reply(self, m: re.Match[str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        reply_id = next(self._ids)
        obj = {"id": reply_id, "user": self._user(), "body": body.get("body") or "", "in_reply_to_id": int(m["id"]),
               "html_url": self._html(m["repo"], f"pull/{m['number']}#discussion_r{reply_id}")}
        return 201, self._keep(f"/repos/{m['repo']}/pulls/comments/{reply_id}", obj)

    def pull(self, m: re.Match[str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        number = next(self._numbers)
        obj = {"id": next(self._ids), "number": number, "state": "open", "title": body.get("title"),
               "body": body.get("body"), "user": self._user(), "head": {"ref": body.get("head")},
               "base": {"ref": body.get("base")}, "html_url": self._html(m["repo"], f"pull/{number}")}
        return 201, self._keep(f"/repos/{m['repo']}/pulls/{number}", obj)

    def edited_pull(self, m: re.Match[str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        path = f"/repos/{m['repo']}/pulls/{m['number']}"
        self.objects.setdefault(path, {"number": int(m["number"]),
                                       "html_url": self._html(m["repo"], f"pull/{m['number']}")})
        return 200, self._update(path, body)

    def blob(self, m: re.Match[str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        content = body.get("content") or ""
        data = base64.b64decode(content) if body.get("encoding") == "base64" else content.encode()
        sha = git_blob_sha(data)
        return 201, {"sha": sha, "url": f"{self.api_url}/repos/{m['repo']}/git/blobs/{sha}"}

    def tree(self, m: re.Match[str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        sha = fake_sha("tree", body.get("base_tree"), body.get("tree"))
        return 201, {"sha": sha, "url": f"{self.api_url}/repos/{m['repo']}/git/trees/{sha}", "tree": [],
                     "truncated": False}

    def commit(self, m: re.Match[str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        sha = fake_sha("commit", body.get("tree"), body.get("parents"), body.get("message"))
        return 201, {"sha": sha, "message": body.get("message"), "tree": {"sha": body.get("tree")},
                     "parents": [{"sha": p} for p in body.get("parents") or []],
                     "html_url": self._html(m["repo"], f"commit/{sha}")}

    def ref(self, m: re.Match[str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        moved = m.groupdict().get("ref")  # PATCH git/refs/heads/<ref>; else POST git/refs
        ref = f"refs/heads/{moved}" if moved else body.get("ref")
        return (200 if moved else 201), {"ref": ref, "object": {"sha": body.get("sha"), "type": "commit"}}

    def reaction(self, m: re.Match[str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return 201, {"id": next(self._ids), "content": body.get("content"), "user": self._user()}


_ROUTES: list[tuple[str, tuple[str, Any]]] = [
    (rf"{_REPO}/check-runs", ("POST", FakeWrites.check_run)),
    (rf"{_REPO}/pulls/(?P<number>\d+)/reviews", ("POST", FakeWrites.review)),
    (rf"{_REPO}/issues/(?P<number>\d+)/comments", ("POST", FakeWrites.issue_comment)),
    (rf"{_REPO}/(?P<kind>issues|pulls)/comments/(?P<id>\d+)", ("PATCH", FakeWrites.edited_comment)),
    (rf"{_REPO}/pulls/(?P<number>\d+)/comments/(?P<id>\d+)/replies", ("POST", FakeWrites.review_reply)),
    (rf"{_REPO}/pulls", ("POST", FakeWrites.pull)),
    (rf"{_REPO}/pulls/(?P<number>\d+)", ("PATCH", FakeWrites.edited_pull)),
    (rf"{_REPO}/git/blobs", ("POST", FakeWrites.blob)),
    (rf"{_REPO}/git/trees", ("POST", FakeWrites.tree)),
    (rf"{_REPO}/git/commits", ("POST", FakeWrites.commit)),
    (rf"{_REPO}/git/refs", ("POST", FakeWrites.ref)),
    (rf"{_REPO}/git/refs/heads/(?P<ref>.+)", ("PATCH", FakeWrites.ref)),
    (rf"{_REPO}/(?:issues|pulls)/comments/\d+/reactions", ("POST", FakeWrites.reaction)),
]
