"""The GitHub simulator is strict: it refuses (and records) what GitHub would refuse."""

from __future__ import annotations

import re
import subprocess
import time

import aiohttp
import pytest

try:  # tests/ is on sys.path (rootdir-less layout) ...
    from sims.github import make_app_jwt
    from sims.github_fixtures import (INSTALLATION_ID, OWNER, REPO_FULL_NAME, app_private_key,  # noqa: F401
                                      generate_private_key, git_repo, github_openapi_spec, github_server,
                                      github_state)
except ImportError:  # ... or the project root is (tests/ as a package)
    from tests.sims.github import make_app_jwt
    from tests.sims.github_fixtures import (INSTALLATION_ID, OWNER, REPO_FULL_NAME, app_private_key,  # noqa: F401
                                            generate_private_key, git_repo, github_openapi_spec,
                                            github_server, github_state)


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str, token: str | None):
        self.session, self.base, self.token = session, base, token

    async def req(self, method: str, path: str, *, json=None, params=None, headers=None, token=...,
                  allow_redirects: bool = True):
        h = {"Accept": "application/vnd.github+json"}
        tok = self.token if token is ... else token
        if tok:
            h["Authorization"] = f"token {tok}"
        h.update(headers or {})
        async with self.session.request(method, self.base + path, json=json, params=params, headers=h,
                                        allow_redirects=allow_redirects) as r:
            ctype = r.headers.get("Content-Type", "")
            body = await r.json() if "json" in ctype else await r.text()
            return r.status, body, r.headers


@pytest.fixture
async def gh(github_server):
    async with aiohttp.ClientSession() as session:
        yield Client(session, github_server.url, github_server.token())


@pytest.fixture
def feature_repo(github_state, git_repo):
    """octo-org/demo imported from a real git repo: main + feature (one modified, one added file)."""
    repo = git_repo({"app.py": "".join(f"line {i}\n" for i in range(1, 41)), "README.md": "# demo\n"})
    repo.checkout("feature", create=True)
    lines = [f"line {i}\n" for i in range(1, 41)]
    lines[19] = "line 20 changed\n"
    repo.commit({"app.py": "".join(lines), "new.txt": "hello\n"}, "Change things")
    github_state.add_repo(OWNER, "demo", from_git=repo.path, default_branch="main")
    pr = github_state.add_pull_request("octo-org/demo", 7, head_ref="feature", base_ref="main", user="alice")
    return repo, pr


# ----- strictness ---------------------------------------------------------------------------


async def test_unknown_body_key_is_refused_and_recorded(gh, github_state):
    github_state.expect_violations = True
    status, body, _ = await gh.req("POST", f"/repos/{REPO_FULL_NAME}/issues/1/comments",
                                   json={"body": "hi", "bodyy": "typo"})
    assert status == 422
    assert "is not a permitted key" in body["message"]
    assert [v.kind for v in github_state.violations] == ["invalid-request"]
    assert not github_state.issue_comments


async def test_missing_required_field_is_refused_and_recorded(gh, github_state):
    github_state.expect_violations = True
    status, body, _ = await gh.req("POST", f"/repos/{REPO_FULL_NAME}/check-runs", json={"name": "prmedic"})
    assert status == 422
    assert body["message"] == "Validation Failed"
    assert {"resource": "Body", "code": "missing_field", "field": "head_sha"}.items() <= body["errors"][0].items()
    assert len(github_state.violations) == 1
    # An enum the description does not allow.
    head = github_state.resolve(REPO_FULL_NAME, "main")
    status, body, _ = await gh.req("POST", f"/repos/{REPO_FULL_NAME}/check-runs",
                                   json={"name": "x", "head_sha": head, "status": "done"})
    assert status == 422 and len(github_state.violations) == 2
    assert not github_state.check_runs


