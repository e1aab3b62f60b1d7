"""`.github/prmedic.yml`: a repository's own settings (docs/architecture.md, "Repository config").

Read from the default branch, never from the PR head, whose author controls it. An invalid
file never stops prmedic: the defaults are used and the exact problems are reported on the PR.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Annotated, Literal

import yaml
from gidgethub import BadRequest
from gidgethub.abc import GitHubAPI
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

CONFIG_PATH = ".github/prmedic.yml"
Severity = Literal["blocker", "major", "minor", "nit"]
Permission = Literal["read", "triage", "write", "maintain", "admin"]
SEVERITY_ORDER = {"blocker": 0, "major": 1, "minor": 2, "nit": 3}

DEFAULT_IGNORE_PATHS = [
    "**/*.lock", "**/package-lock.json", "**/yarn.lock", "**/pnpm-lock.yaml", "**/poetry.lock", "**/Cargo.lock",
    "**/go.sum", "**/*.min.js", "**/*.min.css", "**/*.map", "**/vendor/**", "**/node_modules/**",
    "**/dist/**", "**/*.pb.go", "**/*_pb2.py", "**/*.snap",
]
# Paths where a mistake costs most: authentication, security and cryptography code, database
# migrations, CI configuration and container builds.
DEFAULT_DEEP_PATHS = [
    "auth/", "authentication/", "security/", "crypto/", "migrations/",
    ".github/workflows/**", ".gitlab-ci.yml", ".circleci/**", "Jenkinsfile", "Dockerfile*",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PathInstructions(_Section):
    path: str = Field(description="glob of the files these instructions are for, e.g. 'src/api/**'")
    instructions: str


class ReviewConfig(_Section):
    enabled: bool = True
    triggers: list[Literal["opened", "reopened", "synchronize", "ready_for_review"]] = Field(
        default_factory=lambda: ["opened", "reopened", "synchronize", "ready_for_review"])
    drafts: bool = False
    bot_authors: bool = False
    ignore_titles: list[str] = Field(default_factory=lambda: [r"^\s*(\[?wip\]?|draft)\b"])
    ignore_labels: list[str] = Field(default_factory=lambda: ["no-review", "skip-review"])
    ignore_authors: list[str] = Field(default_factory=list)
    instructions: str = ""
    path_instructions: list[PathInstructions] = Field(default_factory=list)
    min_severity: Severity = "minor"
    max_comments: int = Field(10, ge=0, le=50)
    fail_on: Severity | Literal["never"] = "never"
    allow_approve: bool = False
    # How deep a review goes (app/pipelines/review/route.py); `auto` decides per pull request.
    depth: Literal["auto", "light", "standard", "deep"] = "auto"
    # Globs of paths that make an `auto` review `deep`; setting it replaces the defaults.
    deep_paths: list[str] = Field(default_factory=lambda: list(DEFAULT_DEEP_PATHS))

    @field_validator("deep_paths")
    @classmethod
    def _globs(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if not pattern.strip():
                raise ValueError("an empty glob matches nothing; remove it")
        return patterns

    @field_validator("ignore_titles")
    @classmethod
    def _regexes(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression ({exc})") from None
        return patterns


class FixConfig(_Section):
    enabled: bool = True
    delivery: Literal["pull_request", "push"] = "pull_request"
    # Whether a fix waits for a person's decision (`/apply`, `/discard`, the check run's buttons)
    # before anything reaches the pull request. Unset: `required` with `delivery: push` (a commit on
    # someone's branch), `auto` with pull-request delivery (the fix PR is itself the request).
    # Fork PRs are unaffected: their fix is only ever offered.
    approval: Literal["auto", "required"] | None = None
    # Whether a fix is checked by an independent verifier session (the failing commands run again at
    # the fix commit) before anything is delivered; off: delivered unverified, and it says so.
    verify: bool = True
    allow_workflow_changes: bool = False
    max_attempts: int = Field(2, ge=0, le=10)
    bot_authors: bool = False
    max_patch_bytes: int = Field(200_000, ge=1_000, le=5_000_000)

    @model_validator(mode="after")
    def _approval_by_delivery(self) -> FixConfig:
        if self.approval is None:
            self.approval = "required" if self.delivery == "push" else "auto"
        return self


class BudgetConfig(_Section):
    review_usd: float = Field(5.0, gt=0, le=500)
    fix_usd: float = Field(10.0, gt=0, le=500)
    command_usd: float = Field(3.0, gt=0, le=500)


CommandName = Literal["review", "fix", "ask", "test", "describe", "stop", "pause", "resume", "config", "help",
                      "apply", "discard"]
DEFAULT_COMMAND_PERMISSIONS: dict[str, Permission] = {
    "review": "read", "ask": "read", "describe": "read", "help": "read", "config": "read",
    "fix": "write", "test": "write", "stop": "write", "pause": "write", "resume": "write",
    "apply": "write", "discard": "write"}


class DescribeConfig(_Section):
    # body: the PR's description, between prmedic's markers (the author's text is kept);
    # comment: one comment of its own, updated in place.
    mode: Literal["body", "comment"] = "body"


class CommandsConfig(_Section):
    enabled: bool = True
    # The lowest repository permission a commenter needs for each command; commands not named
    # keep their default.
    permissions: dict[CommandName, Permission] = Field(default_factory=lambda: dict(DEFAULT_COMMAND_PERMISSIONS))
    describe: DescribeConfig = Field(default_factory=DescribeConfig)

    @field_validator("permissions")
    @classmethod
    def _with_defaults(cls, given: dict[str, Permission]) -> dict[str, Permission]:
        return {**DEFAULT_COMMAND_PERMISSIONS, **given}


# A package as a package manager takes it: a name and at most a pinned version, nothing a shell or
# a URL could make more of (no spaces, quotes, `;|&$<>`, no `://`).
PACKAGE_PATTERNS: dict[str, str] = {
    "pip": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}(\[[A-Za-z0-9._,-]{1,100}\])?((==|~=)[A-Za-z0-9.*+!_-]{1,50})?$",
    "npm": r"^(@[a-z0-9][a-z0-9._-]{0,99}/)?[a-z0-9][a-z0-9._-]{0,99}(@[A-Za-z0-9._-]{1,50})?$",
    "apt": r"^[a-z0-9][a-z0-9.+-]{0,99}(=[A-Za-z0-9.+~:_-]{1,50})?$",
}
MAX_PACKAGES_PER_MANAGER = 25
MAX_ALLOWED_HOSTS = 20
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_ENVIRONMENT_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"


class ExtraPackages(_Section):
    """Packages a repository adds to its base environment, per package manager."""

    pip: list[str] = Field(default_factory=list, max_length=MAX_PACKAGES_PER_MANAGER)
    apt: list[str] = Field(default_factory=list, max_length=MAX_PACKAGES_PER_MANAGER)
    npm: list[str] = Field(default_factory=list, max_length=MAX_PACKAGES_PER_MANAGER)

    @field_validator("pip", "apt", "npm")
    @classmethod
    def _names(cls, names: list[str], info: ValidationInfo) -> list[str]:
        pattern = re.compile(PACKAGE_PATTERNS[info.field_name])
        for name in names:
            if not isinstance(name, str) or not pattern.match(name) or "://" in name:
                raise ValueError(f"{name!r} is not a {info.field_name} package name (a name, optionally pinned)")
        return list(dict.fromkeys(names))


class EnvironmentExtension(_Section):
    """`environment: {base, packages, allowed_hosts}`: the base environment (else the one for the
    repository's language, else `default`) with packages added and hosts added to its limited
    networking. Networking itself is never taken from a repository: any other key is refused."""

    base: str | None = Field(None, pattern=_ENVIRONMENT_NAME)
    packages: ExtraPackages = Field(default_factory=ExtraPackages)
    allowed_hosts: list[str] = Field(default_factory=list, max_length=MAX_ALLOWED_HOSTS)

    @field_validator("allowed_hosts")
    @classmethod
    def _hostnames(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not isinstance(host, str) or not _HOSTNAME.match(host):
                raise ValueError(f"{host!r} is not a hostname (a bare name like 'registry.example.com': "
                                 "no scheme, port, path or wildcard)")
        return sorted(set(hosts))

    @property
    def extends(self) -> bool:
        """Whether it adds anything to its base (else the base itself is used)."""
        return bool(self.allowed_hosts or self.packages.pip or self.packages.apt or self.packages.npm)


class RepoConfig(_Section):
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    fix: FixConfig = Field(default_factory=FixConfig)
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    # A name (`python`), or an extension of one (EnvironmentExtension).
    environment: EnvironmentExtension | str | None = None
    ignore_paths: list[str] = Field(default_factory=list)
    use_default_ignores: bool = True
    # The operator's MCP servers this repository's agents may use, by name (app/agents/mcp.py); a name
    # the operator did not configure is reported and ignored.
    mcp: list[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]] = Field(
        default_factory=list, max_length=20)

    @property
    def all_ignore_paths(self) -> list[str]:
        return (DEFAULT_IGNORE_PATHS if self.use_default_ignores else []) + self.ignore_paths


@dataclass
class LoadedConfig:
    config: RepoConfig
    errors: list[str] = field(default_factory=list)
    found: bool = False


def _location(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_repo_config(text: str | None) -> LoadedConfig:
    """Validate the file's text; on any problem keep the defaults and say exactly what is wrong."""
    if text is None:
        return LoadedConfig(RepoConfig())
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return LoadedConfig(RepoConfig(), [f"{CONFIG_PATH} is not valid YAML{where}: {problem}"], True)
    if data is None:
        return LoadedConfig(RepoConfig(), found=True)
    if not isinstance(data, dict):
        return LoadedConfig(RepoConfig(), [f"{CONFIG_PATH} must be a mapping of settings, not {type(data).__name__}"],
                            True)
    data = dict(data)
    environment, env_errors = _environment(data.pop("environment", None))
    try:
        config = RepoConfig.model_validate(data)
    except ValidationError as exc:
        return LoadedConfig(RepoConfig(), env_errors + _problems(exc), True)
    config.environment = environment
    return LoadedConfig(config, env_errors, True)


def _problems(exc: ValidationError, prefix: tuple = ()) -> list[str]:
    return [
        f"{CONFIG_PATH}: `{_location(prefix + tuple(e['loc']))}`: "
        + ("is not a known setting" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, "))
        for e in exc.errors(include_url=False)
    ]


def _environment(value: object) -> tuple[EnvironmentExtension | str | None, list[str]]:
    """The `environment` setting, checked on its own: an invalid extension is reported and its
    `base` (if that is a plain name) is used, while the rest of the file still applies."""
    if value is None or isinstance(value, str):
        return value, []
    if not isinstance(value, dict):
        return None, [f"{CONFIG_PATH}: `environment`: must be an environment name or a mapping "
                      f"(base, packages, allowed_hosts), not {type(value).__name__}"]
    base = value.get("base")
    fallback = base if isinstance(base, str) and re.match(_ENVIRONMENT_NAME, base) else None
    errors = [f"{CONFIG_PATH}: `environment.networking`: is never taken from a repository's config (the "
              "environment keeps its limited networking; list extra hosts under `allowed_hosts`)"
              ] if "networking" in value else []
    try:
        extension = EnvironmentExtension.model_validate({k: v for k, v in value.items() if k != "networking"})
    except ValidationError as exc:
        errors += _problems(exc, ("environment",))
    else:
        if not errors:
            return (extension if extension.extends else extension.base), []
    used = f"the `{fallback}` environment" if fallback else "the environment for the repository's language"
    return fallback, [*errors, f"{CONFIG_PATH}: `environment`: the extension is not used until it is fixed; "
                               f"the job runs in {used} as it is"]


async def fetch_repo_config(gh: GitHubAPI, repo: str, default_branch: str) -> LoadedConfig:
    """The config from the default branch; a missing file means the defaults, silently."""
    try:
        answer = await gh.getitem(f"/repos/{repo}/contents/{CONFIG_PATH}?ref={default_branch}")
    except BadRequest as exc:
        if int(exc.status_code) == 404:
            return LoadedConfig(RepoConfig())
        raise
    if not isinstance(answer, dict) or answer.get("type") != "file":
        return LoadedConfig(RepoConfig(), [f"{CONFIG_PATH} is not a file"], True)
    try:
        text = base64.b64decode(answer.get("content") or "").decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return LoadedConfig(RepoConfig(), [f"{CONFIG_PATH} is not UTF-8 text"], True)
    return parse_repo_config(text)
