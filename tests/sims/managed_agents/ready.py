"""Ready-made scripts for the common runs (a normal review, a refusal, a dropped stream, ...)."""

from __future__ import annotations

import re
from typing import Sequence

from .script import Script, Step
from .steps import (
    agent_message, agent_thinking, custom_tool_use, drop_stream, if_tool_error, model_request, session_error,
    status_rescheduled, status_running, stop_budget_reached, stop_end_turn, stop_refusal,
    stop_retries_exhausted, terminate, thread_created, thread_idle, thread_message, thread_reply, tool_use,
    usage_snapshot,
)


DEFAULT_REVIEW_CALLS: list[tuple[str, dict]] = [
    ("report_progress", {"message": "Reviewing the diff with the reviewer and the tester.", "done": [], "todo": ["review", "tests"]}),
    (
        "publish_review",
        {
            "summary": "Two small issues; otherwise this looks good.",
            "event": "COMMENT",
            "comments": [
                {"path": "src/app.py", "line": 3, "side": "RIGHT", "severity": "minor", "body": "This name shadows a builtin."}
            ],
        },
    ),
]


def _calls(custom_calls: Sequence[tuple[str, dict] | dict] | None) -> list[tuple[str, dict]]:
    out = []
    for c in DEFAULT_REVIEW_CALLS if custom_calls is None else custom_calls:
        out.append((c["name"], c["input"]) if isinstance(c, dict) else (c[0], c[1]))
    return out


def normal_review_run(
    custom_calls: Sequence[tuple[str, dict] | dict] | None = None,
    *,
    reviewer_findings: str = "Found 1 minor issue in src/app.py line 3.",
    tester_report: str = "All 12 tests pass.",
    final_text: str = "Review published.",
) -> Script:
    """A coordinator run with reviewer and tester sub-agent threads, then the custom tool
    calls in order (each one waits for its result), usage and end_turn."""
    steps: list[Step] = [
        agent_thinking(),
        model_request(2400, 350),
        agent_message("I'll ask the reviewer and the tester to look at this pull request."),
        thread_created("reviewer"),
        thread_created("tester"),
        thread_message("reviewer", "Review the diff for bugs and risky changes."),
        thread_message("tester", "Run the test suite and report failures."),
        model_request(1800, 420, thread="reviewer"),
        tool_use("bash", {"command": "git diff --stat HEAD~1"}, result=" 2 files changed, 10 insertions(+)", thread="reviewer"),
        agent_message(reviewer_findings, thread="reviewer"),
        thread_reply("reviewer", reviewer_findings),
        thread_idle("reviewer"),
        model_request(1500, 260, thread="tester"),
        tool_use("bash", {"command": "python -m pytest -q"}, result="12 passed in 0.42s", thread="tester"),
        thread_reply("tester", tester_report),
        thread_idle("tester"),
        model_request(3000, 500, cache_read_input_tokens=1000),
    ]
    for name, inp in _calls(custom_calls):
        steps.append(custom_tool_use(name, inp))
    steps += [model_request(800, 120), usage_snapshot(), agent_message(final_text), stop_end_turn()]
    return Script(*steps, name="normal_review_run")


def bad_tool_input_then_fix(
    name: str = "publish_review",
    bad_input: dict | None = None,
    good_input: dict | None = None,
    *,
    final_text: str = "Review published after fixing the call.",
) -> Script:
    """Calls ``name`` with bad input; if the client answers ``is_error: true`` the agent
    corrects itself and calls again with ``good_input``."""
    bad = bad_input if bad_input is not None else {"summary": "", "event": "APPROVE_MAYBE", "comments": [{"path": "nope.py", "line": 0}]}
    good = good_input if good_input is not None else {"summary": "Looks good.", "event": "COMMENT", "comments": []}
    return Script(
        model_request(2000, 300),
        custom_tool_use(name, bad),
        if_tool_error(
            then=[agent_thinking(), model_request(600, 150), agent_message("The call was rejected; correcting the input."), custom_tool_use(name, good)],
        ),
        agent_message(final_text),
        stop_end_turn(),
        name="bad_tool_input_then_fix",
    )


def dropped_stream(
    custom_calls: Sequence[tuple[str, dict] | dict] | None = None,
    *,
    mode: str = "abort",
    final_text: str = "Done after the stream drop.",
) -> Script:
    """Emits a few events, cuts every open stream, then carries on (tool calls included), so
    the client has to reconnect and back-fill from events.list."""
    calls = _calls(custom_calls if custom_calls is not None else [("report_progress", {"message": "Still working."})])
    steps: list[Step] = [
        model_request(1000, 200),
        agent_message("Starting work."),
        tool_use("bash", {"command": "ls"}, result="README.md\nsrc\n"),
        drop_stream(mode),
        agent_message("Continuing while nobody listens."),
        model_request(900, 150),
    ]
    steps += [custom_tool_use(n, i) for n, i in calls]
    steps += [agent_message(final_text), stop_end_turn()]
    return Script(*steps, name="dropped_stream")


