"""Pull requests of realistic shapes for the route benchmark (bench/route_cost.py).

Each shape is GitHub's own `pull_request` `opened` example payload (tests/fixtures/webhook-examples.json,
from @octokit/webhooks-examples) with its title, description and counts replaced, plus the
changed files as `GET /pulls/{n}/files` lists them: paths, statuses, sizes and a unified-diff
`patch` per file, generated from a fixed seed so every run gives the same bytes.
"""

from __future__ import annotations

import copy
import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.pipelines.diff import FileChange
from app.routing.fields import pull_request_fields

EXAMPLES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "webhook-examples.json"
SEED = 14
CONTEXT_LINES = 3  # as `git diff` and GitHub show around each change
LINES_PER_HUNK = 40  # changed lines per hunk before a file's change is split into another hunk


@dataclass(frozen=True)
class FileSpec:
    path: str
    additions: int
    deletions: int
    status: str = "modified"
    previous_path: str | None = None


@dataclass(frozen=True)
class Shape:
    """One kind of pull request, and what the benchmark assumes the router agent answers for it
    when no plain rule decides (`route.by == "default"`)."""

    name: str
    title: str
    body: str
    files: tuple[FileSpec, ...]
    # LIGHT, STANDARD or DEEP; needed only where no plain rule decides (the router falls back to STANDARD).
    router_answer: str | None = None


def _refactor_files() -> tuple[FileSpec, ...]:
    """A large refactor: a package split into modules, call sites updated, some files moved."""
    rng = random.Random(SEED)
    modules = ["store", "render", "export", "cli", "config", "jobs", "http", "cache"]
    files = [FileSpec(f"src/widgets/{m}/{part}.py", rng.randint(10, 60), rng.randint(5, 45))
             for m in modules for part in ("core", "models", "helpers", "errors")]
    files += [FileSpec(f"src/widgets/{m}/legacy_{i}.py", rng.randint(0, 6), rng.randint(0, 4), "renamed",
                       f"src/widgets/legacy/{m}_{i}.py") for i, m in enumerate(modules)]
    files += [FileSpec(f"tests/{m}/test_{m}.py", rng.randint(10, 40), rng.randint(5, 30)) for m in modules]
    files += [FileSpec("src/widgets/compat.py", 120, 0, "added"), FileSpec("src/widgets/old_api.py", 0, 240, "removed"),
              FileSpec("docs/architecture.md", 35, 18), FileSpec("pyproject.toml", 3, 2)]
    return tuple(files)


SHAPES: tuple[Shape, ...] = (
    Shape("docs-only", "Document the retry settings", "Adds the retry settings to the guide and the README.",
          (FileSpec("README.md", 18, 4), FileSpec("docs/guide/configuration.md", 42, 10), FileSpec("CHANGELOG.md", 3, 0))),
    Shape("one-line fix", "Fix off-by-one in retry backoff", "The last retry waited twice as long as it should.",
          (FileSpec("src/widgets/retry.py", 1, 1),)),
    Shape("small fix", "Handle empty header values in the parser",
          "An empty `Content-Type` raised `IndexError`; it is now treated as missing. Adds a test.",
          (FileSpec("src/widgets/parser.py", 6, 2), FileSpec("tests/test_parser.py", 14, 0)), "LIGHT"),
    Shape("medium feature", "Export widgets as CSV and JSON",
          "Adds `widgets export --format csv|json`, with streaming output for large stores.",
          (FileSpec("src/widgets/export/__init__.py", 12, 0, "added"), FileSpec("src/widgets/export/csv.py", 96, 0, "added"),
           FileSpec("src/widgets/export/json.py", 74, 0, "added"), FileSpec("src/widgets/cli.py", 38, 6),
           FileSpec("src/widgets/store.py", 22, 9), FileSpec("tests/export/test_csv.py", 88, 0, "added"),
           FileSpec("tests/export/test_json.py", 64, 0, "added"), FileSpec("docs/export.md", 45, 0, "added"),
           FileSpec("pyproject.toml", 2, 0)), "STANDARD"),
    Shape("large refactor", "Split the widgets package into modules",
          "Moves each area of `widgets` into its own module, keeps the old imports through `compat.py`.",
          _refactor_files(), "DEEP"),
    Shape("security-sensitive", "Rotate session tokens on privilege change",
          "Issues a new session token when a user's role changes and revokes the old one.",
          (FileSpec("src/widgets/auth/tokens.py", 48, 12), FileSpec("src/widgets/auth/middleware.py", 20, 6),
           FileSpec("tests/auth/test_tokens.py", 60, 0, "added"))),
    Shape("lock-file bump", "Bump axios from 1.6.7 to 1.7.4", "Bumps axios (a security release).",
          (FileSpec("package.json", 1, 1), FileSpec("package-lock.json", 46, 46))),
    Shape("CI config change", "Run the tests on Python 3.13 too", "Adds 3.13 to the CI matrix and caches pip.",
          (FileSpec(".github/workflows/ci.yml", 12, 4),)),
)

# -- plausible file content, by kind --------------------------------------------------------

_WORDS = ["widget", "store", "record", "header", "value", "token", "retry", "limit", "export", "stream", "row",
          "field", "config", "result", "request", "session", "cache", "entry", "item", "batch"]
