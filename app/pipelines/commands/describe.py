"""`/describe`: the pull request's description, written by the agents from the change itself.

The session gets one tool of its own, `write_description`. In the default mode (`body`) it writes
into the PR's body between prmedic's markers and keeps every word the author wrote outside them
(`merge_description`), re-reading the body just before writing so an edit made meanwhile is
kept; a second `/describe` replaces only its own part. With `commands.describe.mode: comment` it
posts one comment of its own instead, updated in place. The command's answer comment says where
the description went, or that there is none: a session that writes nothing never looks done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.logs import redact
from app.pipelines.commands.agents import open_pull, quoted, registry, run_command_session
from app.pipelines.session import cost_and_duration
from app.sessions import SessionOutcome
from app.tools.comments import upsert_comment
from app.tools.registry import ToolContext, ToolError
from app.tools.schemas import WriteDescriptionInput

if TYPE_CHECKING:
    from app.pipelines.commands.pipeline import Command

Result = tuple[bool, dict[str, Any]]

DESCRIBE_START = "<!-- prmedic:describe:start -->"
DESCRIBE_END = "<!-- prmedic:describe:end -->"
COMMENT_MARKER = "<!-- prmedic:describe -->"
BODY_LIMIT = 65_536  # GitHub refuses a pull request body or a comment longer than this
MIN_ROOM = 1_000  # with less room than this beside the author's text, no description is worth writing
CUT = "\n\n…(cut to fit GitHub's limit of 65,536 characters)"
COMMENT_HEADING = "**Description of this pull request**, written by prmedic from the change (`/describe` updates it):"

_START = re.compile(r"<!--\s*prmedic:describe:start\s*-->", re.I)
_END = re.compile(r"<!--\s*prmedic:describe:end\s*-->", re.I)
_ANY_MARKER = re.compile(r"<!--\s*prmedic:.*?-->", re.I | re.S)
_MARKER_LINE = re.compile(r"<!--\s*prmedic:describe:(?:start|end)\s*-->[ \t]*(?:\r?\n)?", re.I)


class NoRoom(ValueError):
    """The author's own text leaves no room for a description under GitHub's limit."""


@dataclass
class DescribeTarget:
    """Where `write_description` writes in this `/describe` job (`ToolContext.describe`), and where
    its last call wrote."""

    repo: str
    pr_number: int
    pr_url: str
    mode: str  # body | comment (`commands.describe.mode`)
    url: str | None = None


def neutralise(generated: str) -> str:
    """The agents' text without any prmedic marker, so it can neither end our part early nor
    claim another of prmedic's comments. Repeated until none is left: removing one must not join
    the pieces around it into another."""
    text = generated
    while (cleaned := _ANY_MARKER.sub("", text)) != text:
        text = cleaned
    return text.strip()


def _fit(text: str, room: int) -> str:
    """`text` if it fits in `room` characters, else cut with a note saying so."""
    if len(text) <= room:
        return text
    if room < MIN_ROOM:
        raise NoRoom(f"the description does not fit: GitHub keeps at most {BODY_LIMIT:,} characters, and the text "
                     f"around it already uses {BODY_LIMIT - room:,} of them")
    return text[: room - len(CUT)].rstrip() + CUT


def _our_parts(body: str) -> list[tuple[int, int]] | None:
    """The spans from each start marker to its end marker, in order; None when the markers do not
    pair up (a start without an end, an end before its start), so where our part ends is unknown."""
    marks = sorted([(m.start(), m.end(), "start") for m in _START.finditer(body)] +
                   [(m.start(), m.end(), "end") for m in _END.finditer(body)])
    if len(marks) % 2 or any(kind != ("start", "end")[i % 2] for i, (_, _, kind) in enumerate(marks)):
        return None
    return [(marks[i][0], marks[i + 1][1]) for i in range(0, len(marks), 2)]


def merge_description(existing: str | None, generated: str) -> str:
    """The PR body with `generated` as prmedic's part, every word outside the markers kept (pure).

    - No markers yet: the part is appended after the author's text (alone when there is none).
    - Markers that pair up: the first pair's content is replaced; any further pair is a copy of
      our part and is removed.
    - Markers that do not pair up: the markers alone are removed (every word is kept, since where
      our part ended is unknown) and a fresh part is appended.

    The generated text loses any prmedic marker of its own, and is cut to keep the body within
    GitHub's limit; raises `NoRoom` when the author's text leaves too little for a description.
    """
    body = existing or ""
    parts = _our_parts(body)
    if parts is None:
        body, parts = _MARKER_LINE.sub("", body), []
    if parts:
        (first_start, first_end), later = parts[0], parts[1:]
        before, after, cursor = body[:first_start], "", first_end
        for start, end in later:
            after += body[cursor:start]
            cursor = end
        after += body[cursor:]
    else:
        before = body.rstrip() + "\n\n" if body.strip() else ""
        after = ""
    text = neutralise(generated)
    fixed = len(before) + len(DESCRIBE_START) + 1 + 1 + len(DESCRIBE_END) + len(after)
    return f"{before}{DESCRIBE_START}\n{_fit(text, BODY_LIMIT - fixed)}\n{DESCRIBE_END}{after}"


def authors_text(body: str | None) -> str:
    """The PR body without prmedic's part (pure): what the author wrote, for the agents to read."""
    body = body or ""
    parts = _our_parts(body)
    if parts is None:
        return _MARKER_LINE.sub("", body).strip()
    kept, cursor = "", 0
    for start, end in parts:
        kept += body[cursor:start]
        cursor = end
    return (kept + body[cursor:]).strip()


