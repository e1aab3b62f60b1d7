"""The settings of a one-shot run: what `prmedic serve` needs minus the server and the worker, plus
a GitHub token. Read like the process settings (PRMEDIC_* variables and `.env`); the token from
`GITHUB_TOKEN` or `GH_TOKEN`, as GitHub's own tools read it."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.oneshot.result import UsageError
from app.settings import ENV_FILE, SettingsError, load_settings

Auth = Literal["app", "token"]

NO_CREDENTIALS = ("no GitHub credentials: set GITHUB_TOKEN (or GH_TOKEN) to a token that may read the pull "
                  "request and write reviews and comments, or the App's settings (PRMEDIC_APP_ID with "
                  "PRMEDIC_PRIVATE_KEY or PRMEDIC_PRIVATE_KEY_PATH)")
NO_ANTHROPIC = ("ANTHROPIC_API_KEY is not set: prmedic runs its agents on Anthropic's Managed Agents "
                "(create a key at https://console.anthropic.com/settings/keys)")


class RunSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRMEDIC_", env_file=ENV_FILE, env_file_encoding="utf-8",
                                      extra="ignore")

    # None: a throw-away store, deleted after the run.
    database_url: str | None = None
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    github_token: SecretStr | None = Field(None, validation_alias=AliasChoices("GITHUB_TOKEN", "GH_TOKEN"))
    app_id: int | None = Field(None, gt=0)
    app_slug: str | None = None
    private_key: SecretStr | None = None
    private_key_path: Path | None = None
    github_api_url: str = "https://api.github.com"
    github_web_url: str = "https://github.com"
    github_max_retry_wait_seconds: float = Field(120.0, ge=0)

    job_max_attempts: int = Field(3, ge=1, le=20)
    job_lease_seconds: float = Field(60.0, ge=2)
    job_retry_base_seconds: float = Field(30.0, ge=0)
    max_sessions: int = Field(8, ge=1, le=10_000)
    session_max_duration_seconds: float = Field(3600.0, gt=0)
    session_token_refresh_seconds: float = Field(300.0, gt=0, lt=600)

    @field_validator("database_url")
    @classmethod
    def _sqlite_only(cls, value: str | None) -> str | None:
        if value is None or value.startswith("sqlite:///"):
            return value
        raise ValueError(f"{value!r} is not a sqlite:/// URL")

    @field_validator("github_api_url", "github_web_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _readable_key(self) -> RunSettings:
        if self.private_key is None and self.private_key_path is not None:
            try:
                self.private_key_path.read_text()
            except OSError as exc:
                raise ValueError(f"PRMEDIC_PRIVATE_KEY_PATH: cannot read {self.private_key_path}: {exc.strerror}") \
                    from None
        return self

    @property
    def has_app(self) -> bool:
        return self.app_id is not None and (self.private_key is not None or self.private_key_path is not None)

    @property
    def auth(self) -> Auth:
        """The App's settings when they are complete (its read-only installation token can mount
        a private repository), else the token; `UsageError` when there is neither."""
        if self.has_app:
            return "app"
        if self.github_token is not None and self.github_token.get_secret_value().strip():
            return "token"
        if self.app_id is not None:
            raise UsageError(f"{NO_CREDENTIALS}; PRMEDIC_APP_ID is set but neither private key setting is")
        raise UsageError(NO_CREDENTIALS)

    @cached_property
    def private_key_pem(self) -> str:
        text = self.private_key.get_secret_value() if self.private_key is not None else \
            Path(self.private_key_path or "").read_text()
        pem = text.replace("\\n", "\n").strip() + "\n"  # a key pasted into one variable often has literal "\n"
        if "PRIVATE KEY-----" not in pem:
            raise UsageError("the App's private key (PRMEDIC_PRIVATE_KEY / PRMEDIC_PRIVATE_KEY_PATH) is not a PEM "
                             "private key")
        return pem

    @property
    def bot_login(self) -> str | None:
        return f"{self.app_slug}[bot]" if self.app_slug else None


def load_run_settings() -> RunSettings:
    """The run's settings, or `SettingsError` naming every problem (exit status 2)."""
    return load_settings(RunSettings)


def require_anthropic() -> None:
    """The agents need an Anthropic key (the SDK reads it from the environment)."""
    if not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
        raise UsageError(NO_ANTHROPIC)


__all__ = ["RunSettings", "SettingsError", "load_run_settings", "require_anthropic"]
