"""Slash-commands, the pure parts: parsing (app/routing/commands.py), the permission rule and
the cached permission look-up (app/pipelines/commands/permissions.py), the texts."""

from __future__ import annotations

import pytest

from app.pipelines.commands import permissions, texts
from app.pipelines.commands.permissions import (
    allows,
    author_may,
    needed_permission,
    repo_permission,
)
from app.repo_config import parse_repo_config
from app.routing.commands import COMMANDS, SlashCommand, app_slug, parse_command


@pytest.mark.parametrize("body, expected", [
    ("/review", SlashCommand("review", "")),
    ("/review full", SlashCommand("review", "full")),
    ("Thanks!\n\n  /pause\nmore text", SlashCommand("pause", "more text")),
    ("/ask why is the cache\nkeyed by user?", SlashCommand("ask", "why is the cache\nkeyed by user?")),
    ("/Help", SlashCommand("help", "")),
    ("/frobnicate now", SlashCommand("help", "", unknown="frobnicate")),
    ("```\n/fix\n```\n/config", SlashCommand("config", "")),
    ("> /fix\n/describe", SlashCommand("describe", "")),
    ("~~~\n/fix\n~~~", None),
    ("/usr/bin/env python3 breaks", None),
    ("/path/to/file.py:12 is wrong", None),
    ("https://github.com/o/r/pull/1/fix", None),
    ("see /fix", None),
    ("`/fix`", None),
    ("/fix.", None),
    ("", None),
    (None, None),
])
def test_parse_commands_at_the_start_of_a_line(body, expected):
    assert parse_command(body, slug="prmedic") == expected


@pytest.mark.parametrize("body, expected", [
    ("Hey @prmedic review please", SlashCommand("review", "please", mention=True)),
    ("@prmedic /stop", SlashCommand("stop", "", mention=True)),
    ("cc @prmedic[bot] pause.", SlashCommand("pause", "", mention=True)),
    ("@PrMedic, config", SlashCommand("config", "", mention=True)),
    ("@prmedic ask what does\nthis do?", SlashCommand("ask", "what does\nthis do?", mention=True)),
    ("thanks @prmedic!", SlashCommand("help", "", unknown="", mention=True)),  # answered, not silent
    ("@prmedic thanks!", SlashCommand("help", "", unknown="thanks", mention=True)),
    ("@prmedic", SlashCommand("help", "", unknown="", mention=True)),
    ("ping @prmedic-fan review", None),
    ("mail me at me@prmedic review", None),
    ("`@prmedic review`", None),
    ("> @prmedic review", None),
    ("```\n@prmedic review\n```", None),
])
def test_parse_mentions_anywhere(body, expected):
    assert parse_command(body, slug="prmedic") == expected


def test_without_a_slug_mentions_are_not_commands():
    assert parse_command("@prmedic review") is None
    assert app_slug("prmedic[bot]") == "prmedic" and app_slug(None) is None


def test_every_command_has_a_default_permission_and_a_description():
    config = parse_repo_config(None).config
    assert set(config.commands.permissions) == set(COMMANDS) == set(texts.WHAT)
    assert {n for n, p in config.commands.permissions.items() if p == "read"} == {
        "review", "ask", "describe", "help", "config"}


def test_a_config_naming_some_commands_keeps_the_defaults_of_the_others():
    config = parse_repo_config("commands:\n  permissions:\n    review: write\n").config
    assert needed_permission(config.commands, "review") == "write"
    assert needed_permission(config.commands, "stop") == "write"
    assert needed_permission(config.commands, "help") == "read"


@pytest.mark.parametrize("have, needed, ok", [
    ("admin", "maintain", True), ("maintain", "write", True), ("write", "write", True), ("triage", "write", False),
    ("read", "triage", False), ("read", "read", True), ("none", "read", False), ("custom-role", "read", False),
])
def test_permission_order(have, needed, ok):
    assert allows(have, needed) is ok


