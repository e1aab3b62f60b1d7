"""pytest fixtures for the GitHub simulator.

Register them from ``tests/conftest.py`` with ``pytest_plugins = ["tests.sims.github_fixtures"]``
(or ``from tests.sims.github_fixtures import *``).

- ``app_private_key``: RSA-2048 PEM (str), generated once per session.
- ``github_state``: a :class:`GitHubState` with App 12345 "prmedic", installation 1 on the
  organisation ``octo-org`` (all its repositories) and a repository ``octo-org/hello-world``
  holding one commit on ``main``. At teardown it asserts ``state.violations`` is empty unless the
  test set ``github_state.expect_violations = True``.
- ``github_server``: the simulator served on localhost; ``.url`` (base URL for
  PRMEDIC_GITHUB_API_URL), ``.state``, ``.jwt()``, ``.token()``.
- ``git_repo``: factory ``git_repo(files=None, name="repo", branch="main") -> GitRepo`` in tmp_path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from .github import GitHubState, load_spec, make_app_jwt, make_github_app
from .gitrepo import GitRepo, make_git_repo

__all__ = ["APP_ID", "APP_SLUG", "INSTALLATION_ID", "OWNER", "REPO_NAME", "REPO_FULL_NAME", "GitHubServer",
           "generate_private_key", "app_private_key", "github_openapi_spec", "github_state", "github_server",
           "git_repo"]

APP_ID = 12345
APP_SLUG = "prmedic"
INSTALLATION_ID = 1
OWNER = "octo-org"
REPO_NAME = "hello-world"
REPO_FULL_NAME = f"{OWNER}/{REPO_NAME}"

_KEY_CACHE: dict[str, str] = {}


def generate_private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="session")
def app_private_key() -> str:
    if "key" not in _KEY_CACHE:
        _KEY_CACHE["key"] = generate_private_key()
    return _KEY_CACHE["key"]


@pytest.fixture(scope="session")
def github_openapi_spec():
    """(raw dict, openapi_core.OpenAPI) of the trimmed description, loaded once per session."""
    return load_spec()


@pytest.fixture
def github_state(app_private_key, github_openapi_spec):
    state = GitHubState(app_id=APP_ID, app_slug=APP_SLUG, app_private_key=app_private_key)
    state.add_installation(INSTALLATION_ID, OWNER, account_type="Organization")
    state.add_repo(OWNER, REPO_NAME, id=1296269)
    state.commit_files(REPO_FULL_NAME, {"README.md": "# Hello World\n"}, message="Initial commit")
    yield state
    if not state.expect_violations and state.violations:
        lines = "\n".join(f"  - {v}" for v in state.violations)
        pytest.fail(f"the GitHub simulator saw {len(state.violations)} request(s) GitHub would refuse:\n{lines}",
                    pytrace=False)


@dataclass
class GitHubServer:
    url: str
    state: GitHubState
    server: Any
    private_key: str

    def jwt(self, **kw: Any) -> str:
        """An App JWT valid at the simulator's clock."""
        return make_app_jwt(self.private_key, self.state.app_id, now=self.state.now(), **kw)

    def token(self, installation_id: int = INSTALLATION_ID, **kw: Any) -> str:
        """An installation token, minted without a request."""
        return self.state.issue_token(installation_id, **kw)


@pytest.fixture
async def github_server(aiohttp_server, github_state, app_private_key):
    server = await aiohttp_server(make_github_app(github_state))
    yield GitHubServer(str(server.make_url("")).rstrip("/"), github_state, server, app_private_key)


@pytest.fixture
def git_repo(tmp_path):
    counter = {"n": 0}

    def factory(files: dict[str, str | bytes] | None = None, *, name: str | None = None,
                branch: str = "main", message: str = "Initial commit") -> GitRepo:
        counter["n"] += 1
        return make_git_repo(tmp_path / (name or f"repo{counter['n']}"), files, message=message, branch=branch)

    return factory
