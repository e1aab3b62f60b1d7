"""Shared helpers for the slash-command tests: GitHub's own `issue_comment` and
`pull_request_review_comment` examples pointed at a PR in the simulator, delivered to the real
server; what prmedic answered, read back. The `pr` fixture (a PR with a writer `maintainer` and a
reader `reader`) is in `conftest.py`."""

from __future__ import annotations

import dataclasses

from conftest import example
from review_helpers import REPO, REPO_NAME, PullRequestRepo

from app.store import JobState

try:
    from sims.github_fixtures import INSTALLATION_ID, OWNER
except ImportError:  # pragma: no cover
    from tests.sims.github_fixtures import INSTALLATION_ID, OWNER

FINDING = {"path": "src/app.py", "line": 41, "severity": "major", "body": "`items[1:]` skips the first item."}


def _point(data: dict, pr: PullRequestRepo) -> dict:
    data["installation"] = {"id": INSTALLATION_ID, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="}
    repo = data["repository"]
    repo.update(id=pr.repo.id, name=REPO_NAME, full_name=REPO, default_branch="main",
                html_url=f"https://github.com/{REPO}", private=False)
    repo["owner"]["login"] = OWNER
    return data


def comment_event(pr: PullRequestRepo, body: str, *, user: str = "maintainer", action: str = "created",
                  user_type: str = "User", comment_id: int | None = None) -> dict:
    """GitHub's `issue_comment` example: `user` wrote `body` on the PR (the comment exists in the simulator)."""
    data = _point(example("issue_comment", "created"), pr)
    data["action"] = action
    if comment_id is None:
        comment_id = pr.state.add_issue_comment(REPO, pr.pr.number, user, body).id
    issue = data["issue"]
    issue["number"] = pr.pr.number
    issue["pull_request"] = {"url": f"https://api.github.com/repos/{REPO}/pulls/{pr.pr.number}"}
    issue["user"].update(login=pr.pr.user, type="User")
    data["comment"].update(id=comment_id, body=body)
    data["comment"]["user"].update(login=user, type=user_type)
    data["sender"].update(login=user, type=user_type)
    return data


def review_comment_event(pr: PullRequestRepo, body: str, *, user: str = "maintainer") -> dict:
    data = _point(example("pull_request_review_comment", "created"), pr)
    c = pr.state.add_review_comment(REPO, pr.pr.number, user, body, path="src/app.py", line=41)
    data["comment"].update(id=c.id, body=body, path="src/app.py", line=41, commit_id=pr.head)
    data["comment"]["user"].update(login=user, type="User")
    data["pull_request"].update(number=pr.pr.number, state="open")
    data["pull_request"]["user"].update(login=pr.pr.user, type="User")
    data["pull_request"]["head"]["sha"] = pr.head
    data["sender"].update(login=user, type="User")
    return data


def review_reply_event(pr: PullRequestRepo, thread_id: int, body: str, *, user: str = "maintainer") -> dict:
    """GitHub's `pull_request_review_comment` example for a reply: `user` wrote `body` in the thread
    of top-level review comment `thread_id` (the reply exists in the simulator)."""
    top = pr.state.review_comments[thread_id]
    now = pr.state.now()
    reply = dataclasses.replace(top, id=pr.state.next_id("review_comment", 90000000), user=user, body=body,
                                in_reply_to_id=top.id, created_at=now, updated_at=now, reactions=[])
    pr.state.review_comments[reply.id] = reply
    data = _point(example("pull_request_review_comment", "created"), pr)
    data["comment"].update(id=reply.id, body=body, path=top.path, line=top.line, side=top.side,
                           commit_id=top.commit_id, diff_hunk=top.diff_hunk, in_reply_to_id=top.id,
                           html_url=f"https://github.com/{REPO}/pull/{pr.pr.number}#discussion_r{reply.id}")
    data["comment"]["user"].update(login=user, type="User")
    data["pull_request"].update(number=pr.pr.number, state="open")
    data["pull_request"]["user"].update(login=pr.pr.user, type="User")
    data["pull_request"]["head"]["sha"] = pr.head
    data["sender"].update(login=user, type="User")
    return data

async def command(app_stack, pr: PullRequestRepo, body: str, **kw) -> tuple:
    """Deliver the comment, run the jobs: (its command job or None, its answer comment body or None, the comment)."""
    data = comment_event(pr, body, **kw)
    await app_stack.deliver("issue_comment", data)
    await app_stack.run_jobs()
    return _outcome(app_stack, pr, data["comment"]["id"])


async def _command_job(app_stack, comment_id: int):
    jobs = [j for j in await app_stack.store.list_jobs(kind="command") if j.payload["comment"]["id"] == comment_id]
    return jobs[0] if jobs else None


def _outcome(app_stack, pr, comment_id):
    marker = f"<!-- prmedic:command:{comment_id} -->"
    answers = [c.body for c in app_stack.state.issue_comments_of(REPO, pr.pr.number) if marker in c.body]
    assert len(answers) <= 1
    mine = app_stack.state.issue_comments.get(comment_id) or app_stack.state.review_comments.get(comment_id)
    return comment_id, (answers[0] if answers else None), mine


async def finished(app_stack, comment_id):
    job = await _command_job(app_stack, comment_id)
    assert job is not None and job.state is JobState.done, job and job.last_error
    return job


def reactions(comment) -> list[str]:
    return [r["content"] for r in comment.reactions]