async def test_unknown_route_and_wrong_method_are_404_and_recorded(gh, github_state):
    github_state.expect_violations = True
    status, body, _ = await gh.req("GET", f"/repos/{REPO_FULL_NAME}/no-such-thing")
    assert status == 404 and body["message"] == "Not Found"
    status, _, _ = await gh.req("DELETE", f"/repos/{REPO_FULL_NAME}")
    assert status == 404
    status, _, _ = await gh.req("GET", f"/repos/{REPO_FULL_NAME}/pulls/abc")
    assert status == 404
    assert [v.kind for v in github_state.violations] == ["unknown-route", "unknown-route", "invalid-request"]


async def test_valid_requests_leave_no_violation(gh, github_state):
    status, body, headers = await gh.req("GET", f"/repos/{REPO_FULL_NAME}")
    assert status == 200 and body["full_name"] == REPO_FULL_NAME and body["default_branch"] == "main"
    for h in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-ratelimit-used",
              "x-ratelimit-resource"):
        assert h in headers
    assert int(headers["x-ratelimit-remaining"]) == int(headers["x-ratelimit-limit"]) - 1
    assert github_state.violations == []
    assert github_state.count("GET", r"^/repos/octo-org/hello-world$") == 1


# ----- authentication ----------------------------------------------------------------------


async def test_bad_auth_is_401(gh, github_server, github_state):
    path = f"/repos/{REPO_FULL_NAME}"
    assert (await gh.req("GET", path, token=None))[0] == 401
    status, body, _ = await gh.req("GET", path, token="ghs_bogus")
    assert status == 401 and body["message"] == "Bad credentials" and "documentation_url" in body
    # Expired token.
    tok = github_server.token()
    github_state.advance(3601)
    assert (await gh.req("GET", path, token=tok))[0] == 401
    # Installation token where the App JWT is needed.
    status, _, _ = await gh.req("GET", "/app", headers={"Authorization": f"token {github_server.token()}"},
                                token=None)
    assert status == 401
    # JWT signed by another key; JWT living too long; good JWT.
    other = make_app_jwt(generate_private_key(), github_state.app_id, now=github_state.now())
    assert (await gh.req("GET", "/app", headers={"Authorization": f"Bearer {other}"}, token=None))[0] == 401
    long = make_app_jwt(github_server.private_key, github_state.app_id, now=github_state.now(), ttl=1200)
    assert (await gh.req("GET", "/app", headers={"Authorization": f"Bearer {long}"}, token=None))[0] == 401
    status, body, _ = await gh.req("GET", "/app", headers={"Authorization": f"Bearer {github_server.jwt()}"},
                                   token=None)
    assert status == 200 and body["id"] == 12345 and body["slug"] == "prmedic"


async def test_token_minting_honours_repositories_and_permissions(gh, github_server, github_state):
    github_state.add_repo(OWNER, "secret", private=True)
    github_state.commit_files(f"{OWNER}/secret", {"a.txt": "a\n"})
    jwt_h = {"Authorization": f"Bearer {github_server.jwt()}"}
    status, body, _ = await gh.req("POST", f"/app/installations/{INSTALLATION_ID}/access_tokens", token=None,
                                   headers=jwt_h, json={"repositories": ["hello-world"],
                                                        "permissions": {"contents": "read", "pull_requests": "write"}})
    assert status == 201 and body["token"].startswith("ghs_") and body["repository_selection"] == "selected"
    assert len(github_state.tokens_issued) == 1
    tok = body["token"]
    assert (await gh.req("GET", f"/repos/{OWNER}/secret", token=tok))[0] == 404
    assert (await gh.req("GET", f"/repos/{REPO_FULL_NAME}", token=tok))[0] == 200
    status, body, _ = await gh.req("POST", f"/repos/{REPO_FULL_NAME}/git/blobs", token=tok, json={"content": "x"})
    assert status == 403 and body["message"] == "Resource not accessible by integration"
    # More than the installation has: refused.
    status, _, _ = await gh.req("POST", f"/app/installations/{INSTALLATION_ID}/access_tokens", token=None,
                                headers=jwt_h, json={"permissions": {"administration": "write"}})
    assert status == 422
    assert (await gh.req("POST", "/app/installations/99/access_tokens", token=None, headers=jwt_h))[0] == 404


