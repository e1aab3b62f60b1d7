"""The simulated GitHub in memory: :class:`GitHubState` and the helpers tests set it up with."""

from __future__ import annotations

import random
import re
import secrets
import string
import time
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import quote

from .common import (
    DEFAULT_APP_EVENTS, DEFAULT_APP_PERMISSIONS, HTML_BASE, HTTPError, error_body, iso, node_id,
)
from .diffs import FileDiff, diff_trees
from .gitstore import Signature, TreeEntry, read_git_repo
from .records import (
    ActionsJob, CheckRun, Fault, Installation, Issue, IssueComment, IssuedToken, PullRequest, Repo,
    RequestRecord, Review, ReviewComment, Violation,
)


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
        self.manifest_codes: dict[str, Any] = {}  # the manifest flow's codes (manifests.ManifestCode)
        self.manifests: list[dict] = []  # every manifest registered, in order

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

    def add_issue_comment(self, repo: "str | Repo", number: int, user: str, body: str) -> IssueComment:
        """A comment a person wrote on issue or PR `number` (for the webhook a test then delivers)."""
        repo = self.repo(repo)
        now = self.now()
        c = IssueComment(self.next_id("issue_comment", 3000000000), repo, number, user, body, now, now)
        self.issue_comments[c.id] = c
        self.add_user(user)
        return c

    def add_review_comment(self, repo: "str | Repo", number: int, user: str, body: str, *, path: str,
                           line: int, side: str = "RIGHT") -> ReviewComment:
        """A review comment a person wrote on a line of PR `number`'s head (in a review of its own)."""
        pr = self.pull(repo, number)
        now = self.now()
        review = Review(self.next_id("review", 80000000), pr, user, "", "COMMENTED", pr.head_sha, now)
        self.reviews[review.id] = review
        c = ReviewComment(self.next_id("review_comment", 90000000), pr, review.id, user, body, path, pr.head_sha,
                          line, side, None, None, None, "@@ -1 +1 @@", now, now)
        self.review_comments[c.id] = c
        self.add_user(user)
        return c

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
