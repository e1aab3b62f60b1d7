"""The part of a webhook payload that routing reads, decoded straight from the body.

A `pull_request` payload is about 20 KiB, almost all of it repository and user records
that no router looks at. Decoding into these structs skips those parts without building
Python objects for them, which halves the cost of the hot path's largest step. Any field
a router reads must be declared here; everything is optional, so an event that lacks a
field still decodes and the router decides.
"""

from __future__ import annotations

from typing import Any

import msgspec


class _Struct(msgspec.Struct, gc=False, omit_defaults=True):
    pass


class Account(_Struct):
    login: str | None = None
    type: str | None = None
    id: int | None = None


class App(_Struct):
    id: int | None = None
    slug: str | None = None


class ViaApp(_Struct):
    performed_via_github_app: App | None = None


class RepoName(_Struct):
    full_name: str | None = None


class Repository(_Struct):
    full_name: str | None = None
    id: int | None = None
    private: bool | None = None
    default_branch: str | None = None
    html_url: str | None = None


class GitRef(_Struct):
    sha: str | None = None
    ref: str | None = None
    repo: RepoName | None = None


class Label(_Struct):
    name: str | None = None


class PullRequest(_Struct):
    number: int | None = None
    title: str | None = None
    body: str | None = None
    draft: bool | None = None
    state: str | None = None
    html_url: str | None = None
    user: Account | None = None
    author_association: str | None = None
    labels: list[Label] | None = None
    head: GitRef | None = None
    base: GitRef | None = None
    changed_files: int | None = None
    additions: int | None = None
    deletions: int | None = None
    performed_via_github_app: App | None = None


class PullRequestRef(_Struct):
    number: int | None = None
    head: GitRef | None = None
    base: GitRef | None = None


class CheckSuite(_Struct):
    id: int | None = None
    app: App | None = None
    head_branch: str | None = None  # tells runs on prmedic's fix branches apart


class CheckRun(_Struct):
    id: int | None = None
    name: str | None = None
    conclusion: str | None = None
    head_sha: str | None = None
    html_url: str | None = None
    details_url: str | None = None
    app: App | None = None
    check_suite: CheckSuite | None = None
    pull_requests: list[PullRequestRef] | None = None


class WorkflowRun(_Struct):
    id: int | None = None
    name: str | None = None
    conclusion: str | None = None
    head_sha: str | None = None
    head_branch: str | None = None
    html_url: str | None = None
    run_attempt: int | None = None
    workflow_id: int | None = None
    event: str | None = None
    pull_requests: list[PullRequestRef] | None = None


class Comment(_Struct):
    id: int | None = None
    body: str | None = None
    html_url: str | None = None
    user: Account | None = None
    author_association: str | None = None
    performed_via_github_app: App | None = None
    path: str | None = None
    line: int | None = None
    side: str | None = None
    diff_hunk: str | None = None
    in_reply_to_id: int | None = None
    commit_id: str | None = None


class PullLink(_Struct):
    url: str | None = None


class Issue(_Struct):
    number: int | None = None
    pull_request: PullLink | None = None
    performed_via_github_app: App | None = None


class Installation(_Struct):
    id: int | None = None
    account: Account | None = None
    repository_selection: str | None = None
    suspended_at: str | None = None


class Envelope(_Struct):
    action: str | None = None
    sender: Account | None = None
    installation: Installation | None = None
    repository: Repository | None = None
    pull_request: PullRequest | None = None
    check_run: CheckRun | None = None
    check_suite: CheckSuite | None = None
    workflow_run: WorkflowRun | None = None
    comment: Comment | None = None
    issue: Issue | None = None
    review: ViaApp | None = None
    repositories: list[RepoName] | None = None
    repositories_added: list[RepoName] | None = None
    repositories_removed: list[RepoName] | None = None
    repository_selection: str | None = None
    before: str | None = None
    after: str | None = None


_decoder = msgspec.json.Decoder(Envelope)


class PayloadError(ValueError):
    """The body is not JSON, or a field routing reads has the wrong type."""


def decode_payload(body: bytes) -> dict[str, Any]:
    """The routed fields of a JSON webhook body, as plain dicts and lists."""
    try:
        return msgspec.to_builtins(_decoder.decode(body))
    except msgspec.DecodeError as exc:
        raise PayloadError(str(exc)) from None
