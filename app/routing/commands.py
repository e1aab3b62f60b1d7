"""Slash-commands in PR comments → command jobs (README, "Slash-commands").

A command is a `/word` alone as the first token of a line, or a mention `@<app-slug> word`
anywhere, outside code blocks, inline code and quotes. Only new comments by people count: an
edited comment never runs a command again, and comments by any bot are ignored. An unknown
`/word` or a mention without a known command becomes a `help` job flagged unknown, so it is
answered rather than dropped. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gidgethub import routing, sansio

from app.routing.fields import installation_id, repository_fields
from app.routing.intake import Intake
from app.store.models import JobKind, NewJob

router = routing.Router()

COMMANDS = ("review", "fix", "ask", "test", "describe", "stop", "pause", "resume", "config", "help", "apply",
            "discard")
# `/word` alone as the first token: `/usr/bin/env`, `/path.py` or `/20%` are not commands.
_COMMAND_LINE = re.compile(r"^\s*/(?P<name>[A-Za-z][A-Za-z0-9_-]{0,39})(?=\s|$)(?P<args>.*)$")
_INLINE_CODE = re.compile(r"`+[^`]*`+")


@dataclass(frozen=True, slots=True)
class SlashCommand:
    name: str
    args: str
    unknown: str | None = None  # the word that is not a command (then `name` is "help")
    mention: bool = False


def app_slug(bot_login: str | None) -> str | None:
    """The App's slug from its bot login (`prmedic[bot]` → `prmedic`)."""
    return bot_login.removesuffix("[bot]") if bot_login else None


def _mention_pattern(slug: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w@/.-])@{re.escape(slug)}(?![\w-])(?:\[bot\])?(?P<rest>.*)$", re.IGNORECASE)


def _command(word: str, args: str, *, mention: bool) -> SlashCommand:
    name = word.lower()
    if name in COMMANDS:
        return SlashCommand(name, args, mention=mention)
    return SlashCommand("help", "", unknown=word, mention=mention)


def _args(first: str, following: list[str]) -> str:
    return "\n".join([first, *following]).strip()


def parse_command(body: str | None, *, slug: str | None = None) -> SlashCommand | None:
    """The first command of the comment (a line's `/word`, or a mention of the App), or None.

    The arguments run to the end of the comment, so `/ask` can take a multi-line question.
    """
    if not body:
        return None
    lines = body.replace("\r\n", "\n").split("\n")
    mention = _mention_pattern(slug) if slug else None
    in_fence = False
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
            continue
        if in_fence or stripped.startswith(">"):
            continue
        match = _COMMAND_LINE.match(line)
        if match:
            return _command(match["name"], _args(match["args"], lines[index + 1:]), mention=False)
        found = mention.search(_INLINE_CODE.sub(" ", line)) if mention else None
        if found:
            rest = found["rest"].strip().lstrip(",:;").strip()
            word, _, first = rest.partition(" ")
            word = word.strip().lstrip("/").rstrip(",.:;!?")
            if not word:
                return SlashCommand("help", "", unknown="", mention=True)
            return _command(word, _args(first, lines[index + 1:]), mention=True)
    return None


def command_job(data: dict, command: SlashCommand, *, pr_number: int, source: str) -> NewJob:
    repo = repository_fields(data["repository"])
    comment = data["comment"]
    author = comment.get("user") or {}
    pr_author = ((data.get("issue") or data.get("pull_request") or {}).get("user") or {}).get("login")
    payload = {
        "repository": repo,
        "command": command.name,
        "args": command.args,
        "source": source,
        "pr_author": pr_author,
        "comment": {
            "id": comment["id"],
            "html_url": comment.get("html_url"),
            "author": author.get("login"),
            "author_association": comment.get("author_association"),
        },
    }
    if command.unknown is not None:
        payload["unknown"] = command.unknown
    if source == "pull_request_review_comment":
        payload["comment"].update(
            path=comment.get("path"), line=comment.get("line"), side=comment.get("side"),
            diff_hunk=comment.get("diff_hunk"), in_reply_to_id=comment.get("in_reply_to_id"),
            commit_id=comment.get("commit_id"),
        )
    head_sha = (data.get("pull_request") or {}).get("head", {}).get("sha")
    return NewJob.model_construct(  # built from decoded, typed fields: no second validation
        kind=JobKind.command,
        repo=repo["full_name"],
        installation_id=installation_id(data),
        pr_number=pr_number,
        head_sha=head_sha,
        payload=payload,
    )


def _from_human(data: dict, intake: Intake) -> bool:
    sender = data.get("sender") or {}
    commenter = (data.get("comment") or {}).get("user") or {}
    if sender.get("type") == "Bot" or commenter.get("type") == "Bot":
        intake.ignore("comment by a bot")
        return False
    return True


def _parse(data: dict, intake: Intake) -> SlashCommand | None:
    return parse_command((data.get("comment") or {}).get("body"), slug=app_slug(intake.bot_login))


# Registered for `created` only: an edited comment never runs a command again.
@router.register("issue_comment", action="created")
async def on_issue_comment(event: sansio.Event, intake: Intake) -> None:
    data = event.data
    if not (data.get("issue") or {}).get("pull_request"):
        intake.ignore("comment on an issue, not a pull request")
        return
    command = _parse(data, intake)
    if command is None:
        intake.ignore("comment without a command")
        return
    if _from_human(data, intake):
        intake.add_job(command_job(data, command, pr_number=data["issue"]["number"], source="issue_comment"))


@router.register("pull_request_review_comment", action="created")
async def on_review_comment(event: sansio.Event, intake: Intake) -> None:
    data = event.data
    command = _parse(data, intake)
    if command is None:
        intake.ignore("review comment without a command")
        return
    if _from_human(data, intake):
        intake.add_job(command_job(
            data, command, pr_number=data["pull_request"]["number"], source="pull_request_review_comment"))