_TEMPLATES = {
    "py": ["def {a}_{b}(self, {c}):", "    if {c} is None:", "        raise ValueError(\"{c} is required\")",
           "    {a} = self.{b}.get({c}, {n})", "    for {a} in {c}s:", "        {b}s.append({a}.{c})",
           "    log.debug(\"{a} %s: %s\", {b}, {c})", "    return {a}_{b}({c}, limit={n})", "",
           "from widgets.{a} import {b}_{c}", "        {a}.{b} = {c} or {n}", "class {A}{B}({A}Error):"],
    "md": ["The `{a}_{b}` setting controls how many {c}s are kept ({n} by default).", "",
           "## {A} {b}s", "- `{a}.{b}`: the {c} to use when none is given.",
           "Set it to `0` to turn {a} {b}s off; a {c} is then never retried.",
           "See [{A} {c}s](docs/{a}.md) for the details."],
    "yml": ["      - name: {A} {b}", "        run: python -m pip install -e .[{a}]", "    runs-on: ubuntu-latest",
            "        python-version: [\"3.11\", \"3.12\", \"3.13\"]", "      - uses: actions/cache@v4",
            "          key: {a}-${{{{ hashFiles('**/{b}.txt') }}}}"],
    "json": ["    \"node_modules/{a}-{b}\": {{", "      \"version\": \"1.{n}.{m}\",",
             "      \"resolved\": \"https://registry.npmjs.org/{a}-{b}/-/{a}-{b}-1.{n}.{m}.tgz\",",
             "      \"integrity\": \"sha512-{h}\",", "    }},"],
    "toml": ["    \"{a}-{b}>=1.{n}\",", "[tool.{a}]", "{b} = {n}"],
}


def _kind(path: str) -> str:
    suffix = path.rsplit(".", 1)[-1]
    return suffix if suffix in _TEMPLATES else ("yml" if suffix == "yaml" else "md" if suffix == "txt" else "py")


def _line(rng: random.Random, kind: str) -> str:
    a, b, c = rng.sample(_WORDS, 3)
    return rng.choice(_TEMPLATES[kind]).format(a=a, b=b, c=c, A=a.title(), B=b.title(), n=rng.randint(2, 64),
                                               m=rng.randint(0, 9), h=f"{rng.getrandbits(256):064x}")


def make_patch(spec: FileSpec, rng: random.Random) -> str | None:
    """A GitHub-style `patch` (hunks only, no file header) with exactly the spec's line counts."""
    if not spec.additions and not spec.deletions:
        return None  # GitHub sends no patch for a pure rename
    kind = _kind(spec.path)
    if spec.status == "added":
        return f"@@ -0,0 +1,{spec.additions} @@\n" + "\n".join("+" + _line(rng, kind) for _ in range(spec.additions))
    if spec.status == "removed":
        return f"@@ -1,{spec.deletions} +0,0 @@\n" + "\n".join("-" + _line(rng, kind) for _ in range(spec.deletions))
    hunks = max(1, -(-max(spec.additions, spec.deletions) // LINES_PER_HUNK))
    out: list[str] = []
    old = new = 1 + rng.randint(5, 40)
    for i in range(hunks):
        adds = spec.additions // hunks + (i < spec.additions % hunks)
        dels = spec.deletions // hunks + (i < spec.deletions % hunks)
        before = [" " + _line(rng, kind) for _ in range(CONTEXT_LINES)]
        after = [" " + _line(rng, kind) for _ in range(CONTEXT_LINES)]
        body = before + ["-" + _line(rng, kind) for _ in range(dels)] + ["+" + _line(rng, kind) for _ in range(adds)] + after
        out.append(f"@@ -{old},{dels + 2 * CONTEXT_LINES} +{new},{adds + 2 * CONTEXT_LINES} @@")
        out += body
        gap = rng.randint(20, 120)
        old, new = old + dels + 2 * CONTEXT_LINES + gap, new + adds + 2 * CONTEXT_LINES + gap
    return "\n".join(out)


@functools.cache
def _opened_example() -> dict[str, Any]:
    entries = json.loads(EXAMPLES.read_text(encoding="utf-8"))
    examples = next(entry["examples"] for entry in entries if entry["name"] == "pull_request")
    return next(e for e in examples if e.get("action") == "opened")


def build(shape: Shape, number: int = 2) -> tuple[str, dict[str, Any], list[FileChange]]:
    """(repository full name, the PR as a review job keeps it, its changed files) for one shape."""
    rng = random.Random(f"{SEED}:{shape.name}")
    payload = copy.deepcopy(_opened_example())
    pr = payload["pull_request"]
    pr.update(number=number, title=shape.title, body=shape.body, changed_files=len(shape.files),
              additions=sum(f.additions for f in shape.files), deletions=sum(f.deletions for f in shape.files))
    files = [FileChange.from_github({"filename": f.path, "status": f.status, "additions": f.additions,
                                     "deletions": f.deletions, "sha": f"{rng.getrandbits(160):040x}",
                                     "patch": make_patch(f, rng), "previous_filename": f.previous_path})
             for f in shape.files]
    return payload["repository"]["full_name"], pull_request_fields(pr), files
