"""Reading the definition files: YAML with the line of a syntax error, pydantic errors as
``file: field 'x': problem`` lines, an agent file's front matter and body, `extends`, and
`agents/teams.yml` (docs/architecture.md, "Agents and environments")."""

from __future__ import annotations

import re
from importlib.resources.abc import Traversable
from typing import Any

import yaml
from pydantic import ValidationError

from app.agents.teams import TEAMS_FILE, Teams, TeamsFile


def describe_errors(source: str, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err.get("loc", ()))
        message = err.get("msg", "is invalid").removeprefix("Value error, ")
        if err.get("type") == "missing":
            message = "is required but missing"
        elif err.get("type") == "extra_forbidden":
            message = "is not a known field (check the spelling)"
        problems.append(f"{source}: field '{loc}': {message}" if loc else f"{source}: {message}")
    return problems


def load_yaml(source: str, text: str, what: str) -> tuple[Any, list[str]]:
    try:
        return yaml.safe_load(text), []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [f"{source}: {what} is not valid YAML{where}: {problem}"]


_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*\r?\n?(.*)\Z", re.DOTALL | re.MULTILINE)


def split_agent(source: str, text: str) -> tuple[dict[str, Any] | None, str, list[str]]:
    """An agent file's front matter (a mapping, not validated yet) and its body."""
    match = _FRONT_MATTER.match(text.lstrip("\ufeff"))
    if match is None:
        return None, "", [(f"{source}: no YAML front matter (the file must start with a '---' line, and the "
                           f"front matter end with another)")]
    data, problems = load_yaml(source, match.group(1), "the front matter")
    if problems:
        return None, "", problems
    if not isinstance(data, dict):
        return None, "", [f"{source}: the front matter must be a YAML mapping of fields"]
    return data, match.group(2).strip(), []


def extended(source: str, front: dict[str, Any], body: str,
             files: dict[str, tuple[str, dict[str, Any], str]]) -> tuple[dict[str, Any], str, list[str]]:
    """`front` and `body` with the agent they extend folded in (`files`: stem → source, front, body).

    The parent's fields are the defaults, the child's replace them; the child's body is appended
    to the parent's prompt. Without `extends` they come back unchanged."""
    if "extends" not in front:
        return front, body, []
    front = dict(front)
    parent_name = front.pop("extends")
    where = f"{source}: field 'extends'"
    if not isinstance(parent_name, str) or not parent_name:
        return front, body, [f"{where}: must be the name of another agent file"]
    parent = files.get(parent_name)
    if parent_name == front.get("name") or parent is None:
        known = ", ".join(sorted(n for n in files if n != front.get("name"))) or "none"
        why = "an agent cannot extend itself" if parent_name == front.get("name") else f"no agent named {parent_name!r}"
        return front, body, [f"{where}: {why} (defined: {known})"]
    parent_source, parent_front, parent_body = parent
    if "extends" in parent_front:
        return front, body, [f"{where}: {parent_name!r} extends another agent itself ({parent_source}); one level only"]
    merged = {k: v for k, v in parent_front.items() if k != "name"} | front
    return merged, f"{parent_body}\n\n{body}" if body else parent_body, []


def load_teams(folder: Traversable, label: str) -> tuple[Teams | None, list[str]]:
    """`agents/teams.yml`, validated on its own (`app.agents.teams.team_problems` checks it against the agents)."""
    source = f"{label}/{TEAMS_FILE}"
    file = folder / TEAMS_FILE
    if not folder.is_dir():
        return None, []
    if not file.is_file():
        return None, [(f"{source}: not found (it names the agent that leads each review depth, light, standard "
                       f"and deep, and the router)")]
    data, problems = load_yaml(source, file.read_text(encoding="utf-8"), "the file")
    if problems:
        return None, problems
    if not isinstance(data, dict):
        return None, [f"{source}: must be a YAML mapping of fields"]
    try:
        return Teams.from_file(TeamsFile.model_validate(data), source), []
    except ValidationError as exc:
        return None, describe_errors(source, exc)
