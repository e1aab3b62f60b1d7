"""GitHub for a one-shot run: what the pipelines use of `GitHubApp`, with a token or with the App,
and every write of the run on record.

- `TokenGitHub`: one token (`GITHUB_TOKEN`) stands for every installation. It never leaves this
  process: a session mounts a public repository without any token (`repository_read_token` gives
  it none), and a private repository is refused before any session (`mountable`).
- `AppGitHub`: the App's own `GitHubApp`; a session gets its usual read-only installation token.
- `WriteLog` + `RunClient`: every write (POST, PATCH, PUT, DELETE) is recorded. In a dry run none
  is sent: each is answered as GitHub would answer it (`answers.FakeWrites`). Outside a dry run, a
  check run GitHub refuses to a token (only GitHub Apps may write check runs) is kept here too, so
  a review with a personal token still runs and shows its check run on the terminal.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from gidgethub import BadRequest

from app.errors import PermanentError
from app.github import GitHubApp, GitHubClient
from app.metrics import Metrics
from app.oneshot.answers import FakeWrites
from app.oneshot.result import UsageError

TOKEN_INSTALLATION = 0  # the installation id of a token run's job: the token stands for any installation
WRITES = ("POST", "PATCH", "PUT", "DELETE")
_TOKEN_MINT = re.compile(r"/app/installations/\d+/access_tokens")
_CHECK_RUNS = re.compile(r"/repos/[^/]+/[^/]+/check-runs(?:/\d+)?")
JSON_HEADERS = {"content-type": "application/json; charset=utf-8"}


def private_needs_app(repo: str) -> str:
    return (f"{repo} is private: a private repository needs the App's settings (PRMEDIC_APP_ID and its private "
            "key) to be mounted into the agents' container with a read-only installation token; prmedic never "
            "gives your GITHUB_TOKEN to the container")


@dataclass
class Write:
    method: str
    path: str
    body: Any
    answer: Any
    kept: bool  # answered here, not sent to GitHub


@dataclass
class WriteLog:
    """The run's writes, in order; in a dry run (or for check runs a token may not write) kept here."""

    dry_run: bool
    fake: FakeWrites
    note: Callable[[str], None] = lambda _text: None
    writes: list[Write] = field(default_factory=list)
    token_run: bool = False  # a token, not the App: a check run GitHub refuses it is kept here
    local_checks: bool = False  # GitHub refused this token a check run: the run's check runs are kept here

    def keeps(self, method: str, path: str) -> bool:
        if method not in WRITES or _TOKEN_MINT.fullmatch(path):
            return False
        return self.dry_run or (self.local_checks and _CHECK_RUNS.fullmatch(path) is not None)

    def keep(self, method: str, path: str, body: bytes) -> tuple[int, Mapping[str, str], bytes]:
        data = orjson.loads(body) if body else None
        status, answer = self.fake.answer(method, path, data if isinstance(data, dict) else None)
        self.writes.append(Write(method, path, data, answer, kept=True))
        return status, JSON_HEADERS, b"" if status == 204 else orjson.dumps(answer)

    def sent(self, method: str, path: str, body: bytes, answer: bytes) -> None:
        try:
            data, reply = (orjson.loads(body) if body else None), (orjson.loads(answer) if answer else None)
        except orjson.JSONDecodeError:
            data, reply = None, None
        self.writes.append(Write(method, path, data, reply, kept=False))

    def refuse_checks(self) -> None:
        if not self.local_checks:
            self.local_checks = True
            self.note("GitHub does not let this token write check runs (only GitHub Apps may): the check run is "
                      "shown here instead of on the pull request")


def api_path(url: str, base_url: str) -> str:
    path = url[len(base_url):] if url.startswith(base_url) else url
    return path.split("?", 1)[0]


class RunClient(GitHubClient):
    """The GitHub client of a one-shot run: reads go to GitHub; writes go through `writes`."""

    def __init__(self, session: aiohttp.ClientSession, *, writes: WriteLog, **kwargs: Any) -> None:
        super().__init__(session, **kwargs)
        self.writes = writes

    async def _request(self, method: str, url: str, headers: Mapping[str, str],
                       body: bytes = b"") -> tuple[int, Mapping[str, str], bytes]:
        path = api_path(url, self.base_url)
        if self.writes.keeps(method, path):
            return self.writes.keep(method, path, body)
        status, answer_headers, answer = await super()._request(method, url, headers, body)
        if method in WRITES and not _TOKEN_MINT.fullmatch(path):
            if status == 403 and method == "POST" and self.writes.token_run and _CHECK_RUNS.fullmatch(path) \
                    and not _rate_limited(answer_headers):
                self.writes.refuse_checks()
                return self.writes.keep(method, path, body)
            if status < 300:
                self.writes.sent(method, path, body, answer)
        return status, answer_headers, answer


