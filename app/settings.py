"""Process settings (docs/architecture.md, "Settings"): environment variables or a `.env` file."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

HINTS = {
    "app_id": "set PRMEDIC_APP_ID to the numeric id shown on the GitHub App's settings page",
    "private_key": "set PRMEDIC_PRIVATE_KEY to the App's PEM key, or PRMEDIC_PRIVATE_KEY_PATH to the .pem file "
    "downloaded from the App's settings page",
    "private_key_path": "set PRMEDIC_PRIVATE_KEY to the App's PEM key, or PRMEDIC_PRIVATE_KEY_PATH to the .pem "
    "file downloaded from the App's settings page",
    "webhook_secret": "set PRMEDIC_WEBHOOK_SECRET to the secret entered in the App's webhook settings "
    "(unsigned deliveries are refused, so there is no default)",
    "github_api_url": "use https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server",
    "database_url": "use sqlite:///path/to/prmedic.db (the embedded default) or "
    "postgresql://user:password@host:5432/database (several replicas)",
    "port": "use a TCP port between 1 and 65535",
}


ENV_FILE = ".env"


class SettingsError(Exception):
    """Start-up cannot go on: one message lists every problem and its fix, and where settings come from."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"prmedic cannot start; fix these settings:\n{lines}\n{where_settings_come_from()}")


def where_settings_come_from(cwd: Path | None = None) -> str:
    env_file = (cwd or Path.cwd()) / ENV_FILE
    found = f"found: {env_file}" if env_file.is_file() else f"there is none at {env_file}; to start one: cp .env.example .env"
    return (f"Settings are read from PRMEDIC_* environment variables and from {ENV_FILE} in the working directory "
            f"({found}).\nCheck them, and the connection to GitHub and Anthropic, with: prmedic doctor")


