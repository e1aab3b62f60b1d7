"""Delivering a checked patch: Git Data API commits, fix branches and PRs, fast-forward pushes,
the comment on the original PR, and, for fork PRs, suggestions or a patch comment."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from gidgethub import BadRequest

from app.logs import redact
from app.pipelines.diff import FileChange
from app.pipelines.fix.patches import Change, FilePatch, TreeEntry
from app.pipelines.fix.verify_texts import verification_refusal
from app.pipelines.markdown import fence, fence_ticks
from app.tools import ToolError
from app.tools.comments import upsert_comment

FIX_MARKER = "<!-- prmedic:fix -->"


class HeadMoved(ToolError):
    """The branch the fix was made for is no longer where the agent's checkout is."""


@dataclass
class Snapshot:
    """A commit and its tree, flattened (path → entry)."""

    commit_sha: str
    tree_sha: str
    entries: dict[str, TreeEntry]


async def load_snapshot(gh: Any, repo: str, commit_sha: str) -> Snapshot:
    commit = await gh.getitem(f"/repos/{repo}/git/commits/{commit_sha}")
    tree_sha = commit["tree"]["sha"]
    tree = await gh.getitem(f"/repos/{repo}/git/trees/{tree_sha}?recursive=1")
    if tree.get("truncated"):
        entries = await _walk(gh, repo, tree_sha, "")
    else:
        entries = {e["path"]: TreeEntry(e["mode"], e["type"], e["sha"]) for e in tree["tree"]}
    return Snapshot(commit_sha, tree_sha, entries)


async def _walk(gh: Any, repo: str, tree_sha: str, prefix: str) -> dict[str, TreeEntry]:
    """A tree too big for one recursive listing, one directory at a time."""
    out: dict[str, TreeEntry] = {}
    listing = await gh.getitem(f"/repos/{repo}/git/trees/{tree_sha}")
    for e in listing["tree"]:
        path = prefix + e["path"]
        out[path] = TreeEntry(e["mode"], e["type"], e["sha"])
        if e["type"] == "tree":
            out.update(await _walk(gh, repo, e["sha"], path + "/"))
    return out


