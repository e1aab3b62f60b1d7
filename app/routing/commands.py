"""Slash-commands in PR comments → command jobs."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gidgethub import routing, sansio

from app.routing.fields import installation_id, repository_fields
from app.routing.intake import Intake
from app.store.models import JobKind, NewJob

router = routing.Router()

COMMANDS = ("review", "fix", "ask", "test", "stop", "help")
_COMMAND_LINE = re.compile(r"^\s*/(?P<name>[a-z][a-z-]*)(?=\s|$)(?P<args>.*)$")


@dataclass(frozen=True, slots=True)
class SlashCommand:
    name: str
    args: str


def parse_command(body: str | None) -> SlashCommand | None:
    """The first known `/command` at the start of a line, outside code blocks and quotes.

    The arguments run to the end of the comment, so `/ask` can take a multi-line question.
    """
    if not body:
        return None
    lines = body.replace("\r\n", "\n").split("\n")
    in_fence = False
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
            continue
        if in_fence or stripped.startswith(">"):
            continue
        match = _COMMAND_LINE.match(line)
        if match and match["name"] in COMMANDS:
            args = "\n".join([match["args"], *lines[index + 1:]]).strip()
            return SlashCommand(match["name"], args)
    return None


def command_job(data: dict, command: SlashCommand, *, pr_number: int, source: str) -> NewJob:
    repo = repository_fields(data["repository"])
    comment = data["comment"]
    author = comment.get("user") or {}
    payload = {
        "repository": repo,
        "command": command.name,
        "args": command.args,
        "source": source,
        "comment": {
            "id": comment["id"],
            "html_url": comment.get("html_url"),
            "author": author.get("login"),
            "author_association": comment.get("author_association"),
        },
    }
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
    if sender.get("type") == "Bot":
        intake.ignore("comment by a bot")
        return False
    return True


@router.register("issue_comment", action="created")
async def on_issue_comment(event: sansio.Event, intake: Intake) -> None:
    data = event.data
    if not (data.get("issue") or {}).get("pull_request"):
        intake.ignore("comment on an issue, not a pull request")
        return
    command = parse_command(data["comment"].get("body"))
    if command is None:
        intake.ignore("comment without a command")
        return
    if _from_human(data, intake):
        intake.add_job(command_job(data, command, pr_number=data["issue"]["number"], source="issue_comment"))


@router.register("pull_request_review_comment", action="created")
async def on_review_comment(event: sansio.Event, intake: Intake) -> None:
    data = event.data
    command = parse_command(data["comment"].get("body"))
    if command is None:
        intake.ignore("review comment without a command")
        return
    if _from_human(data, intake):
        intake.add_job(command_job(
            data, command, pr_number=data["pull_request"]["number"], source="pull_request_review_comment"))