# ----- fault injection ---------------------------------------------------------------------


async def test_fault_injection(gh, github_state):
    path = f"/repos/{REPO_FULL_NAME}"
    github_state.inject_fault("GET", r"^/repos/[^/]+/[^/]+$", 502, times=2)
    assert (await gh.req("GET", path))[0] == 502
    assert (await gh.req("GET", path))[0] == 502
    assert (await gh.req("GET", path))[0] == 200

    github_state.inject_secondary_rate_limit("*", "hello-world", retry_after=1)
    status, body, headers = await gh.req("GET", path)
    assert status == 403 and headers["Retry-After"] == "1" and "secondary rate limit" in body["message"]

    github_state.inject_too_many_requests("GET", "hello-world", retry_after=2)
    status, _, headers = await gh.req("GET", path)
    assert status == 429 and headers["Retry-After"] == "2"

    github_state.inject_primary_rate_limit("GET", "hello-world", reset_in=30)
    status, _, headers = await gh.req("GET", path)
    assert status == 403 and headers["x-ratelimit-remaining"] == "0"
    assert int(headers["x-ratelimit-reset"]) >= int(time.time()) + 29
    assert (await gh.req("GET", path))[0] == 200
    assert [r.status for r in github_state.calls("GET", "hello-world$")] == [502, 502, 200, 403, 429, 403, 200]


async def test_rate_limit_exhaustion(gh, github_state):
    github_state.rate_limit = 2
    path = f"/repos/{REPO_FULL_NAME}"
    assert (await gh.req("GET", path))[0] == 200
    assert (await gh.req("GET", path))[0] == 200
    status, body, headers = await gh.req("GET", path)
    assert status == 403 and headers["x-ratelimit-remaining"] == "0" and "rate limit" in body["message"]
    github_state.advance(3601)  # the window resets (and the old token expires)
    gh.token = github_state.issue_token()
    assert (await gh.req("GET", path))[0] == 200


# ----- git semantics -----------------------------------------------------------------------


async def test_git_objects_agree_with_real_git(gh, github_state, git_repo):
    repo = git_repo({"src/a.py": "print('a')\n", "b.txt": "b\n"})
    github_state.add_repo(OWNER, "gitdemo", from_git=repo.path)
    base = f"/repos/{OWNER}/gitdemo"
    head = repo.head()
    status, body, _ = await gh.req("GET", f"{base}/git/ref/heads/main")
    assert status == 200 and body["object"]["sha"] == head
    status, commit, _ = await gh.req("GET", f"{base}/git/commits/{head}")
    assert commit["tree"]["sha"] == repo.tree()

    # Build, through the API, the same change real git makes.
    status, blob, _ = await gh.req("POST", f"{base}/git/blobs", json={"content": "print('A')\n"})
    assert status == 201 and blob["sha"] == subprocess.run(
        ["git", "hash-object", "--stdin"], input=b"print('A')\n", capture_output=True).stdout.decode().strip()
    status, tree, _ = await gh.req("POST", f"{base}/git/trees", json={
        "base_tree": commit["tree"]["sha"],
        "tree": [{"path": "src/a.py", "mode": "100644", "type": "blob", "sha": blob["sha"]},
                 {"path": "b.txt", "mode": "100644", "type": "blob", "sha": None},
                 {"path": "run.sh", "mode": "100755", "type": "blob", "content": "#!/bin/sh\n"}]})
    assert status == 201
    repo.write({"src/a.py": "print('A')\n", "b.txt": None, "run.sh": "#!/bin/sh\n"})
    repo.chmod_x("run.sh")
    assert tree["sha"] == repo.git("write-tree").strip()

    date = "2024-05-01T12:00:00Z"
    who = {"name": "Octo Cat", "email": "octocat@example.com", "date": date}
    status, new, _ = await gh.req("POST", f"{base}/git/commits", json={
        "message": "Update\n", "tree": tree["sha"], "parents": [head], "author": who, "committer": who})
    assert status == 201
    git_sha = repo.git("commit-tree", tree["sha"], "-p", head, "-m", "Update",
                       env={"GIT_AUTHOR_DATE": "1714564800 +0000", "GIT_COMMITTER_DATE": "1714564800 +0000"}).strip()
    assert new["sha"] == git_sha

    ref = f"{base}/git/refs/heads/main"
    assert (await gh.req("PATCH", ref, json={"sha": new["sha"]}))[0] == 200  # fast-forward
    status, body, _ = await gh.req("POST", f"{base}/git/refs", json={"ref": "refs/heads/main", "sha": head})
    assert status == 422 and body["message"] == "Reference already exists"
    status, body, _ = await gh.req("PATCH", ref, json={"sha": head})
    assert status == 422 and "not a fast forward" in body["message"]
    assert (await gh.req("PATCH", ref, json={"sha": head, "force": True}))[0] == 200
    assert github_state.files_at(f"{OWNER}/gitdemo", "main")["b.txt"] == b"b\n"
    assert github_state.violations == []


