"""JSON renderers: records as GitHub's REST API shows them."""

from __future__ import annotations

from urllib.parse import quote
from typing import TYPE_CHECKING

from .common import HTML_BASE, REACTIONS, iso, node_id

if TYPE_CHECKING:
    from .diffs import FileDiff
    from .records import ActionsJob, CheckRun, Installation, IssueComment, PullRequest, Repo, Review, ReviewComment
    from .state import GitHubState


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

    def installation(self, inst: Installation) -> dict:
        """An installation as `GET /repos/{owner}/{repo}/installation` shows it to the App."""
        s = self.s
        account = s.user(inst.account)
        suspended = "2024-01-02T00:00:00Z" if inst.suspended else None
        return {
            "id": inst.id, "account": account, "repository_selection": inst.repository_selection,
            "access_tokens_url": f"{self.api}/app/installations/{inst.id}/access_tokens",
            "repositories_url": f"{self.api}/installation/repositories",
            "html_url": f"{HTML_BASE}/organizations/{inst.account}/settings/installations/{inst.id}"
            if inst.account_type == "Organization" else f"{HTML_BASE}/settings/installations/{inst.id}",
            "app_id": s.app_id, "app_slug": s.app_slug, "client_id": s.client_id,
            "target_id": account["id"], "target_type": inst.account_type,
            "permissions": dict(inst.permissions), "events": list(s.app_events),
            "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
            "single_file_name": None, "has_multiple_single_files": False, "single_file_paths": [],
            "suspended_by": s.user(inst.account) if inst.suspended else None, "suspended_at": suspended,
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
