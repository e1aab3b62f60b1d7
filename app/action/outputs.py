"""What a run leaves in the workflow: the step's outputs (`$GITHUB_OUTPUT`) and its job summary
(`$GITHUB_STEP_SUMMARY`). Pure text builders, and two appends."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.repo_config import SEVERITY_ORDER

OUTPUT_NAMES = ("conclusion", "review_url", "fix_pr_url", "comment_url", "cost_usd", "session_id")
ICONS = {"success": "✅", "neutral": "⚪", "failure": "❌", "skipped": "⏭️", "cancelled": "⏹️"}


def output_lines(values: Mapping[str, str]) -> str:
    """`values` in the runner's file-command syntax, each as `name<<DELIMITER … DELIMITER`, so a value
    with newlines (or one that looks like `x=y`) stays one value. As GitHub's toolkit does, the
    delimiter is random and a value that contains it is refused rather than cut short."""
    delimiter = f"ghadelimiter_{uuid.uuid4()}"
    parts = []
    for name, value in values.items():
        if delimiter in name or delimiter in value:
            raise ValueError(f"the output {name!r} contains the delimiter")
        parts.append(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
    return "".join(parts)


def append(path: Path | None, text: str) -> None:
    """Append to one of the runner's files (they may hold what earlier steps wrote)."""
    if path is None:
        return
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


@dataclass
class Summary:
    """What the job summary says about one run."""

    conclusion: str
    event: str  # "pull_request (opened) on octo-org/widgets#2"
    job: str | None = None  # "review" | "fix" | "/ask" … ; None when the event made no job
    reason: str | None = None  # why nothing ran, or why the run failed
    findings: Mapping[str, int] = field(default_factory=dict)
    tests: Sequence[Mapping[str, Any]] = ()
    cost_usd: float | None = None
    duration_seconds: float | None = None
    links: Mapping[str, str | None] = field(default_factory=dict)  # label → URL


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def summary_markdown(s: Summary) -> str:
    """The job summary: the outcome, findings by severity, tests the agents ran, cost, duration, links."""
    icon = ICONS.get(s.conclusion, "")
    title = f"### prmedic {s.job or 'action'}: {icon} {s.conclusion}".replace("  ", " ")
    lines = [title, "", f"Event: {s.event}"]
    if s.reason:
        lines += ["", s.reason]
    if s.findings or s.job == "review":
        counts = [(severity, int(s.findings.get(severity) or 0)) for severity in SEVERITY_ORDER]
        lines += ["", "| severity | findings |", "|---|---:|", *(f"| {name} | {n} |" for name, n in counts)]
    if s.tests:
        lines += ["", "**Tests the agents ran**", "", "| command | outcome | details |", "|---|---|---|"]
        for test in s.tests:  # `publish_review`'s `tests_run` (app/tools/schemas.py, TestRun)
            lines.append(f"| `{_cell(test.get('command') or '?')}` | {_cell(test.get('outcome') or '')} | "
                         f"{_cell(test.get('details') or '')} |")
    facts = []
    if s.cost_usd is not None:
        facts.append(f"Cost (list price): ${s.cost_usd:.2f}")
    if s.duration_seconds is not None:
        facts.append(f"Duration: {_duration(s.duration_seconds)}")
    if facts:
        lines += ["", " · ".join(facts)]
    links = [f"[{label}]({url})" for label, url in s.links.items() if url]
    if links:
        lines += ["", " · ".join(links)]
    return "\n".join(lines) + "\n"
