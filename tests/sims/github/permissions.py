"""What a GitHub App needs for each REST operation prmedic calls and for each event it subscribes to.

GitHub's OpenAPI description has no permission metadata (its ``x-github`` holds only
``category``, ``subcategory``, ``enabledForGitHubApps``, ``githubCloudOnly``…), so this table is
written by hand from GitHub's documentation ("Permissions required for GitHub Apps", and the
"fine-grained access" box of each REST page; "Webhook events and payloads" for the events).
An entry lists alternatives: any one ``(permission, level)`` suffices (an issue comment on a pull
request is allowed by ``issues`` *or* ``pull_requests``); ``()`` means no repository permission
(the App's JWT, or a call about the installation itself). The simulator's routes declare the same
(``routes/*``: ``perms=``), and ``tests/test_setup.py`` checks that the two agree.
"""

from __future__ import annotations

Need = tuple[tuple[str, str], ...]

R, W = "read", "write"

ENDPOINT_PERMISSIONS: dict[tuple[str, str], Need] = {
    # the App and its installations: the JWT, or the installation token itself
    ("GET", "/app"): (),
    ("POST", "/app/installations/{installation_id}/access_tokens"): (),
    ("GET", "/installation/repositories"): (),
    ("GET", "/repos/{owner}/{repo}/installation"): (),  # the App's JWT: which installation covers a repository
    ("POST", "/app-manifests/{code}/conversions"): (),  # no authentication: the code is the credential
    # metadata
    ("GET", "/repos/{owner}/{repo}"): (("metadata", R),),
    ("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission"): (("metadata", R),),
    # contents
    ("GET", "/repos/{owner}/{repo}/contents/{path}"): (("contents", R),),
    ("GET", "/repos/{owner}/{repo}/compare/{basehead}"): (("contents", R),),
    ("GET", "/repos/{owner}/{repo}/git/commits/{commit_sha}"): (("contents", R),),
    ("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}"): (("contents", R),),
    ("GET", "/repos/{owner}/{repo}/git/blobs/{file_sha}"): (("contents", R),),
    ("GET", "/repos/{owner}/{repo}/git/ref/{ref}"): (("contents", R),),
    ("POST", "/repos/{owner}/{repo}/git/blobs"): (("contents", W),),
    ("POST", "/repos/{owner}/{repo}/git/trees"): (("contents", W),),
    ("POST", "/repos/{owner}/{repo}/git/commits"): (("contents", W),),
    ("POST", "/repos/{owner}/{repo}/git/refs"): (("contents", W),),
    ("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}"): (("contents", W),),
    ("DELETE", "/repos/{owner}/{repo}/git/refs/{ref}"): (("contents", W),),
    # pull requests
    ("GET", "/repos/{owner}/{repo}/pulls"): (("pull_requests", R),),
    ("POST", "/repos/{owner}/{repo}/pulls"): (("pull_requests", W),),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}"): (("pull_requests", R),),
    ("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}"): (("pull_requests", W),),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/files"): (("pull_requests", R),),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/commits"): (("pull_requests", R),),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"): (("pull_requests", R),),
    ("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"): (("pull_requests", W),),
    ("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}"): (("pull_requests", W),),
    ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/comments"): (("pull_requests", R),),
    ("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies"): (("pull_requests", W),),
    ("PATCH", "/repos/{owner}/{repo}/pulls/comments/{comment_id}"): (("pull_requests", W),),
    ("POST", "/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions"): (("pull_requests", W),),
    ("GET", "/repos/{owner}/{repo}/commits/{commit_sha}/pulls"): (("pull_requests", R),),
    # issue comments (a pull request's conversation): issues or pull requests
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments"): (("issues", R), ("pull_requests", R)),
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments"): (("issues", W), ("pull_requests", W)),
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}"): (("issues", W), ("pull_requests", W)),
    ("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions"): (("issues", W), ("pull_requests", W)),
    # checks
    ("POST", "/repos/{owner}/{repo}/check-runs"): (("checks", W),),
    ("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}"): (("checks", R),),
    ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}"): (("checks", W),),
    ("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations"): (("checks", R),),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs"): (("checks", R),),
    # actions
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs"): (("actions", R),),
    ("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}"): (("actions", R),),
    ("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs"): (("actions", R),),
}

# "To subscribe to this event, a GitHub App must have at least read-level access for …"
EVENT_PERMISSIONS: dict[str, tuple[str, str]] = {
    "check_run": ("checks", R),
    "check_suite": ("checks", R),
    "issue_comment": ("issues", R),
    "issues": ("issues", R),
    "pull_request": ("pull_requests", R),
    "pull_request_review": ("pull_requests", R),
    "pull_request_review_comment": ("pull_requests", R),
    "pull_request_review_thread": ("pull_requests", R),
    "push": ("contents", R),
    "workflow_job": ("actions", R),
    "workflow_run": ("actions", R),
}

# Sent to every App without a subscription (and not accepted in a manifest's default_events).
AUTOMATIC_EVENTS = frozenset({"installation", "installation_repositories", "installation_target", "meta",
                              "ping", "github_app_authorization"})

# The repository and organisation permissions a manifest may ask for (GitHub's `app-permissions`).
LEVELS = {"none": 0, "read": 1, "write": 2, "admin": 3}
