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

Layout: ``common`` (constants, errors), ``spec`` (the OpenAPI description and request checks),
``gitstore`` and ``diffs`` (git objects, GitHub-style diffs), ``records`` and ``state`` (what the
simulated GitHub holds), ``render`` (JSON as GitHub shows it), ``routing`` and ``routes/`` (one
module per API area), ``server`` (the request pipeline, :func:`make_github_app`, :func:`make_app_jwt`).
"""

from __future__ import annotations

from .common import (
    DEFAULT_APP_EVENTS, DEFAULT_APP_PERMISSIONS, DOCS_URL, HTML_BASE, HTTPError, MAX_COMMENT_BODY,
    MAX_PR_COMMITS, MAX_PR_FILES, PERM_LEVEL, REACTIONS, ZERO_SHA, b64_wrapped, error_body, iso, node_id,
    not_found, parse_iso, unprocessable, validation_failed,
)
from .spec import SPEC_PATH, load_spec
from .gitstore import Commit, GitStore, Signature, TreeEntry, git_hash, read_git_repo
from .diffs import FileDiff, Hunk, HunkLine, diff_trees, make_patch
from .records import (
    ActionsJob, CheckRun, Fault, Installation, Issue, IssueComment, IssuedToken, PullRequest, Repo,
    RequestRecord, Review, ReviewComment, Violation,
)
from .state import GitHubState
from .render import Render
from .routing import Ctx, MULTI_SEGMENT, ROUTES, Route, find_route, paginate, route
from .server import STATE_KEY, make_app_jwt, make_github_app

__all__ = [
    "ActionsJob", "CheckRun", "Commit", "Ctx", "DEFAULT_APP_EVENTS", "DEFAULT_APP_PERMISSIONS", "DOCS_URL",
    "Fault", "FileDiff", "GitHubState", "GitStore", "HTML_BASE", "HTTPError", "Hunk", "HunkLine",
    "Installation", "Issue", "IssueComment", "IssuedToken", "MAX_COMMENT_BODY", "MAX_PR_COMMITS",
    "MAX_PR_FILES", "MULTI_SEGMENT", "PERM_LEVEL", "PullRequest", "REACTIONS", "ROUTES", "Render", "Repo",
    "RequestRecord", "Review", "ReviewComment", "Route", "SPEC_PATH", "STATE_KEY", "Signature", "TreeEntry",
    "Violation", "ZERO_SHA", "b64_wrapped", "diff_trees", "error_body", "find_route", "git_hash", "iso",
    "load_spec", "make_app_jwt", "make_github_app", "make_patch", "node_id", "not_found", "paginate",
    "parse_iso", "read_git_repo", "route", "unprocessable", "validation_failed",
]
