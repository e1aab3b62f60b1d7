"""The records :class:`~.state.GitHubState` keeps: installations, tokens, repositories, pulls, comments, reviews, check runs, jobs, requests, violations and faults."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from .common import ZERO_SHA
from .gitstore import GitStore


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