async def test_pr_files_have_real_patches_and_paginate(gh, github_state, feature_repo):
    repo, pr = feature_repo
    status, files, _ = await gh.req("GET", "/repos/octo-org/demo/pulls/7/files")
    assert status == 200
    by_name = {f["filename"]: f for f in files}
    assert by_name["new.txt"]["status"] == "added" and by_name["new.txt"]["patch"] == "@@ -0,0 +1 @@\n+hello"
    git_patch = repo.diff("main", "feature", "app.py")
    git_hunks = git_patch[git_patch.index("@@"):].rstrip("\n")
    assert by_name["app.py"]["patch"] == git_hunks
    assert by_name["app.py"]["additions"] == 1 and by_name["app.py"]["deletions"] == 1

    status, files, headers = await gh.req("GET", "/repos/octo-org/demo/pulls/7/files", params={"per_page": "1"})
    assert len(files) == 1 and 'rel="next"' in headers["Link"] and 'rel="last"' in headers["Link"]
    last = re.search(r'<([^>]+)>; rel="last"', headers["Link"]).group(1)
    assert "page=2" in last
    status, pull, _ = await gh.req("GET", "/repos/octo-org/demo/pulls/7")
    assert pull["head"]["sha"] == repo.head("feature") and pull["changed_files"] == 2


async def test_review_comment_outside_the_diff_refuses_the_whole_review(gh, github_state, feature_repo):
    _, pr = feature_repo
    path = "/repos/octo-org/demo/pulls/7/reviews"
    good = {"path": "app.py", "line": 20, "side": "RIGHT", "body": "ok"}
    bad = {"path": "app.py", "line": 2, "body": "line 2 is not in any hunk"}
    status, body, _ = await gh.req("POST", path, json={"event": "COMMENT", "body": "r", "comments": [good, bad]})
    assert status == 422 and "must be part of the diff" in body["errors"][0]
    assert github_state.reviews == {} and github_state.review_comments == {}
    status, review, _ = await gh.req("POST", path, json={
        "event": "COMMENT", "body": "r", "commit_id": pr.head_sha,
        "comments": [good, {"path": "app.py", "start_line": 18, "line": 21, "body": "range"}]})
    assert status == 200 and review["state"] == "COMMENTED"
    status, comments, _ = await gh.req("GET", "/repos/octo-org/demo/pulls/7/comments")
    assert [c["line"] for c in comments] == [20, 21] and comments[0]["diff_hunk"].startswith("@@")
    status, reply, _ = await gh.req("POST", f"/repos/octo-org/demo/pulls/7/comments/{comments[0]['id']}/replies",
                                    json={"body": "thanks"})
    assert status == 201 and reply["in_reply_to_id"] == comments[0]["id"]
    assert github_state.violations == []