class StoreSettings(BaseSettings):
    """What the commands that only read the local store need (`prmedic jobs`): no GitHub App settings."""

    model_config = SettingsConfigDict(
        env_prefix="PRMEDIC_", env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = "sqlite:///./prmedic.db"
    # PostgreSQL only: connections each process keeps to the database at most.
    database_pool_size: int = Field(10, ge=1, le=1000)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if value.startswith("sqlite:///"):
            return value
        if value.startswith(("postgresql://", "postgres://")):
            return value
        scheme = value.split("://", 1)[0] if "://" in value else value
        raise ValueError(f"{scheme!r} is neither a sqlite:/// nor a postgresql:// URL")

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def sqlite_path(self) -> str:
        return self.database_url.removeprefix("sqlite:///")

    @property
    def store_missing(self) -> bool:
        """True when the SQLite file does not exist yet (a PostgreSQL database is always there to ask)."""
        return self.database_url.startswith("sqlite:///") and not Path(self.sqlite_path).exists()


class ServerSettings(StoreSettings):
    """What `prmedic serve` needs before the GitHub App exists (first-run setup, app/setup) and
    `prmedic register` needs to create it: where to listen, GitHub's addresses, the webhook relay."""

    github_api_url: str = "https://api.github.com"
    github_web_url: str = "https://github.com"
    host: str = "0.0.0.0"
    port: int = Field(3000, ge=1, le=65535)
    # A smee.io-style channel whose event stream carries webhook deliveries (local development).
    webhook_proxy_url: str | None = None

    @field_validator("github_api_url", "github_web_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    @field_validator("webhook_proxy_url")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL (a channel such as https://smee.io/CHANNEL)")
        return value.strip()


class Settings(ServerSettings):
    app_id: int = Field(gt=0)
    private_key: SecretStr | None = None
    private_key_path: Path | None = Field(None, validate_default=True)
    webhook_secret: SecretStr

    app_slug: str | None = None
    worker_concurrency: int = Field(8, ge=1, le=1000)
    job_max_attempts: int = Field(3, ge=1, le=20)
    job_lease_seconds: float = Field(60.0, ge=2)
    job_retry_base_seconds: float = Field(30.0, ge=0)
    worker_poll_seconds: float = Field(2.0, gt=0)
    github_max_retry_wait_seconds: float = Field(120.0, ge=0)
    # agent sessions (app/sessions)
    max_sessions: int = Field(500, ge=1, le=10_000)
    session_max_duration_seconds: float = Field(3600.0, gt=0)
    session_token_refresh_seconds: float = Field(300.0, gt=0, lt=600)
    # Finished jobs, their sessions and old deliveries are deleted after this many days (0: kept forever).
    retention_days: float = Field(30.0, ge=0)
    # The operator's MCP servers (a YAML or JSON file, `read_mcp_config`); repositories opt in by name.
    mcp_config: Path | None = None
    # Built-in or MCP tools whose confirmations are allowed: "web_fetch,mcp:linear:get_issue".
    tools_unattended: str = ""

    @field_validator("webhook_secret")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("is empty")
        return value

    @field_validator("private_key_path")
    @classmethod
    def _one_private_key(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        inline = info.data.get("private_key")
        if inline is None and path is None:
            raise ValueError("neither is set")
        if inline is None:
            try:
                text = path.read_text()
            except OSError as exc:
                raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        else:
            text = inline.get_secret_value()
        _check_pem(_normalise_pem(text))
        return path

    @field_validator("mcp_config")
    @classmethod
    def _mcp_config_valid(cls, path: Path | None) -> Path | None:
        if path is not None:
            read_mcp_config(path)
        return path

    @field_validator("tools_unattended")
    @classmethod
    def _tool_names(cls, value: str) -> str:
        bad = [name for name in split_names(value) if not _UNATTENDED.match(name)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))}: not a tool; give built-in tools by name "
                             f"({', '.join(BUILTIN_TOOL_NAMES)}) and MCP tools as mcp:<server>:<tool> "
                             "(mcp:<server>:* for all of a server's tools), separated by commas")
        return value

    @cached_property
    def mcp_servers(self) -> tuple[McpServerSetting, ...]:
        """The operator's MCP servers (none without PRMEDIC_MCP_CONFIG), read once at start-up."""
        return read_mcp_config(self.mcp_config) if self.mcp_config is not None else ()

    @model_validator(mode="after")
    def _keep_mcp_servers(self) -> Settings:
        # Read now, while the file is the one just validated: a job never reads it again.
        _ = self.mcp_servers
        return self

    @cached_property
    def private_key_pem(self) -> str:
        if self.private_key is not None:
            return _normalise_pem(self.private_key.get_secret_value())
        assert self.private_key_path is not None
        return _normalise_pem(self.private_key_path.read_text())

    @property
    def bot_login(self) -> str | None:
        return f"{self.app_slug}[bot]" if self.app_slug else None


class _AppSettingsGiven(BaseSettings):
    """The GitHub App's own settings as the sources hold them, unvalidated: only whether any is set."""

    model_config = SettingsConfigDict(
        env_prefix="PRMEDIC_", env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore"
    )

    app_id: str | None = None
    private_key: str | None = None
    private_key_path: str | None = None
    webhook_secret: str | None = None


def app_settings_absent() -> bool:
    """True when none of the App's settings (id, private key, webhook secret) is set in the
    environment or `.env`: `prmedic serve` then starts first-run setup instead of refusing to start."""
    given = _AppSettingsGiven().model_dump().values()
    return not any(value and value.strip() for value in given)


# -- the operator's MCP servers and unattended tools -------------------------------------------
# Defined here because settings import nothing else from the app (docs/architecture.md, "Layers");
# `app/agents/mcp.py` turns them into a session's toolsets and `app/agents/tool_policy.py` into the
# answers to tool confirmations.

# The built-in tools of `agent_toolset_20260401` (the same as app.agents.definitions.BUILTIN_TOOLS).
BUILTIN_TOOL_NAMES = ("bash", "edit", "read", "write", "glob", "grep", "web_fetch", "web_search")
MCP_SERVER_NAME = r"[a-z][a-z0-9_-]{0,63}"
MCP_TOOL_NAME = r"[A-Za-z0-9_.-]{1,128}"
_UNATTENDED = re.compile(rf"^(?:{'|'.join(BUILTIN_TOOL_NAMES)}|mcp:{MCP_SERVER_NAME}:(?:{MCP_TOOL_NAME}|\*))$")
MAX_MCP_SERVERS = 20  # the API's limit on an agent's `mcp_servers`


