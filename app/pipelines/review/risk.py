"""Which changed files deserve the agents' attention first.

A cheap, explainable score: the size of the change (log-scaled, so one 2,000-line file does
not outrank ten 50-line ones by 40×), times a weight for what kind of file it is, doubled for
paths that usually hold security-sensitive code. Each score carries its reasons, which the
brief shows next to the file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from app.pipelines.diff import FileChange

_SENSITIVE = re.compile(
    r"(?i)(auth|login|logout|passw|secret|token|credential|crypt|cipher|signature|security|permission|acl|"
    r"session|oauth|jwt|saml|csrf|xss|sanitiz|escape|sql|query|payment|billing|webhook|sandbox|exec|shell)")
_KINDS: list[tuple[str, re.Pattern[str], float]] = [
    ("CI workflow", re.compile(r"^\.github/workflows/"), 1.5),
    ("migration", re.compile(r"(?i)(^|/)(migrations?|alembic)/"), 1.4),
    ("build/dependencies", re.compile(
        r"(?i)(^|/)(Dockerfile[^/]*|Makefile|pyproject\.toml|setup\.py|setup\.cfg|requirements[^/]*\.txt|"
        r"package\.json|go\.mod|Cargo\.toml|pom\.xml|build\.gradle(\.kts)?|Gemfile)$"), 1.2),
    ("test", re.compile(r"(?i)(^|/)(tests?|spec|__tests__|testdata)/|(^|/)test_[^/]*$|_test\.\w+$|\.(test|spec)\.\w+$"),
     0.6),
    ("docs", re.compile(r"(?i)(^|/)docs?/|\.(md|rst|txt|adoc)$|(^|/)(LICENSE|CHANGELOG|AUTHORS)[^/]*$"), 0.25),
    ("config", re.compile(r"(?i)\.(ya?ml|json|toml|ini|cfg|conf|env)$"), 0.8),
    ("asset", re.compile(r"(?i)\.(png|jpe?g|gif|svg|ico|webp|pdf|woff2?|ttf|eot|mp[34]|zip|gz)$"), 0.1),
]


@dataclass(frozen=True, slots=True)
class Risk:
    score: float
    kind: str
    reasons: tuple[str, ...]


def file_kind(path: str) -> tuple[str, float]:
    for name, pattern, weight in _KINDS:
        if pattern.search(path):
            return name, weight
    return "code", 1.0


def assess(change: FileChange) -> Risk:
    kind, weight = file_kind(change.path)
    score = math.log2(2 + change.changes) * weight
    reasons: list[str] = []
    if kind not in ("code", "docs", "test", "asset"):
        reasons.append(kind)
    if _SENSITIVE.search(change.path) and kind not in ("docs", "asset"):
        score *= 2
        reasons.append("security-sensitive path")
    if change.status == "removed":
        score *= 0.5
    elif change.status == "renamed" and change.changes == 0:
        score = 0.05
    if change.patch is None and change.changes:
        reasons.append("no diff from GitHub (binary or too large)")
    if change.changes >= 400:
        reasons.append("large change")
    return Risk(round(score, 3), kind, tuple(reasons))


def riskiest_first(changes: list[FileChange]) -> list[tuple[FileChange, Risk]]:
    rated = [(change, assess(change)) for change in changes]
    rated.sort(key=lambda pair: (-pair[1].score, pair[0].path))
    return rated