def repository_clone_error(repository_url: str | None = None, *, final_text: str = "The repository could not be cloned; I continued without it.") -> Script:
    """``session.error`` repository_clone_error (retrying, with repository_url); the session keeps running without the repo."""
    extra = {"repository_url": repository_url} if repository_url else {}
    return Script(
        session_error("repository_clone_error", "Failed to clone repository: authentication failed", retry_status="retrying", **extra),
        model_request(800, 120),
        agent_message(final_text),
        stop_end_turn(),
        name="repository_clone_error",
    )


def budget_reached(input_tokens: int = 400_000, output_tokens: int = 60_000) -> Script:
    """Expensive model requests, a usage snapshot, then idle with ``budget_reached``
    (reached earlier if the session has a lower budget)."""
    return Script(
        model_request(input_tokens, output_tokens, usage_event=True),
        model_request(input_tokens, output_tokens, usage_event=True),
        stop_budget_reached(),
        name="budget_reached",
    )


def refusal(category: str | None = "cyber", explanation: str | None = "The request was declined.") -> Script:
    return Script(model_request(900, 40), stop_refusal(category, explanation), name="refusal")


def retries_exhausted(error_type: str = "model_overloaded_error") -> Script:
    """Retrying error, rescheduled, then exhausted: idle with ``retries_exhausted``."""
    return Script(
        session_error(error_type, retry_status="retrying"),
        status_rescheduled(),
        status_running(),
        session_error(error_type, retry_status="exhausted"),
        stop_retries_exhausted(),
        name="retries_exhausted",
    )


def terminated(error_type: str = "unknown_error") -> Script:
    """A terminal ``session.error`` then ``session.status_terminated``."""
    return Script(model_request(300, 20), session_error(error_type, retry_status="terminal"), terminate(), name="terminated")


def end_turn_only(text: str = "Nothing to change here.") -> Script:
    return Script(model_request(1000, 80), agent_message(text), stop_end_turn(), name="end_turn_only")


ROUTER_ANSWER = "STANDARD: an ordinary change to application code, nothing security-sensitive."


def router_answer(text: str = ROUTER_ANSWER, *, input_tokens: int = 5_500, output_tokens: int = 40) -> Script:
    """The router agent's one-line answer: a short task read on a small model, one line back
    (priced at ~$0.006 on haiku, which the platform's cents round to $0.01)."""
    return Script(model_request(input_tokens, output_tokens), agent_message(text), stop_end_turn(), name="router_answer")


_COMMANDS = re.compile(r"<<<COMMANDS (\w+)>>>\n(.*?)\n?<<<END COMMANDS \1>>>", re.DOTALL)
VERIFIER_DEFAULT_COMMAND = "python -m pytest -q"


def task_commands(text: str) -> list[str]:
    """The commands a verifier's task lists between its markers (none: the CI's test command)."""
    match = _COMMANDS.search(text or "")
    commands = [line.strip() for line in match.group(2).splitlines() if line.strip()] if match else []
    return commands or [VERIFIER_DEFAULT_COMMAND]


def verifier_run(*, passed: bool = True, output: str | None = None, exit_code: int | None = None,
                 final_text: str | None = None) -> Script:
    """prmedic's verifier: runs each command its task lists (bash), reports them through
    `report_verification` (all exit 0 and passed; or, with ``passed=False``, the first one fails
    with ``output``), and ends its turn. Usage is what a short Sonnet run reads and writes."""

    async def run_and_report(ctx) -> None:
        text = "".join(b.get("text", "") for b in (ctx.message or {}).get("content") or [] if isinstance(b, dict))
        reported = []
        for i, command in enumerate(task_commands(text)):
            failing = not passed and i == 0
            out = (output or "FAILED tests/test_calc.py::test_add - assert 0 == 4\n1 failed in 0.05s") if failing \
                else (output or "1 passed in 0.04s")
            await tool_use("bash", {"command": command}, result=out, is_error=False)(ctx)
            reported.append({"command": command, "exit_code": (exit_code or 1) if failing else 0,
                             "output_tail": out})
        await custom_tool_use("report_verification", {"passed": passed, "commands": reported})(ctx)

    said = final_text or ("Every command passed at the fix commit." if passed else "The fix does not hold.")
    return Script(model_request(9_000, 700), run_and_report, model_request(2_500, 200), agent_message(said),
                  stop_end_turn(), name="verifier_run")
