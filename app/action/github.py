"""GitHub for an Action run: the engine's `TokenGitHub` (the workflow's token stands for the
installation), with the two things a workflow adds.

- The repository config: the `config` input's file stands in for `.github/prmedic.yml`, and the
  `budget_usd` and `fail_on` inputs are laid over whichever config is read. The pipelines read the
  config as they always do (`fetch_repo_config`); `ConfigClient` answers that one read.
- The agents' mount (docs/architecture.md, "Sessions"): the workflow's token never enters the
  session container. A public repository is mounted without a token (the engine's rule); a
  private one only with a token minted from the `app_id` / `app_private_key` inputs for that one
  repository, contents read-only (`AppMount`); without them the run stops before any session.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import yaml
from gidgethub import BadRequest

from app.errors import PermanentError
from app.github import GitHubApp
from app.oneshot.github import JSON_HEADERS, RunClient, TokenGitHub, api_path
from app.oneshot.result import UsageError
from app.repo_config import CONFIG_PATH

BUDGETS = ("review_usd", "fix_usd", "command_usd")


def private_needs_app_inputs(repo: str) -> str:
    return (f"{repo} is private: the agents' container can only mount it with a read-only token minted from a "
            "GitHub App. Install an App on the repository (contents: read is enough for this) and pass its "
            "`app_id` and `app_private_key` inputs; prmedic never gives the workflow's token to the container")


@dataclass(frozen=True)
class ConfigOverride:
    """What the inputs change in the repository config."""

    text: str | None = None  # the `config` input's file, instead of the default branch's
    budget_usd: float | None = None
    fail_on: str | None = None

    @property
    def replaces_file(self) -> bool:
        return self.text is not None

    @property
    def changes_anything(self) -> bool:
        return self.text is not None or self.budget_usd is not None or self.fail_on is not None

    def apply(self, text: str | None) -> str | None:
        """The config text the pipelines read: the input's file (or `text`, the default branch's),
        with `budget_usd` and `fail_on` laid over it (pure). A file that is not a YAML mapping is left
        as it is: the pipelines report its problems, and the defaults apply."""
        base = self.text if self.text is not None else text
        if self.budget_usd is None and self.fail_on is None:
            return base
        try:
            data = yaml.safe_load(base) if base else {}
        except yaml.YAMLError:
            return base
        if data is None:
            data = {}
        if not isinstance(data, dict):
            return base
        if self.budget_usd is not None:
            budget = data.get("budget") if isinstance(data.get("budget"), dict) else {}
            data["budget"] = {**budget, **{name: self.budget_usd for name in BUDGETS}}
        if self.fail_on is not None:
            review = data.get("review") if isinstance(data.get("review"), dict) else {}
            data["review"] = {**review, "fail_on": self.fail_on}
        return yaml.safe_dump(data, sort_keys=False)


def _content_answer(path: str, text: str) -> tuple[int, Mapping[str, str], bytes]:
    raw = text.encode("utf-8")
    answer = {"type": "file", "encoding": "base64", "path": CONFIG_PATH, "name": CONFIG_PATH.rsplit("/", 1)[-1],
              "size": len(raw), "content": base64.b64encode(raw).decode("ascii"), "url": path}
    return 200, JSON_HEADERS, orjson.dumps(answer)


def _decoded(body: bytes) -> str | None:
    try:
        answer = orjson.loads(body)
        return base64.b64decode(answer.get("content") or "").decode("utf-8") if answer.get("type") == "file" else None
    except (orjson.JSONDecodeError, ValueError, AttributeError):
        return None


class ConfigClient(RunClient):
    """The run's client; the read of `.github/prmedic.yml` is answered with the overridden config."""

    def __init__(self, *args: Any, override: ConfigOverride, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.override = override

    async def _request(self, method: str, url: str, headers: Mapping[str, str],
                       body: bytes = b"") -> tuple[int, Mapping[str, str], bytes]:
        path = api_path(url, self.base_url)
        if method != "GET" or not path.endswith(f"/contents/{CONFIG_PATH}") or not self.override.changes_anything:
            return await super()._request(method, url, headers, body)
        if self.override.replaces_file:
            return _content_answer(path, self.override.apply(None) or "")
        status, answer_headers, answer = await super()._request(method, url, headers, body)
        if status == 404:
            return _content_answer(path, self.override.apply(None) or "")
        text = _decoded(answer) if status == 200 else None
        if text is None:
            return status, answer_headers, answer  # not a file, not UTF-8: the pipeline says what is wrong
        return _content_answer(path, self.override.apply(text) or "")


class AppMount:
    """Read-only repository tokens minted from the `app_id` / `app_private_key` inputs."""

    def __init__(self, app_id: int, private_key: str, *, base_url: str) -> None:
        self.app = GitHubApp(app_id=app_id, private_key=private_key.replace("\\n", "\n").strip() + "\n",
                             base_url=base_url, max_retry_wait=30)
        self._installations: dict[str, int] = {}

    async def installation(self, repo: str) -> int:
        if repo.lower() not in self._installations:
            try:
                answer = await self.app.app_client().getitem(f"/repos/{repo}/installation")
            except BadRequest as exc:
                status = int(exc.status_code)
                if status == 404:
                    raise UsageError(f"the App of the `app_id` input ({self.app.app_id}) is not installed on {repo}: "
                                     "install it on that repository") from None
                if status == 401:
                    raise UsageError(f"GitHub refused the App's credentials ({exc}): check the `app_id` and "
                                     "`app_private_key` inputs") from None
                raise
            self._installations[repo.lower()] = int(answer["id"])
        return self._installations[repo.lower()]

    async def token(self, repo: str) -> str:
        """A token for `repo` alone, contents read-only (cached by the App client while it is fresh)."""
        return await self.app.repository_read_token(await self.installation(repo), repo)

    async def close(self) -> None:
        await self.app.close()


class ActionGitHub(TokenGitHub):
    """`TokenGitHub` with the config override and, for a private repository, the App's mount token."""

    def __init__(self, token: str, *, override: ConfigOverride, mount: AppMount | None = None, **kwargs: Any) -> None:
        super().__init__(token, **kwargs)
        self.override = override
        self.mount = mount

    def client(self) -> RunClient:
        return ConfigClient(self.session, writes=self.writes, base_url=self.base_url, oauth_token=self._token,
                            max_retry_wait=self.max_retry_wait, metrics=self.metrics, override=self.override)

    async def repository_read_token(self, installation_id: int, repo_full_name: str) -> str:
        if repo_full_name.lower() in self.public:
            return ""
        if self.mount is not None:
            return await self.mount.token(repo_full_name)
        raise PermanentError(private_needs_app_inputs(repo_full_name))

    async def close(self) -> None:
        if self.mount is not None:
            await self.mount.close()
        await super().close()


async def allow_mount(github: ActionGitHub, repository: Mapping[str, Any]) -> str | None:
    """Decide, before any session, how the agents mount `repository` (the event's record of it):
    public → without a token (None); private → a token minted now from the App inputs, so that a
    missing or wrong App fails the run here (returned, for the runner to mask); else `UsageError`."""
    name = str(repository["full_name"])
    if not repository.get("private") and repository.get("visibility") in (None, "public"):
        github.public.add(name.lower())
        return None
    if github.mount is None:
        raise UsageError(private_needs_app_inputs(name))
    return await github.mount.token(name)
