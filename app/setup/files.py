"""The new App's settings, written where prmedic reads them: the private key to a file of mode
0600 and `PRMEDIC_*` entries appended to `.env` in the working directory.

Nothing is ever overwritten: a `.env` that already sets one of the names to another value stops
the writing of `.env` (the key is still saved, so nothing GitHub handed over once is lost, and the
lines to add by hand are given); a key file already there keeps its content and the new key goes
to a file of its own.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from app.settings import ENV_FILE
from app.setup.conversion import RegisteredApp

KEY_FILE = "prmedic.private-key.pem"
ENV_NAMES = ("PRMEDIC_APP_ID", "PRMEDIC_APP_SLUG", "PRMEDIC_PRIVATE_KEY_PATH", "PRMEDIC_WEBHOOK_SECRET")
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_./:@+=,-]+")


@dataclass(frozen=True)
class WrittenFiles:
    key_path: Path
    env_path: Path
    added: list[str] = field(default_factory=list)  # names appended to .env (an identical one is kept)


class FilesConflict(Exception):
    """`.env` already holds other values for the new App's names: nothing was written to it."""

    def __init__(self, problems: list[str], *, lines: list[str] | None = None, key_path: Path | None = None):
        self.problems = problems
        self.lines = lines or []  # what to put in .env by hand
        self.key_path = key_path  # where the key was saved anyway
        super().__init__("; ".join(problems))


def _read_env(path: Path) -> dict[str, str | None]:
    return dotenv_values(path, interpolate=False) if path.is_file() else {}


def conflicts(folder: Path) -> list[str]:
    """What stops the setup before GitHub's code is spent: `.env` already setting one of the names
    (remove it, then reload the page: the code stays good for an hour)."""
    env_path = folder / ENV_FILE
    env = _read_env(env_path)
    return [f"{env_path} already sets {name}: remove that line (prmedic never overwrites a setting)"
            for name in ENV_NAMES if (env.get(name) or "").strip()]


def env_entries(app: RegisteredApp, key_path: Path, folder: Path) -> dict[str, str]:
    relative = key_path.relative_to(folder) if key_path.is_relative_to(folder) else key_path
    return {"PRMEDIC_APP_ID": str(app.id), "PRMEDIC_APP_SLUG": app.slug,
            "PRMEDIC_PRIVATE_KEY_PATH": f"./{relative}" if not relative.is_absolute() else str(relative),
            "PRMEDIC_WEBHOOK_SECRET": app.webhook_secret.get_secret_value()}


def dotenv_line(name: str, value: str) -> str:
    if _PLAIN_VALUE.fullmatch(value):
        return f"{name}={value}"
    if "'" in value or "\n" in value:
        raise ValueError(f"{name}'s value cannot be written to .env safely")
    return f"{name}='{value}'"  # single quotes: python-dotenv takes the value literally


def _write_new(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)  # whatever the umask
        out.write(text)


def save_key(folder: Path, app: RegisteredApp) -> Path:
    """The App's private key in `prmedic.private-key.pem` (where `.env.example` and the compose
    file expect it), or, if that file holds another key, in `<slug>.<id>.private-key.pem`."""
    pem = app.pem.get_secret_value()
    pem = pem if pem.endswith("\n") else pem + "\n"
    for path in (folder / KEY_FILE, folder / f"{app.slug}.{app.id}.private-key.pem"):
        if path.exists():
            if path.read_text(encoding="utf-8") == pem:
                return path
            continue
        _write_new(path, pem)
        return path
    raise FilesConflict([f"{folder / KEY_FILE} and {path} already hold other keys: move one away"])


def _append(env_path: Path, lines: list[str]) -> None:
    fd = os.open(env_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        if env_path.stat().st_size and not env_path.read_bytes().endswith(b"\n"):
            out.write("\n")
        out.write("\n".join(lines) + "\n")


def write_credentials(folder: Path, app: RegisteredApp, *, how: str = "the setup page") -> WrittenFiles:
    """Save the key, then append to `.env` the names it does not set yet; raise FilesConflict,
    with `.env` untouched, if it sets one to another value."""
    key_path = save_key(folder, app)
    env_path = folder / ENV_FILE
    entries = env_entries(app, key_path, folder)
    existing = _read_env(env_path)
    differing = [name for name, value in entries.items() if existing.get(name) not in (None, "", value)]
    if differing:
        raise FilesConflict([f"{env_path} already sets {name} to another value" for name in differing],
                            lines=[dotenv_line(n, v) for n, v in entries.items()], key_path=key_path)
    added = [name for name, value in entries.items() if existing.get(name) != value]
    if added:
        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        _append(env_path, [f"# GitHub App {app.slug} (id {app.id}), registered through {how} on {when}",
                           *(dotenv_line(name, entries[name]) for name in added)])
    return WrittenFiles(key_path=key_path, env_path=env_path, added=added)