def test_the_pr_author_may_review_ask_and_describe_their_own_pr():
    assert author_may("review", "Octocat", "octocat") and author_may("describe", "a", "a") and author_may("ask", "a", "a")
    assert not author_may("stop", "a", "a") and not author_may("review", "a", "b") and not author_may("review", None, None)


class FakeGitHub:
    def __init__(self, answer):
        self.answer, self.calls = answer, 0

    async def getitem(self, url):
        self.calls += 1
        return self.answer


async def test_the_permission_is_looked_up_once_a_minute_and_keeps_maintain_and_triage():
    permissions.clear_cache()
    gh = FakeGitHub({"permission": "write", "role_name": "maintain"})
    assert await repo_permission(gh, "o/r", "Alice") == "maintain"
    assert await repo_permission(gh, "o/r", "alice") == "maintain" and gh.calls == 1
    custom = FakeGitHub({"permission": "read", "role_name": "security-reviewer"})
    assert await repo_permission(custom, "o/other", "alice") == "read"
    permissions.clear_cache()


def test_help_marks_the_commands_not_available_yet_and_the_unknown_one():
    text = texts.help_text(parse_repo_config(None).config, "prmedic", unknown="frobnicate")
    assert text.startswith("Unknown command `/frobnicate`.")
    for name in texts.NOT_YET:
        line = next(line for line in text.splitlines() if line.startswith(f"| `/{name}"))
        assert "not available in this version yet" in line
    assert "*not available" not in next(line for line in text.splitlines() if line.startswith("| `/stop`"))


# -- the answer comment of a command that runs agents -------------------------------------------

def test_the_answer_shows_progress_until_the_agents_answer_then_the_outcome_under_it():
    from app.pipelines.commands.feedback import render_answer
    from app.pipelines.progress import progress_output

    status = progress_output("Reading total()", ["read the diff"], ["answer"])
    working = render_answer("`/ask` asked by @ann: working on it…", status=status, reply=None, footer=None)
    assert working.startswith("`/ask` asked by @ann: working on it…\n\nReading total()")
    assert "- [x] read the diff" in working and "- [ ] answer" in working
    answered = render_answer("h", status=status, reply="It skips the first item.", footer=None)
    assert answered == "It skips the first item.\n\n---\n*Still working…*"
    done = render_answer("h", status=status, reply="It skips the first item.", footer="`/ask` by @ann · 3 s")
    assert done == "It skips the first item.\n\n---\n`/ask` by @ann · 3 s"
    assert render_answer("h", status=None, reply=None, footer=None) == "h\n\nStarting the agents…"


class _Comments:
    """A Feedback stand-in that records every body written (the answer comment's edits)."""

    def __init__(self):
        self.bodies: list[str] = []

    async def answer(self, body: str) -> str:
        self.bodies.append(body)
        return "https://github.com/o/r/pull/1#issuecomment-1"


async def test_progress_is_throttled_and_a_reply_or_the_end_is_written_at_once():
    from app.pipelines.commands.feedback import CommandAnswer

    comments = _Comments()
    answer = CommandAnswer(comments, "heading", min_interval=60)  # type: ignore[arg-type]
    await answer.start()
    assert await answer.report("one") == "Progress shown on the command's answer comment."  # the plan, at once
    assert await answer.report("two") == "Progress noted; the command's answer comment shows it within 60 s."
    await answer.report("three")
    assert comments.bodies == ["heading\n\nStarting the agents…", "heading\n\none"]  # two, three: coalesced
    assert await answer.reply("The answer.") == "https://github.com/o/r/pull/1#issuecomment-1"
    await answer.finish("footer")
    assert comments.bodies[2:] == ["The answer.\n\n---\n*Still working…*", "The answer.\n\n---\nfooter"]
    await answer.aclose()  # a report still waiting when the session ends is dropped: the end is written
    assert len(comments.bodies) == 4
