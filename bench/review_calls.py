"""Benchmark: GitHub REST calls per automatic review, and the brief's size against its budget
(docs/architecture.md, "Performance targets").

    .venv/bin/python bench/review_calls.py                # PRs of 10, 100 and 1,000 files
    .venv/bin/python bench/review_calls.py --files 100    # one size

Part 1 runs the real review pipeline (worker, `app.runtime.PIPELINES`) in this process against the
GitHub simulator (a PR built from a real git repository) and the Managed Agents simulator (a
scripted coordinator that reports progress once and publishes two inline comments), first for
`opened`, then for a `synchronize` after a push that changes three files (the agents report the
two findings again, which are not reposted, and one new one). It counts every REST
call the pipeline makes; minting installation tokens (`POST /app/installations/…`, cached for an
hour and shared by all jobs of an installation) is shown apart. Target: ≤ 6 per review of a PR
with ≤ 100 files.

Part 2 builds the brief for synthetic PRs of 10, 300 and 3,000 files (realistic paths, 20-line
diffs per file) and reports its estimated tokens against the budget, how many files it names,
and how many diffs it carries.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


async def one_size(n_files: int, key: str, workdir: Path) -> dict:
    from aiohttp.test_utils import TestServer

    from app.agents.sync import forget_synced
    from app.github import GitHubApp
    from app.metrics import Metrics
    from app.routing.reviews import review_job
    from app.runtime import Services
    from app.sessions import SessionRuntime, SessionSettings
    from app.settings import Settings
    from app.store import Delivery, open_store
    from sims import managed_agents as ma
    from sims.github import GitHubState, make_github_app
    from sims.gitrepo import make_git_repo

    state = GitHubState(app_id=12345, app_slug="prmedic", app_private_key=key)
    state.add_installation(1, "octo-org", account_type="Organization")
    git = make_git_repo(workdir / f"repo{n_files}", {f"src/pkg{i // 20}/mod_{i}.py": "a = 1\nb = 2\nc = 3\n"
                                                     for i in range(n_files)})
    git.checkout("feature", create=True)
    git.commit({f"src/pkg{i // 20}/mod_{i}.py": "a = 1\nb = compute(2)\nc = 3\n" for i in range(n_files)}, "Change")
    repo = state.add_repo("octo-org", "widgets", from_git=git.path)
    pr = state.add_pull_request("octo-org/widgets", 2, head_ref="feature", title="Change modules")

    github_server = TestServer(make_github_app(state))
    await github_server.start_server()
    sim = ma.ManagedAgentsSimulator(step_delay=0.001)
    agents_server = TestServer(sim.make_app())
    await agents_server.start_server()
    comments = [{"path": "src/pkg0/mod_0.py", "line": 2, "severity": "major", "body": "`compute` can raise here."},
                {"path": "src/pkg0/mod_1.py", "line": 2, "severity": "minor", "body": "Unchecked result."}]
    sim.default_script = ma.normal_review_run([
        ("report_progress", {"message": "Reviewing.", "todo": ["review", "tests"]}),
        ("publish_review", {"summary": "Two issues.", "comments": comments,
                            "tests_run": [{"command": "pytest -q", "outcome": "passed"}]})])

    os.environ.update({"PRMEDIC_APP_ID": "12345", "PRMEDIC_PRIVATE_KEY": key, "PRMEDIC_WEBHOOK_SECRET": "bench",
                       "PRMEDIC_APP_SLUG": "prmedic", "PRMEDIC_DATABASE_URL": f"sqlite:///{workdir}/db{n_files}.db",
                       "PRMEDIC_GITHUB_API_URL": str(github_server.make_url("")).rstrip("/")})
    settings = Settings()
    store = open_store(settings.database_url)
    await store.open()
    import anthropic
    client = anthropic.AsyncAnthropic(base_url=str(agents_server.make_url("")).rstrip("/"), api_key="sk-ant-bench")
    github = GitHubApp(app_id=12345, private_key=key, base_url=settings.github_api_url)
    runtime = SessionRuntime(client, store, github_app=github, settings=SessionSettings(reconnect_initial_seconds=0.01))
    services = Services(settings, store, github, Metrics(), "prmedic[bot]", sessions=runtime, anthropic=client)
    forget_synced()

    async def review(trigger: str, before: str | None = None) -> tuple[list, list, float]:
        payload = {"action": trigger, "installation": {"id": 1}, "sender": {"login": "octocat"},
                   "repository": {"full_name": "octo-org/widgets", "id": repo.id, "default_branch": "main"},
                   "pull_request": {"number": 2, "title": pr.title, "body": "", "state": "open", "draft": False,
                                    "user": {"login": "octocat", "type": "User"}, "labels": [],
                                    "head": {"sha": pr.head_sha, "ref": "feature", "repo": {"full_name": "octo-org/widgets"}},
                                    "base": {"sha": pr.base_sha, "ref": "main", "repo": {"full_name": "octo-org/widgets"}}},
                   "before": before, "after": pr.head_sha}
        job = review_job(payload, trigger=trigger)
        await store.record_delivery(Delivery(delivery_id=f"bench-{trigger}-{n_files}", event="pull_request",
                                             action=trigger, received_at=time.time()), [job])
        mark = len(state.requests)
        started = time.perf_counter()
        await services.worker().run_until_idle(300)
        elapsed = time.perf_counter() - started
        calls = [r for r in state.requests[mark:]]
        return ([r for r in calls if not r.path.startswith("/app/")], [r for r in calls if r.path.startswith("/app/")],
                elapsed)

    try:
        opened = await review("opened")
        before = pr.head_sha
        git.commit({f"src/pkg0/mod_{i}.py": "a = 1\nb = compute(2)\nc = check(3)\n" for i in range(3)}, "Fix")
        state.import_git("octo-org/widgets", git.path)
        # the same two findings again (not reposted) and one new one: a short review + the summary updated
        new = {"path": "src/pkg0/mod_2.py", "line": 3, "severity": "minor", "body": "`check` result is ignored."}
        sim.default_script = ma.normal_review_run([
            ("report_progress", {"message": "Re-reviewing.", "todo": ["review"]}),
            ("publish_review", {"summary": "One new issue.", "comments": [*comments, new]})])
        synced = await review("synchronize", before)
        assert not state.violations, state.violations
        jobs = await store.list_jobs(kind="review")
        assert all(j.state.value == "done" for j in jobs), [(j.state, j.last_error) for j in jobs]
        reviews = len(state.reviews_of("octo-org/widgets", 2))
    finally:
        await runtime.aclose()
        await client.close()
        await github.close()
        await store.close()
        await sim.shutdown()
        await agents_server.close()
        await github_server.close()
        forget_synced()
    return {"files": n_files, "opened": opened, "synchronize": synced, "reviews": reviews}


def show_calls(label: str, calls: list, tokens: list, elapsed: float) -> None:
    counts = collections.Counter(f"{r.method} {_shape(r.path)}" for r in calls)
    print(f"  {label:<12} {len(calls)} REST calls (+{len(tokens)} token mint) in {elapsed:.1f}s")
    for what, n in counts.items():
        print(f"      {n} × {what}")


def _shape(path: str) -> str:
    import re

    return re.sub(r"/\d+", "/{n}", path.replace("/repos/octo-org/widgets", ""))


def brief_sizes(sizes: list[int]) -> None:
    from app.pipelines.review.brief import BriefInput, build_brief
    from app.pipelines.diff import FileChange

    patch = "@@ -10,12 +10,14 @@ def handler(request):\n" + "\n".join(
        [f"     line_{i} = request.get('field_{i}')" for i in range(6)]
        + ["-    total = compute(items)", "+    total = compute(items, strict=True)", "+    audit(total)"]
        + [f"     check_{i}(total)" for i in range(6)])
    areas = ["services/billing/api/handlers", "services/auth/session", "web/src/components/forms", "docs/guides",
             "tests/integration/billing", "libs/common/utils", ".github/workflows", "infra/terraform/modules"]
    print("\nBrief size (estimated tokens = ceil(chars / 3)):")
    for n in sizes:
        files = [FileChange.from_github({"filename": f"{areas[i % len(areas)]}/component_{i:04d}_handler.py",
                                         "status": "modified", "additions": 2, "deletions": 1, "sha": "0" * 40,
                                         "patch": patch}) for i in range(n)]
        pr = {"number": 1, "title": "Big change", "body": "Refactor.", "head_sha": "a" * 40, "base_sha": "b" * 40,
              "head_ref": "feature", "base_ref": "main", "author": "octocat", "changed_files": n}
        started = time.perf_counter()
        brief = build_brief(BriefInput(repo="octo-org/widgets", pr=pr, files=files))
        ms = (time.perf_counter() - started) * 1000
        named = sum(1 for f in files if f.path in brief.text or f.path.rsplit("/", 1)[1] in brief.text)
        print(f"  {n:>5} files: {brief.tokens:>6,} / {brief.budget_tokens:,} tokens "
              f"({100 * brief.tokens / brief.budget_tokens:.0f} %), names {named}/{n} files, "
              f"{len(brief.diffs_included)} diffs included, index level {brief.index_level}, built in {ms:.0f} ms")


async def main(sizes: list[int]) -> None:
    from sims.github_fixtures import generate_private_key

    key = generate_private_key()
    print("GitHub REST calls per automatic review (target ≤ 6 for ≤ 100 files):")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            result = await one_size(n, key, Path(tmp))
            print(f"PR of {n:,} files ({result['reviews']} reviews posted in all):")
            show_calls("opened", *result["opened"])
            show_calls("synchronize", *result["synchronize"])
    brief_sizes([10, 300, 3000])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, action="append", help="PR size (repeatable); default 10, 100, 1000")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(args.files or [10, 100, 1000]))
