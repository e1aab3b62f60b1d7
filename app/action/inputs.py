"""What `prmedic action` is given, read from the environment the Actions runner sets (pure).

The runner sets `GITHUB_*` (the event, the repository, the API and web addresses, the files for
outputs and the job summary); `action.yml` passes the action's inputs as `INPUT_*` variables, so
that no input is ever pasted into a script. Every problem is reported at once, as a `UsageError`
(exit status 2), before anything reaches GitHub or Anthropic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.oneshot.result import UsageError
from app.repo_config import SEVERITY_ORDER

Mode = Literal["auto", "review", "fix", "describe"]
MODES: tuple[Mode, ...] = ("auto", "review", "fix", "describe")
FAIL_ON = (*SEVERITY_ORDER, "never")
DEFAULT_MENTION = "prmedic"
MAX_BUDGET_USD = 500.0  # the repository config's own ceiling (`budget.*_usd`)
# A GitHub login or App slug: what can follow `@` in a mention.
_MENTION = re.compile(r"^@?(?P<slug>[A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))(?:\[bot\])?$")


@dataclass(frozen=True)
class ActionInputs:
    """The run's facts and inputs, checked."""

    event_name: str
    event_path: Path
    repository: str  # owner/name, GITHUB_REPOSITORY
    api_url: str
    web_url: str
    token: str = ""
    mode: Mode = "auto"
    budget_usd: float | None = None
    fail_on: str | None = None
    config_path: Path | None = None
    mention: str = DEFAULT_MENTION  # the slug a mention names (`@prmedic review`)
    app_id: int | None = None
    app_private_key: str | None = None
    output_path: Path | None = None  # GITHUB_OUTPUT
    summary_path: Path | None = None  # GITHUB_STEP_SUMMARY

    @property
    def has_app(self) -> bool:
        return self.app_id is not None and bool(self.app_private_key)


def _input(env: Mapping[str, str], name: str) -> str:
    return (env.get(f"INPUT_{name.upper()}") or "").strip()


def _optional_path(value: str | None) -> Path | None:
    return Path(value) if value and value.strip() else None


def read_inputs(env: Mapping[str, str]) -> ActionInputs:
    """The inputs from the runner's environment; `UsageError` naming every problem."""
    problems: list[str] = []

    def need(name: str) -> str:
        value = (env.get(name) or "").strip()
        if not value:
            problems.append(f"{name} is not set: `prmedic action` runs as a step of a GitHub Actions job")
        return value

    event_name, event_path, repository = need("GITHUB_EVENT_NAME"), need("GITHUB_EVENT_PATH"), need("GITHUB_REPOSITORY")
    if repository and not re.fullmatch(r"[^/\s]+/[^/\s]+", repository):
        problems.append(f"GITHUB_REPOSITORY={repository!r} is not OWNER/NAME")
    urls = {}
    for name, default in (("GITHUB_API_URL", "https://api.github.com"), ("GITHUB_SERVER_URL", "https://github.com")):
        value = (env.get(name) or default).strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            problems.append(f"{name}={value!r} is not an http(s) URL")
        urls[name] = value

    token = _input(env, "github_token") or (env.get("GITHUB_TOKEN") or "").strip()
    if not token:
        problems.append("the `github_token` input is empty: leave it out to use the workflow's token "
                        "(`${{ github.token }}`), or pass an App installation token or a personal access token")

    mode = _input(env, "mode").lower() or "auto"
    if mode not in MODES:
        problems.append(f"the `mode` input is {mode!r}: use one of {', '.join(MODES)}")

    budget = None
    if raw := _input(env, "budget_usd"):
        try:
            budget = float(raw.removeprefix("$"))
        except ValueError:
            budget = -1.0
        if not 0 < budget <= MAX_BUDGET_USD:
            problems.append(f"the `budget_usd` input is {raw!r}: give US dollars above 0 and at most {MAX_BUDGET_USD:g}")

    fail_on = _input(env, "fail_on").lower() or None
    if fail_on is not None and fail_on not in FAIL_ON:
        problems.append(f"the `fail_on` input is {fail_on!r}: use one of {', '.join(FAIL_ON)}")

    config_path = None
    if raw := _input(env, "config"):
        config_path = Path(raw)
        if not config_path.is_file():
            problems.append(f"the `config` input names {raw!r}, which is not a file on the runner (a path relative "
                            "to the workspace; check out a trusted ref first, never the pull request's head)")

    mention = DEFAULT_MENTION
    if raw := _input(env, "trigger_phrase"):
        match = _MENTION.match(raw)
        if match is None:
            problems.append(f"the `trigger_phrase` input is {raw!r}: give a mention such as `@prmedic` (letters, "
                            "digits and dashes)")
        else:
            mention = match["slug"]

    app_id, key = None, _input(env, "app_private_key") or None
    if raw := _input(env, "app_id"):
        if raw.isdigit() and int(raw) > 0:
            app_id = int(raw)
        else:
            problems.append(f"the `app_id` input is {raw!r}: give the App's numeric id (its settings page shows it)")
    if bool(raw) != bool(key):
        problems.append("`app_id` and `app_private_key` go together: give both (for a private repository) or neither")

    if problems:
        raise UsageError("prmedic action cannot start:\n" + "\n".join(f"  - {p}" for p in problems))
    return ActionInputs(
        event_name=event_name, event_path=Path(event_path), repository=repository,
        api_url=urls["GITHUB_API_URL"], web_url=urls["GITHUB_SERVER_URL"], token=token, mode=mode,  # type: ignore[arg-type]
        budget_usd=budget, fail_on=fail_on, config_path=config_path, mention=mention, app_id=app_id,
        app_private_key=key, output_path=_optional_path(env.get("GITHUB_OUTPUT")),
        summary_path=_optional_path(env.get("GITHUB_STEP_SUMMARY")))
