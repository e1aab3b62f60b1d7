"""The part of a webhook payload that routing reads, decoded straight from the body.

A `pull_request` payload is about 20 KiB, almost all of it repository and user records
that no router looks at. Decoding into these structs skips those parts without building
Python objects for them, which halves the cost of the hot path's largest step. Any field
a router reads must be declared here; everything is optional, so an event that lacks a
field still decodes and the router decides.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

# Every id and count a job keeps ends up in a SQLite INTEGER column or a JSON blob: both stop
# at 64 bits, so a larger number is a malformed payload, refused here with the field named.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _Struct(msgspec.Struct, gc=False, omit_defaults=True):
    pass


class Account(_Struct):
    login: str | None = None
    type: str | None = None
    id: Int64 | None = None


class App(_Struct):
    id: Int64 | None = None
    slug: str | None = None


class ViaApp(_Struct):
    performed_via_github_app: App | None = None


class RepoName(_Struct):
    full_name: str | None = None


class Repository(_Struct):
    full_name: str | None = None
    id: Int64 | None = None
    private: bool | None = None
    default_branch: str | None = None
    html_url: str | None = None
    language: str | None = None


class GitRef(_Struct):
    sha: str | None = None
    ref: str | None = None
    repo: RepoName | None = None


class Label(_Struct):
    name: str | None = None


class PullRequest(_Struct):
    number: Int64 | None = None
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
    changed_files: Int64 | None = None
    additions: Int64 | None = None
    deletions: Int64 | None = None
    performed_via_github_app: App | None = None


class PullRequestRef(_Struct):
    number: Int64 | None = None
    head: GitRef | None = None
    base: GitRef | None = None


class CheckSuite(_Struct):
    id: Int64 | None = None
    app: App | None = None
    head_branch: str | None = None  # tells runs on prmedic's fix branches apart


class CheckRun(_Struct):
    id: Int64 | None = None
    name: str | None = None
    conclusion: str | None = None
    head_sha: str | None = None
    html_url: str | None = None
    details_url: str | None = None
    app: App | None = None
    check_suite: CheckSuite | None = None
    pull_requests: list[PullRequestRef] | None = None


class RequestedAction(_Struct):
    identifier: str | None = None  # the button a person clicked on a check run


class WorkflowRun(_Struct):
    id: Int64 | None = None
    name: str | None = None
    conclusion: str | None = None
    head_sha: str | None = None
    head_branch: str | None = None
    html_url: str | None = None
    run_attempt: Int64 | None = None
    workflow_id: Int64 | None = None
    event: str | None = None
    pull_requests: list[PullRequestRef] | None = None


class Comment(_Struct):
    id: Int64 | None = None
    body: str | None = None
    html_url: str | None = None
    user: Account | None = None
    author_association: str | None = None
    performed_via_github_app: App | None = None
    path: str | None = None
    line: Int64 | None = None
    side: str | None = None
    diff_hunk: str | None = None
    in_reply_to_id: Int64 | None = None
    commit_id: str | None = None


class PullLink(_Struct):
    url: str | None = None


class Issue(_Struct):
    number: Int64 | None = None
    user: Account | None = None
    pull_request: PullLink | None = None
    performed_via_github_app: App | None = None


class Installation(_Struct):
    id: Int64 | None = None
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
    requested_action: RequestedAction | None = None
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
    """The routed fields of a JSON webhook body, as plain dicts and lists.

    The structs bound the depth of what comes out; a body nested deeper than the interpreter's
    recursion limit (even in fields that are skipped) is refused like any other malformed body.
    """
    try:
        return msgspec.to_builtins(_decoder.decode(body))
    except msgspec.DecodeError as exc:
        raise PayloadError(str(exc)) from None
    except RecursionError:
        raise PayloadError("JSON nests too deeply") from None