async def test_a_reply_to_a_reply_is_refused_as_github_does(gh, github_state, feature_repo):
    top = github_state.add_review_comment("octo-org/demo", 7, "alice", "Why?", path="app.py", line=20)
    replies = f"/repos/octo-org/demo/pulls/7/comments/{top.id}/replies"
    status, reply, _ = await gh.req("POST", replies, json={"body": "Because."})
    assert status == 201 and reply["in_reply_to_id"] == top.id
    status, body, _ = await gh.req("POST", f"/repos/octo-org/demo/pulls/7/comments/{reply['id']}/replies",
                                   json={"body": "And a reply to the reply."})
    assert status == 422 and body["message"] == "Validation Failed"
    assert body["errors"][0]["field"] == "in_reply_to_id" and "replies to replies" in body["errors"][0]["message"]
    assert [c.in_reply_to_id for c in github_state.review_comments_of("octo-org/demo", 7)] == [None, top.id]
    status, _, _ = await gh.req("POST", "/repos/octo-org/demo/pulls/7/comments/99999/replies", json={"body": "x"})
    assert status == 404
    assert github_state.violations == []


async def test_editing_a_review_comment_is_checked(gh, github_state, feature_repo):
    top = github_state.add_review_comment("octo-org/demo", 7, "alice", "Why?", path="app.py", line=20)
    _, reply, _ = await gh.req("POST", f"/repos/octo-org/demo/pulls/7/comments/{top.id}/replies",
                               json={"body": "Because."})
    status, edited, _ = await gh.req("PATCH", f"/repos/octo-org/demo/pulls/comments/{reply['id']}",
                                     json={"body": "Because, edited."})
    assert status == 200 and edited["body"] == "Because, edited." and edited["in_reply_to_id"] == top.id
    status, _, _ = await gh.req("PATCH", f"/repos/octo-org/demo/pulls/comments/{top.id}", json={"body": "mine now"})
    assert status == 403 and top.body == "Why?"  # someone else's comment
    status, _, _ = await gh.req("PATCH", f"/repos/octo-org/demo/pulls/comments/{reply['id']}",
                                json={"body": "x" * 70000})
    assert status == 422
    status, _, _ = await gh.req("PATCH", "/repos/octo-org/demo/pulls/comments/99999", json={"body": "x"})
    assert status == 404
    assert github_state.violations == []
    github_state.expect_violations = True
    status, _, _ = await gh.req("PATCH", f"/repos/octo-org/demo/pulls/comments/{reply['id']}", json={"text": "x"})
    assert status == 422 and github_state.violations

async def test_create_pull_rules(gh, github_state, feature_repo):
    path = "/repos/octo-org/demo/pulls"
    status, body, _ = await gh.req("POST", path, json={"title": "t", "head": "feature", "base": "main"})
    assert status == 422 and "already exists" in body["errors"][0]["message"]
    status, body, _ = await gh.req("POST", path, json={"title": "t", "head": "main", "base": "main"})
    assert status == 422 and "No commits between" in body["errors"][0]["message"]
    status, body, _ = await gh.req("POST", path, json={"title": "t", "head": "nope", "base": "main"})
    assert status == 422
    github_state.commit_files("octo-org/demo", {"fix.txt": "fix\n"}, branch="prmedic/fix")
    status, body, headers = await gh.req("POST", path, json={"title": "Fix", "head": "prmedic/fix", "base": "main",
                                                             "draft": True})
    assert status == 201 and body["number"] == 8 and body["user"]["login"] == "prmedic[bot]" and body["draft"]


