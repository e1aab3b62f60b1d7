"""Shared helpers for the review tests: a real git repository as a PR in the GitHub simulator, and
GitHub's own `pull_request` webhook example pointed at it."""

from __future__ import annotations

from conftest import example

try:
    from sims.github_fixtures import INSTALLATION_ID, OWNER
    from sims.managed_agents import normal_review_run
except ImportError:  # pragma: no cover - depends on how pytest put tests/ on sys.path
    from tests.sims.github_fixtures import INSTALLATION_ID, OWNER
    from tests.sims.managed_agents import normal_review_run

REPO_NAME = "widgets"
REPO = f"{OWNER}/{REPO_NAME}"


def source(n: int = 40, changes: dict[int, str | None] | None = None, extra: list[str] | None = None) -> str:
    """`n` numbered lines of Python; `changes` replaces (str) or deletes (None) lines by number."""
    lines = {i: f"value_{i} = compute({i})" for i in range(1, n + 1)}
    for number, text in (changes or {}).items():
        if text is None:
            lines.pop(number, None)
        else:
            lines[number] = text
    return "\n".join([*(lines[k] for k in sorted(lines)), *(extra or [])]) + "\n"


BASE_FILES = {"src/app.py": source(), "src/util.py": source(20), "README.md": "# Widgets\n"}
HEAD_FILES = {
    # line 10 changed, line 12 deleted (so new 12.. = old 13..), two lines added at the end
    "src/app.py": source(changes={10: "value_10 = compute(10) / len(items)", 12: None},
                         extra=["def total(items):", "    return sum(items[1:])"]),
    "docs/guide.md": "# Guide\n\nHow to use widgets.\n",
}


class PullRequestRepo:
    """A repository in the simulator built from a local git repository, with one open PR."""

    def __init__(self, state, git_repo, base: dict | None = None, head: dict | None = None, *, number: int = 2,
                 title: str = "Compute totals", body: str = "Adds `total()`.", user: str = "octocat") -> None:
        self.state = state
        self.git = git_repo(base or BASE_FILES)
        self.git.checkout("feature", create=True)
        for path, content in (head or HEAD_FILES).items():  # one `git add` for thousands of files
            target = self.git.path / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        self.git.git("add", "-A")
        self.git.commit(None, "Change widgets")
        self.repo = state.add_repo(OWNER, REPO_NAME, from_git=self.git.path)
        self.pr = state.add_pull_request(REPO, number, head_ref="feature", title=title, body=body, user=user)
        self.shas = [self.pr.head_sha]

    @property
    def head(self) -> str:
        return self.pr.head_sha

    def push(self, files: dict, message: str = "More changes") -> tuple[str, str]:
        """A new commit on the PR branch; (before, after)."""
        before = self.pr.head_sha
        after = self.git.commit(files, message)
        self.state.import_git(REPO, self.git.path)
        self.shas.append(after)
        return before, after

    def set_config(self, text: str) -> None:
        """`.github/prmedic.yml` on the default branch (where prmedic reads it)."""
        self.state.commit_files(REPO, {".github/prmedic.yml": text}, branch="main", message="Configure prmedic")

    def event(self, action: str = "opened", **pr_fields) -> dict:
        """GitHub's example `pull_request` delivery for `action`, pointed at this PR."""
        data = example("pull_request", action if action in ("opened", "synchronize") else "opened")
        data["action"] = action
        data["installation"] = {"id": INSTALLATION_ID, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="}
        repo = data["repository"]
        repo.update(id=self.repo.id, name=REPO_NAME, full_name=REPO, default_branch="main",
                    html_url=f"https://github.com/{REPO}")
        repo["owner"]["login"] = OWNER
        pr = data["pull_request"]
        data["number"] = pr["number"] = self.pr.number
        pr.update(title=self.pr.title, body=self.pr.body, draft=False, state="open",
                  html_url=f"https://github.com/{REPO}/pull/{self.pr.number}")
        pr["user"].update(login=self.pr.user, type="User")
        for side, ref, sha in (("head", "feature", self.pr.head_sha), ("base", "main", self.pr.base_sha)):
            pr[side].update(ref=ref, sha=sha)
            pr[side]["repo"].update(id=self.repo.id, name=REPO_NAME, full_name=REPO)
        pr.update(pr_fields)
        data["sender"]["login"] = self.pr.user
        if action == "synchronize":
            data["before"], data["after"] = self.shas[-2], self.shas[-1]
        return data


def review_script(comments: list[dict], *, summary: str = "One real bug in `total()`.", event: str = "COMMENT",
                  tests_run: list[dict] | None = None, **kw):
    """A scripted coordinator run that reports progress and publishes these comments."""
    publish = {"summary": summary, "event": event, "comments": comments}
    if tests_run is not None:
        publish["tests_run"] = tests_run
    return normal_review_run(custom_calls=[
        ("report_progress", {"message": "Reviewing with the reviewer and the tester.", "todo": ["review", "tests"]}),
        ("publish_review", publish)], **kw)


def github_calls(state, since: int = 0) -> list:
    """REST calls the app made (token minting for the App's installation excluded)."""
    return [r for r in state.api_calls()[since:] if not r.path.startswith("/app/")]


def review_sessions(sim) -> list:
    """The simulator's sessions other than the router's (a review no plain rule routes asks it first)."""
    return [s for s in sim.sessions.values() if s.agent["name"] != "router"]