def comment_body(generated: str) -> str:
    """The description as a comment of its own (mode `comment`), without prmedic markers and within
    GitHub's limit once `upsert_comment` adds its marker line (pure)."""
    return f"{COMMENT_HEADING}\n\n" + _fit(neutralise(generated),
                                           BODY_LIMIT - len(COMMENT_MARKER) - 1 - len(COMMENT_HEADING) - 2)


async def write_description(ctx: ToolContext, args: WriteDescriptionInput) -> str:
    """The `write_description` tool: the PR's body (re-read just before writing) or the comment."""
    target = ctx.describe
    if target is None or ctx.github is None:
        raise ToolError("This job has no pull request to describe; nothing was done.")
    text = redact(args.body)
    if not neutralise(text):
        raise ToolError("The description is empty once prmedic's own markers are taken out; nothing was written.")
    gh = await ctx.github()
    if target.mode == "comment":
        target.url = await upsert_comment(gh, target.repo, target.pr_number, comment_body(text), marker=COMMENT_MARKER)
        return (f"Description posted as a comment: {target.url}. Calling write_description again replaces it (one "
                "description comment per pull request).")
    path = f"/repos/{target.repo}/pulls/{target.pr_number}"
    current = await gh.getitem(path)  # now, not at the start: an edit the author made meanwhile is kept
    try:
        body = merge_description(current.get("body"), text)
    except NoRoom as exc:
        raise ToolError(f"Nothing was written: {exc}. Say so in your final message.") from None
    await gh.patch(path, data={"body": body})
    target.url = current.get("html_url") or target.pr_url
    return (f"Description written into the pull request's body, between prmedic's markers; the author's own text "
            f"around them is kept: {target.url}. Calling write_description again replaces only that part.")


def where_written(target: DescribeTarget) -> str:
    if target.mode == "comment":
        return f"The description of this pull request is posted as [a comment]({target.url})."
    return (f"The description of [this pull request]({target.url}) is written into its body, between prmedic's "
            "markers: the author's own text is kept, and the next `/describe` replaces only that part.")


def no_description_reason(outcome: SessionOutcome) -> str:
    if outcome.budget_reached:
        return "the budget (`budget.command_usd`) ran out before the agents wrote one"
    return "the agents ended without writing one"


async def describe(command: Command) -> Result:
    pr = await open_pull(command)
    if pr is None:
        return False, {"result": "closed"}
    job = command.ctx.job
    target = DescribeTarget(repo=job.repo, pr_number=pr["number"], mode=command.run.config.commands.describe.mode,
                            pr_url=pr.get("html_url") or f"https://github.com/{job.repo}/pull/{pr['number']}")
    pr = {**pr, "body": authors_text(pr.get("body"))}  # the agents describe the change, not our last description
    outcome = await run_command_session(command, pr, tools=registry("report_progress", "write_description"),
                                        describe=target)
    footer = f"`/describe` by @{command.user} · {cost_and_duration(outcome, command.run)}"
    session = outcome.as_result()
    if target.url is None:
        why = no_description_reason(outcome)
        await command.answer.finish(footer, body=f"`/describe` ended without a description: {why}."
                                                 f"{quoted(neutralise(outcome.final_message or ''))}")
        return False, {"result": "no_description", "reason": why, **session}
    await command.answer.finish(footer, body=where_written(target))
    return True, {"result": "described", "mode": target.mode, "description_url": target.url, **session}


HANDLERS = {"describe": describe}
