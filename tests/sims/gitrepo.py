"""Build small, real git repositories with the ``git`` CLI (no global git config needed).

    repo = make_git_repo(tmp_path / "demo", {"app.py": "print(1)\\n"})
    repo.checkout("feature", create=True)
    sha = repo.commit({"app.py": "print(2)\\n", "old.txt": None}, "Change app")  # None deletes

Commit dates advance one minute per commit from a fixed epoch, so SHAs are deterministic.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

_BASE_DATE = 1_700_000_000


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
                "HOME": env.get("HOME", "/tmp")})
    return env


@dataclass
class GitRepo:
    path: Path
    author: tuple[str, str] = ("Octo Cat", "octocat@example.com")
    shas: list[str] = field(default_factory=list)  # every commit made through this object, in order
    _tick: int = 0

    def git(self, *args: str, input: bytes | None = None, env: dict | None = None) -> str:
        cmd = ["git", "-c", f"user.name={self.author[0]}", "-c", f"user.email={self.author[1]}",
               "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", "-c", "core.autocrlf=false",
               "-c", "init.defaultBranch=main", "-C", str(self.path), *args]
        e = _env()
        e.update(env or {})
        return subprocess.run(cmd, check=True, capture_output=True, input=input, env=e).stdout.decode()

    def write(self, files: dict[str, str | bytes | None]) -> None:
        for rel, content in files.items():
            p = self.path / rel
            if content is None:
                self.git("rm", "-q", "--cached", "--ignore-unmatch", "--", rel)
                if p.exists() or p.is_symlink():
                    p.unlink()
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.is_symlink():
                p.unlink()
            p.write_bytes(content.encode() if isinstance(content, str) else content)
            self.git("add", "--", rel)

    def commit(self, files: dict[str, str | bytes | None] | None = None, message: str = "Commit",
               *, author: tuple[str, str] | None = None, allow_empty: bool = False) -> str:
        """Write ``files`` (None deletes), commit everything staged, return the new HEAD sha."""
        if files:
            self.write(files)
        self._tick += 1
        date = f"{_BASE_DATE + 60 * len(self.shas) + self._tick} +0000"
        env = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        if author:
            env.update({"GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1]})
        args = ["commit", "-q", "-m", message] + (["--allow-empty"] if allow_empty else [])
        self.git(*args, env=env)
        sha = self.head()
        self.shas.append(sha)
        return sha

    def symlink(self, rel: str, target: str) -> None:
        p = self.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.exists() or p.is_symlink():
            p.unlink()
        os.symlink(target, p)
        self.git("add", "--", rel)

    def chmod_x(self, rel: str) -> None:
        os.chmod(self.path / rel, 0o755)
        self.git("update-index", "--chmod=+x", "--", rel)

    def checkout(self, branch: str, *, create: bool = False, start: str | None = None) -> None:
        args = ["checkout", "-q"] + (["-b", branch] if create else [branch])
        if create and start:
            args.append(start)
        self.git(*args)

    def branch(self, name: str, start: str = "HEAD") -> None:
        self.git("branch", name, start)

    def head(self, ref: str = "HEAD") -> str:
        return self.git("rev-parse", ref).strip()

    @property
    def current_branch(self) -> str:
        return self.git("symbolic-ref", "--short", "HEAD").strip()

    def tree(self, ref: str = "HEAD") -> str:
        return self.head(f"{ref}^{{tree}}")

    def blob_sha(self, path: str, ref: str = "HEAD") -> str:
        return self.head(f"{ref}:{path}")

    def show(self, path: str, ref: str = "HEAD") -> bytes:
        return subprocess.run(["git", "-C", str(self.path), "show", f"{ref}:{path}"], check=True,
                              capture_output=True, env=_env()).stdout

    def diff(self, a: str, b: str, *paths: str) -> str:
        """``git diff a b -- paths``."""
        return self.git("diff", a, b, "--", *paths)


def make_git_repo(path: str | Path, files: dict[str, str | bytes] | None = None, *,
                  message: str = "Initial commit", branch: str = "main") -> GitRepo:
    """A new repository at ``path`` on ``branch``; with ``files``, one initial commit of them."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    repo = GitRepo(path)
    repo.git("init", "-q", "-b", branch)
    if files:
        repo.commit(files, message)
    return repo