async def read_blobs(gh: Any, repo: str, snapshot: Snapshot, paths: list[str]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for path in paths:
        blob = await gh.getitem(f"/repos/{repo}/git/blobs/{snapshot.entries[path].sha}")
        out[path] = base64.b64decode(blob["content"]) if blob.get("encoding") == "base64" else \
            blob["content"].encode()
    return out


async def create_commit(gh: Any, repo: str, base: Snapshot, changes: list[Change], message: str) -> str:
    """blobs → tree on the base tree → commit whose parent is the base commit."""
    tree: list[dict[str, Any]] = []
    for change in changes:
        if change.content is None:
            tree.append({"path": change.path, "mode": base.entries[change.path].mode, "type": "blob", "sha": None})
            continue
        blob = await gh.post(f"/repos/{repo}/git/blobs", data={
            "content": base64.b64encode(change.content).decode(), "encoding": "base64"})
        tree.append({"path": change.path, "mode": change.mode, "type": "blob", "sha": blob["sha"]})
    new_tree = await gh.post(f"/repos/{repo}/git/trees", data={"base_tree": base.tree_sha, "tree": tree})
    commit = await gh.post(f"/repos/{repo}/git/commits", data={
        "message": message, "tree": new_tree["sha"], "parents": [base.commit_sha]})
    return commit["sha"]


async def branch_sha(gh: Any, repo: str, branch: str) -> str | None:
    try:
        ref = await gh.getitem(f"/repos/{repo}/git/ref/heads/{branch}")
    except BadRequest as exc:
        if int(exc.status_code) == 404:
            return None
        raise
    return ref["object"]["sha"]


async def fast_forward(gh: Any, repo: str, branch: str, sha: str, *, expected: str) -> None:
    """Move `branch` from `expected` to `sha`, never rewriting history; `HeadMoved` otherwise."""
    current = await branch_sha(gh, repo, branch)
    if current != expected:
        raise HeadMoved(_moved(branch, expected, current))
    try:
        await gh.patch(f"/repos/{repo}/git/refs/heads/{branch}", data={"sha": sha, "force": False})
    except BadRequest as exc:
        if int(exc.status_code) == 422:
            raise HeadMoved(_moved(branch, expected, await branch_sha(gh, repo, branch))) from exc
        raise


def _moved(branch: str, expected: str, current: str | None) -> str:
    now = f"is now at {current}" if current else "no longer exists"
    return (f"The branch `{branch}` moved while you worked: your checkout and patch are based on {expected}, but it "
            f"{now}. Nothing was pushed. Do not call propose_fix again for this head: a failing check on the new "
            "head starts a new fix job. End your turn with a short account of the fix you had verified.")


async def put_fix_branch(gh: Any, repo: str, branch: str, sha: str, *, expected: str | None) -> None:
    """Create prmedic's fix branch at `sha`. When it exists: fast-forward it from `expected` (a
    follow-up building on the previous fix), or else replace it (a new attempt for the same head;
    the branch is prmedic's own)."""
    if expected is not None:
        await fast_forward(gh, repo, branch, sha, expected=expected)
        return
    try:
        await gh.post(f"/repos/{repo}/git/refs", data={"ref": f"refs/heads/{branch}", "sha": sha})
    except BadRequest as exc:
        if int(exc.status_code) != 422 or "already exists" not in str(exc):
            raise
        await gh.patch(f"/repos/{repo}/git/refs/heads/{branch}", data={"sha": sha, "force": True})


async def open_fix_pr(gh: Any, repo: str, *, branch: str, base: str, title: str, body: str) -> dict:
    """Open the fix PR from `branch` onto `base`, or find the open one (a re-run updates it by pushing)."""
    try:
        return await gh.post(f"/repos/{repo}/pulls", data={
            "title": title, "head": branch, "base": base, "body": body, "maintainer_can_modify": True})
    except BadRequest as exc:
        if int(exc.status_code) != 422 or "already exists" not in str(exc):
            raise
    owner = repo.split("/", 1)[0]
    async for pr in gh.getiter(f"/repos/{repo}/pulls?state=open&head={owner}:{branch}&base={base}"):
        return pr
    raise ToolError(f"GitHub says a pull request from {branch} exists, but it cannot be found")


def no_fix_comment(t: Any, why: str, final_message: str | None) -> str:
    """The PR comment (and check run summary) of an attempt that produced no fix; `t` is its FixTarget."""
    parts = [f"### prmedic could not fix the failing CI\n\nprmedic could not produce a fix: {why} (attempt "
             f"{t.attempt} of {t.max_attempts} for {t.root_sha[:7]})."]
    if t.refusals:
        parts.append(verification_refusal(t.refusals[-1]) if t.refused_by_verification else
                     "Why prmedic refused the last patch:\n\n" + fence(t.refusals[-1][:3000]))
    if final_message and final_message.strip():
        parts.append("The agents' last message:\n\n> " + final_message.strip()[:2000].replace("\n", "\n> "))
    parts.append("The next failing CI run on this pull request starts a new attempt." if t.attempt < t.max_attempts
                 else f"No attempts are left for {t.root_sha[:7]} (`fix.max_attempts`); a new commit starts over.")
    return redact("\n\n".join(parts)) + "\n"


async def upsert_fix_comment(gh: Any, repo: str, number: int, body: str, *, marker: str = FIX_MARKER) -> str:
    """Post the fix comment on the PR (one per PR, or per `marker`, updated in place); its URL."""
    return await upsert_comment(gh, repo, number, body, marker=marker)


# ---------------------------------------------------------------------------------------------
# fork PRs: nothing is pushed; the fix is offered
# ---------------------------------------------------------------------------------------------


def suggestion_comments(files: list[FilePatch], starts: dict[str, list[int]],
                        pr_files: list[FileChange]) -> list[dict] | None:
    """One suggestion per changed block, if every block sits on lines of the PR's diff (RIGHT side,
    one hunk); None when any does not (or the patch adds, deletes or renames files)."""
    by_path = {f.path: f for f in pr_files}
    comments: list[dict] = []
    for f in files:
        change = by_path.get(f.path)
        if f.status != "modified" or change is None:
            return None
        for hunk, start in zip(f.hunks, starts.get(f.path, [])):
            for first, last, text in _blocks(hunk, start):
                if not _in_one_hunk(change, first, last):
                    return None
                ticks = fence_ticks(text)
                comment = {"path": f.path, "line": last, "side": "RIGHT", "body": f"{ticks}suggestion\n{text}{ticks}"}
                if first != last:
                    comment.update(start_line=first, start_side="RIGHT")
                comments.append(comment)
    return comments or None


def _blocks(hunk: Any, start: int) -> list[tuple[int, int, str]]:
    """(first, last old line, replacement text) for each run of changed lines in a hunk."""
    out: list[tuple[int, int, str]] = []
    line_no = start
    lines = hunk.lines
    i = 0
    while i < len(lines):
        if lines[i][0] == " ":
            line_no += 1
            i += 1
            continue
        first = line_no
        removed: list[str] = []
        added: list[str] = []
        while i < len(lines) and lines[i][0] != " ":
            (removed if lines[i][0] == "-" else added).append(lines[i][1:])
            i += 1
        if removed:
            out.append((first, first + len(removed) - 1, "".join(a + "\n" for a in added)))
        elif first > start:  # a pure insertion: suggest it together with the line above
            above = hunk.old_lines[first - start - 1]
            out.append((first - 1, first - 1, "".join(a + "\n" for a in [above, *added])))
        elif i < len(lines):  # at the top of the hunk: with the line below
            below = lines[i][1:]
            out.append((first, first, "".join(a + "\n" for a in [*added, below])))
        else:
            return [(0, 0, "")]  # an insertion into an empty file: not expressible
        line_no = first + len(removed)
    return out


def _in_one_hunk(change: FileChange, first: int, last: int) -> bool:
    if first < 1:
        return False
    hits = [change.locate(n, "RIGHT") for n in range(first, last + 1)]
    return all(h is not None for h in hits) and len({h[0] for h in hits}) == 1  # type: ignore[index]


async def post_suggestions(gh: Any, repo: str, number: int, commit_id: str, body: str,
                           comments: list[dict]) -> str:
    review = await gh.post(f"/repos/{repo}/pulls/{number}/reviews", data={
        "commit_id": commit_id, "body": body, "event": "COMMENT", "comments": comments})
    return review["html_url"]