class McpServerSetting(BaseModel):
    """One MCP server the operator offers: where it is, the Managed Agents vault holding its
    credential, and which of its tools may run without a person's confirmation (`*`: all)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=f"^{MCP_SERVER_NAME}$")
    url: str = Field(max_length=2000)
    vault_id: str = Field(pattern=r"^vlt_[A-Za-z0-9]{1,120}$")
    unattended_tools: tuple[str, ...] = ()

    @field_validator("url")
    @classmethod
    def _https(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"{url!r} is not an https:// URL")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; they belong in the vault named by vault_id")
        return url

    @field_validator("unattended_tools")
    @classmethod
    def _tools(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        bad = [n for n in names if n != "*" and not re.fullmatch(MCP_TOOL_NAME, n)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))}: not an MCP tool name (1-128 of A-Z a-z 0-9 _ . -, or *)")
        return tuple(dict.fromkeys(names))


def read_mcp_config(path: Path) -> tuple[McpServerSetting, ...]:
    """The servers in the file at `path`: a YAML (or JSON) list of servers, or `servers:` holding
    one. Raises ValueError naming the file and the field at fault."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid YAML or JSON: {exc}") from None
    if isinstance(data, dict) and set(data) == {"servers"}:
        data = data["servers"]
    if not isinstance(data, list):
        # ValueError, not TypeError: pydantic reports only ValueErrors as a setting's problem.
        raise ValueError(f"{path}: must be a list of servers ({{name, url, vault_id, unattended_tools}})")  # noqa: TRY004
    if len(data) > MAX_MCP_SERVERS:
        raise ValueError(f"{path}: at most {MAX_MCP_SERVERS} servers")
    servers, problems = [], []
    for index, item in enumerate(data):
        try:
            servers.append(McpServerSetting.model_validate(item))
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                field = ".".join(str(part) for part in error["loc"])
                why = ("is not a known field (a credential belongs in the vault named by vault_id, never here)"
                       if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, "))
                problems.append(f"servers[{index}]{'.' + field if field else ''}: {why}")
    names = [server.name for server in servers]
    problems += [f"server name {name!r} is used twice" for name in sorted({n for n in names if names.count(n) > 1})]
    if problems:
        raise ValueError(f"{path}: {'; '.join(problems)}")
    return tuple(servers)


def split_names(value: str) -> list[str]:
    """A comma-separated setting as its non-empty items."""
    return [item.strip() for item in value.split(",") if item.strip()]


def _normalise_pem(text: str) -> str:
    # A key pasted into one environment variable often has literal "\\n" for newlines.
    return text.replace("\\n", "\n").strip() + "\n"


def _check_pem(pem: str) -> None:
    if "PRIVATE KEY-----" not in pem:
        raise ValueError("is not a PEM private key (no '-----BEGIN ... PRIVATE KEY-----' line)")
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"the PEM key cannot be loaded ({exc})") from None


def _env_name(field: str) -> str:
    return f"PRMEDIC_{field.upper()}"


def _describe(error: dict) -> str:
    loc = [str(part) for part in error.get("loc", ())]
    message = error.get("msg", "is invalid").removeprefix("Value error, ")
    field = loc[0] if loc else "settings"
    if error.get("type") == "missing":
        message = "is not set"
    hint = HINTS.get(field)
    name = "PRMEDIC_PRIVATE_KEY / PRMEDIC_PRIVATE_KEY_PATH" if field == "private_key_path" else _env_name(field)
    text = f"{name}: {message}"
    return f"{text} — {hint}" if hint else text


S = TypeVar("S", bound=StoreSettings)


def load_settings(settings_class: type[S] = Settings, /, **overrides: object) -> S:  # type: ignore[assignment]
    """Read and validate settings, or raise SettingsError naming every problem."""
    try:
        return settings_class(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError([_describe(e) for e in exc.errors(include_url=False)]) from None