async def test_actions_logs_redirect(gh, github_state):
    sha = github_state.resolve(REPO_FULL_NAME, "main")
    github_state.add_actions_job(REPO_FULL_NAME, 555, 444, "test", "failure", "FAILED test_x\n", sha)
    status, jobs, _ = await gh.req("GET", f"/repos/{REPO_FULL_NAME}/actions/runs/444/jobs")
    assert status == 200 and jobs["total_count"] == 1 and jobs["jobs"][0]["conclusion"] == "failure"
    status, _, headers = await gh.req("GET", f"/repos/{REPO_FULL_NAME}/actions/jobs/555/logs",
                                      allow_redirects=False)
    assert status == 302 and "/_sim/" in headers["Location"]
    status, text, _ = await gh.req("GET", f"/repos/{REPO_FULL_NAME}/actions/jobs/555/logs")
    assert status == 200 and text == "FAILED test_x\n"


async def test_check_runs_and_comments(gh, github_state):
    sha = github_state.resolve(REPO_FULL_NAME, "main")
    status, run, _ = await gh.req("POST", f"/repos/{REPO_FULL_NAME}/check-runs", json={
        "name": "prmedic", "head_sha": sha, "status": "in_progress"})
    assert status == 201 and run["status"] == "in_progress"
    ann = {"path": "README.md", "start_line": 1, "end_line": 1, "annotation_level": "warning", "message": "m"}
    status, run, _ = await gh.req("PATCH", f"/repos/{REPO_FULL_NAME}/check-runs/{run['id']}", json={
        "conclusion": "neutral", "output": {"title": "t", "summary": "s", "annotations": [ann]}})
    assert status == 200 and run["status"] == "completed" and run["output"]["annotations_count"] == 1
    status, runs, _ = await gh.req("GET", f"/repos/{REPO_FULL_NAME}/commits/main/check-runs")
    assert runs["total_count"] == 1
    status, body, _ = await gh.req("POST", f"/repos/{REPO_FULL_NAME}/check-runs", json={
        "name": "x", "head_sha": "f" * 40})
    assert status == 422

    pr_sha = github_state.commit_files(REPO_FULL_NAME, {"x.txt": "x\n"}, branch="topic")
    github_state.add_pull_request(REPO_FULL_NAME, 3, head_ref="topic")
    status, c, _ = await gh.req("POST", f"/repos/{REPO_FULL_NAME}/issues/3/comments", json={"body": "hello"})
    assert status == 201 and c["user"]["login"] == "prmedic[bot]"
    status, c, _ = await gh.req("PATCH", f"/repos/{REPO_FULL_NAME}/issues/comments/{c['id']}", json={"body": "bye"})
    assert status == 200 and c["body"] == "bye"
    assert (await gh.req("POST", f"/repos/{REPO_FULL_NAME}/issues/comments/{c['id']}/reactions",
                         json={"content": "eyes"}))[0] == 201
    assert (await gh.req("POST", f"/repos/{REPO_FULL_NAME}/issues/comments/{c['id']}/reactions",
                         json={"content": "eyes"}))[0] == 200
    status, prs, _ = await gh.req("GET", f"/repos/{REPO_FULL_NAME}/commits/{pr_sha}/pulls")
    assert [p["number"] for p in prs] == [3]
    assert github_state.violations == []