def _rate_limited(headers: Mapping[str, str]) -> bool:
    lowered = {k.lower(): v for k, v in headers.items()}
    return "retry-after" in lowered or lowered.get("x-ratelimit-remaining") == "0"


def _session() -> aiohttp.ClientSession:
    # trust_env: HTTPS_PROXY / NO_PROXY apply, as they do for the anthropic SDK.
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60, connect=10), trust_env=True)


class TokenGitHub:
    """What the pipelines use of `GitHubApp`, acting with one token for every installation id."""

    def __init__(self, token: str, *, base_url: str, writes: WriteLog, max_retry_wait: float = 120.0,
                 metrics: Metrics | None = None) -> None:
        self._token = token
        self.base_url = base_url
        self.writes = writes
        self.max_retry_wait = max_retry_wait
        self.metrics = metrics
        self.public: set[str] = set()  # repositories known to be public: mounted without a token
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = _session()
        return self._session

    @property
    def is_installation_token(self) -> bool:
        return self._token.startswith("ghs_")

    def client(self) -> RunClient:
        return RunClient(self.session, writes=self.writes, base_url=self.base_url, oauth_token=self._token,
                         max_retry_wait=self.max_retry_wait, metrics=self.metrics)

    async def installation_client(self, installation_id: int) -> RunClient:
        return self.client()

    async def repository_read_token(self, installation_id: int, repo_full_name: str) -> str:
        """No token at all for a public repository (the session clones it anonymously); a private
        one is refused: the user's token never enters the container."""
        if repo_full_name.lower() in self.public:
            return ""
        raise PermanentError(private_needs_app(repo_full_name))

    def forget_token(self, installation_id: int) -> None:
        """Nothing is cached: the token is the user's."""

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class AppGitHub(GitHubApp):
    """The App's `GitHubApp`, its installation clients recording (or, dry, keeping) every write."""

    def __init__(self, *, writes: WriteLog, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.writes = writes

    def _client(self, **auth: Any) -> GitHubClient:
        return RunClient(self.session, writes=self.writes, base_url=self.base_url, max_retry_wait=self.max_retry_wait,
                         metrics=self.metrics, **auth)

    def client(self) -> GitHubClient:
        """A client for reads before the installation is known (as the App: JWT)."""
        return self.app_client()


RunGitHub = TokenGitHub | AppGitHub


async def find_installation(app: AppGitHub, repo: str) -> int:
    """The App's installation on `repo` (`GET /repos/{owner}/{repo}/installation`, as the App)."""
    try:
        answer = await app.app_client().getitem(f"/repos/{repo}/installation")
    except BadRequest as exc:
        if int(exc.status_code) == 404:
            raise UsageError(f"the App (PRMEDIC_APP_ID={app.app_id}) is not installed on {repo}: install it on "
                             "that repository (the App's page on GitHub, 'Install App')") from None
        if int(exc.status_code) == 401:
            raise UsageError(f"GitHub refused the App's credentials ({exc}): check PRMEDIC_APP_ID and the "
                             "private key") from None
        raise
    return int(answer["id"])


async def read_or_explain(gh: Any, path: str, missing: str, credential: str) -> dict[str, Any]:
    """`GET path`, with a 404 or 401 turned into a `UsageError` that says what to check."""
    try:
        return await gh.getitem(path)
    except BadRequest as exc:
        if int(exc.status_code) == 404:
            raise UsageError(f"{missing} (or the {credential} cannot see it)") from None
        if int(exc.status_code) in (401, 403):
            raise UsageError(f"GitHub refused the {credential}: {exc.status_code} {exc}") from None
        raise


def mountable(github: RunGitHub, repo: dict[str, Any]) -> None:
    """Whether a session may mount `repo` with these credentials; with a token only a public one
    (then remembered as public), else `UsageError` before any session is created."""
    if not isinstance(github, TokenGitHub):
        return
    full_name = repo["full_name"]
    if repo.get("private") or repo.get("visibility") not in (None, "public"):
        raise UsageError(private_needs_app(full_name))
    github.public.add(full_name.lower())


async def token_login(github: TokenGitHub) -> str | None:
    """The login a personal token acts as (`GET /user`), or None: an installation token (`ghs_`,
    a workflow's GITHUB_TOKEN among them) has no user."""
    if github.is_installation_token:
        return None
    try:
        return (await github.client().getitem("/user")).get("login")
    except Exception:  # noqa: BLE001 - only a name for the texts; the run does not depend on it
        return None