async def test_fork_pull_request_contents_and_compare(gh, github_state, git_repo):
    repo = git_repo({"lib/util.py": "def f():\n    return 1\n"})
    repo.checkout("fix/deep/branch", create=True)
    fork_sha = repo.commit({"lib/util.py": "def f():\n    return 2\n"}, "Fix")
    repo.checkout("main")
    github_state.add_repo(OWNER, "upstream", from_git=repo.path)
    github_state.add_repo("forker", "upstream", fork_of=f"{OWNER}/upstream", from_git=repo.path)
    del github_state.repo(f"{OWNER}/upstream").refs["refs/heads/fix/deep/branch"]
    github_state.add_pull_request(f"{OWNER}/upstream", 1, head_ref="fix/deep/branch",
                                  head_repo="forker/upstream", user="forker")
    status, pull, _ = await gh.req("GET", f"/repos/{OWNER}/upstream/pulls/1")
    assert pull["head"]["repo"]["full_name"] == "forker/upstream" and pull["head"]["sha"] == fork_sha
    # Check runs on a fork's head list no pull requests (like GitHub).
    status, run, _ = await gh.req("POST", f"/repos/{OWNER}/upstream/check-runs",
                                  json={"name": "prmedic", "head_sha": fork_sha})
    assert status == 201 and run["pull_requests"] == []
    # Contents of a nested path at a ref with slashes; raw media type; directories.
    status, f, _ = await gh.req("GET", "/repos/forker/upstream/contents/lib/util.py",
                                params={"ref": "fix/deep/branch"})
    assert status == 200 and f["encoding"] == "base64" and f["path"] == "lib/util.py"
    status, raw, _ = await gh.req("GET", f"/repos/{OWNER}/upstream/contents/lib/util.py",
                                  headers={"Accept": "application/vnd.github.raw+json"})
    assert raw == "def f():\n    return 1\n"
    status, listing, _ = await gh.req("GET", f"/repos/{OWNER}/upstream/contents/lib")
    assert [e["name"] for e in listing] == ["util.py"]
    assert (await gh.req("GET", f"/repos/{OWNER}/upstream/contents/nope.py"))[0] == 404
    status, ref, _ = await gh.req("GET", "/repos/forker/upstream/git/ref/heads/fix/deep/branch")
    assert status == 200 and ref["ref"] == "refs/heads/fix/deep/branch"
    status, cmp, _ = await gh.req("GET", f"/repos/{OWNER}/upstream/compare/main...forker:fix/deep/branch")
    assert status == 200 and cmp["status"] == "ahead" and cmp["ahead_by"] == 1
    assert cmp["files"][0]["patch"].startswith("@@ -1,2 +1,2 @@")
    status, tree, _ = await gh.req("GET", f"/repos/{OWNER}/upstream/git/trees/main", params={"recursive": "1"})
    assert [t["path"] for t in tree["tree"]] == ["lib", "lib/util.py"]
    status, repos, _ = await gh.req("GET", "/installation/repositories")
    assert {r["full_name"] for r in repos["repositories"]} == {REPO_FULL_NAME, f"{OWNER}/upstream"}
    status, perm, _ = await gh.req("GET", f"/repos/{OWNER}/upstream/collaborators/forker/permission")
    assert perm["permission"] == "read"
    github_state.set_permission(f"{OWNER}/upstream", "forker", "maintain")
    status, perm, _ = await gh.req("GET", f"/repos/{OWNER}/upstream/collaborators/forker/permission")
    assert perm["permission"] == "write" and perm["role_name"] == "maintain"
    assert github_state.violations == []


async def test_a_reaction_github_does_not_know_is_refused(gh, github_state, feature_repo):
    github_state.expect_violations = True
    mine = github_state.add_issue_comment("octo-org/demo", 7, "alice", "/help")
    thread = github_state.add_review_comment("octo-org/demo", 7, "alice", "/help", path="app.py", line=20)
    for url in (f"/repos/octo-org/demo/issues/comments/{mine.id}/reactions",
                f"/repos/octo-org/demo/pulls/comments/{thread.id}/reactions"):
        status, body, _ = await gh.req("POST", url, json={"content": "party"})
        assert status == 422, body
        assert (await gh.req("POST", url, json={"content": "rocket"}))[0] == 201
    assert [r["content"] for r in mine.reactions] == ["rocket"]
    assert [r["content"] for r in thread.reactions] == ["rocket"]
