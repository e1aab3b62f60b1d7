"""First run: start-up messages, the operator commands without App settings, a busy port, the
deploy files, and the metrics a fresh install shows."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from app import cli
from app.store import Delivery, FixProposal, JobKind, NewJob, open_store

ROOT = Path(__file__).resolve().parents[1]


def run_prmedic(*args: str, env: dict, cwd) -> subprocess.CompletedProcess:
    # `-m app` with the checkout on PYTHONPATH: the same code whatever the working directory.
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "app", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def bare_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PRMEDIC_", "ANTHROPIC_"))}


# -- 14: where settings come from ----------------------------------------------------------------


def test_missing_settings_say_where_settings_come_from_and_how_to_check_them(tmp_path):
    # `serve` without any App settings starts first-run setup instead (tests/test_setup.py).
    result = run_prmedic("worker", env=bare_env(), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{tmp_path / '.env'}" in result.stderr
    assert "cp .env.example .env" in result.stderr
    assert "prmedic doctor" in result.stderr


def test_an_incomplete_dotenv_is_named_as_the_file_that_was_read(tmp_path):
    (tmp_path / ".env").write_text("PRMEDIC_APP_ID=7\n")
    result = run_prmedic("worker", env=bare_env(), cwd=tmp_path)
    assert result.returncode == 2
    assert f"found: {tmp_path / '.env'}" in result.stderr
    assert "PRMEDIC_APP_ID" not in result.stderr and "PRMEDIC_WEBHOOK_SECRET: is not set" in result.stderr


# -- 16: a busy port, a missing uvloop -----------------------------------------------------------


@pytest.fixture
def busy_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("uvloop", ["installed", "missing"])
def test_a_port_in_use_is_one_line_and_exit_status_2(uvloop, busy_port, settings_env, tmp_path):
    env = {**bare_env(), **settings_env, "ANTHROPIC_API_KEY": "sk-ant-test", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}
    if uvloop == "missing":
        # As without the `fast` extra: the import of uvloop fails.
        site = tmp_path / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text("import sys\nsys.modules['uvloop'] = None\n")
        env["PYTHONPATH"] = str(site)
    result = run_prmedic("serve", "--host", "127.0.0.1", "--port", str(busy_port), env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "uvloop" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert f"127.0.0.1:{busy_port}" in line and "already in use" in line and "--port" in line


def test_without_uvloop_the_loop_falls_back_silently(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)
    monkeypatch.delenv("PRMEDIC_NO_UVLOOP", raising=False)
    seen = {}

    async def fail_and_log():
        try:
            raise RuntimeError("a failure inside the server")
        except RuntimeError as exc:
            seen["context"] = exc.__context__
            seen["loop"] = type(asyncio.get_running_loop()).__module__

    cli._run(fail_and_log())
    # Nothing that fails later carries "No module named 'uvloop'" into its logged traceback.
    assert seen == {"context": None, "loop": "asyncio.unix_events"}


# -- 19: commands that need no GitHub App settings -----------------------------------------------


def test_jobs_needs_only_the_database_url(tmp_path):
    db = tmp_path / "prmedic.db"

    async def record_one_job():
        store = open_store(f"sqlite:///{db}")
        await store.open()
        delivery = Delivery(delivery_id="d1", event="pull_request", received_at=time.time())
        await store.record_delivery(delivery, [NewJob(kind=JobKind.review, repo="octo/repo", pr_number=5,
                                                      head_sha="c" * 40)])
        await store.close()

    asyncio.run(record_one_job())
    result = run_prmedic("jobs", env={**bare_env(), "PRMEDIC_DATABASE_URL": f"sqlite:///{db}"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "octo/repo#5" in result.stdout and "queued" in result.stdout


def test_jobs_without_any_settings_or_store_says_so_and_creates_nothing(tmp_path):
    result = run_prmedic("jobs", env=bare_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no jobs: there is no store at ./prmedic.db (PRMEDIC_DATABASE_URL)"
    assert list(tmp_path.iterdir()) == []


def test_agents_check_outside_a_checkout_checks_the_shipped_definitions(tmp_path):
    result = run_prmedic("agents", "check", env=bare_env(), cwd=tmp_path)
    assert result.stdout.splitlines()[0].startswith("checking the definitions shipped with prmedic")
    assert "PRMEDIC_" not in result.stderr


def test_agents_sync_asks_only_for_what_it_uses(tmp_path):
    result = run_prmedic("agents", "sync", env=bare_env(), cwd=tmp_path)
    assert result.returncode == 2
    assert "ANTHROPIC_API_KEY is not set" in result.stderr and "PRMEDIC_APP_ID" not in result.stderr


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A working directory with its own copy of agents/ and environments/."""
    for folder in ("agents", "environments"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def test_agents_check_in_a_checkout_checks_its_folders_and_says_so(checkout):
    reviewer = checkout / "agents" / "reviewer.md"
    reviewer.write_text(reviewer.read_text().replace("name: reviewer\n", "name: reviewer\ncolour: blue\n", 1))
    result = run_prmedic("agents", "check", env=bare_env(), cwd=checkout)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == (
        f"checking the working directory's {checkout / 'agents'} and {checkout / 'environments'}")
    assert "agents/reviewer.md: field 'colour'" in result.stderr
    assert "PRMEDIC_" not in result.stderr


def test_agents_check_reads_an_edited_environment_of_the_checkout(checkout):
    (checkout / "environments" / "extra.yml").write_text(
        "name: extra\ndescription: One more.\nnetworking:\n  type: unrestricted\n")
    result = run_prmedic("agents", "check", env=bare_env(), cwd=checkout)
    assert f"environments ({checkout / 'environments'}):" in result.stdout
    assert "  extra: network unrestricted" in result.stdout


# -- 17: secrets stay out of git and the image; compose mounts the key .env.example names ---------


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: a path (or a folder above it) matching the last matching pattern; `!` re-includes."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.lstrip("!").strip("/")
        regex = re.escape(body).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


SECRETS_AND_STATE = [".env", ".env.production", "prmedic.private-key.pem", "deploy/app.pem", "prmedic.db",
                     "prmedic.db-wal", "prmedic.db-shm", "data/prmedic.db"]


@pytest.fixture
def git_ignores(tmp_path):
    """Asks git itself, in a fresh repository holding only the project's .gitignore."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shutil.copy(ROOT / ".gitignore", tmp_path / ".gitignore")

    def ignored(path: str) -> bool:
        result = subprocess.run(["git", "-c", "core.excludesFile=", "check-ignore", "--no-index", "-q", path],
                                cwd=tmp_path)
        assert result.returncode in (0, 1), result
        return result.returncode == 0

    return ignored


@pytest.mark.parametrize("path", SECRETS_AND_STATE)
def test_gitignore_keeps_settings_keys_and_the_store_out_of_git(path, git_ignores):
    assert git_ignores(path), f"{path} is not ignored by .gitignore"


def test_gitignore_keeps_the_example_settings_in_git(git_ignores):
    assert not git_ignores(".env.example")


def test_dockerignore_sits_in_the_build_context_and_keeps_secrets_out_but_not_the_sources():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    build = compose["services"]["prmedic"]["build"]
    context = (ROOT / "deploy" / build["context"]).resolve()
    patterns = [line.strip() for line in (context / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for path in [*SECRETS_AND_STATE, ".venv/bin/python", "app/__pycache__/cli.cpython-311.pyc"]:
        assert dockerignored(path, patterns), f"{path} would enter the build context"
    copied = re.findall(r"^COPY (.+) \S+$", (context / build["dockerfile"]).read_text(), re.M)
    for source in [s for line in copied for s in line.split()]:
        assert not dockerignored(source, patterns), f"the Dockerfile copies {source}, which is ignored"


def test_compose_mounts_the_key_file_that_env_example_points_at():
    """(With the override for an App that exists: deploy/compose.key.yaml; tests/test_deploy.py has the first run.)"""
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    key_on_host = (ROOT / example["PRMEDIC_PRIVATE_KEY_PATH"]).resolve()
    compose = yaml.safe_load((ROOT / "deploy" / "compose.key.yaml").read_text())
    service = compose["services"]["prmedic"]
    [secret] = service["secrets"]
    assert (ROOT / "deploy" / compose["secrets"][secret["source"]]["file"]).resolve() == key_on_host
    assert service["environment"]["PRMEDIC_PRIVATE_KEY_PATH"] == f"/run/secrets/{secret['target']}"
    [env_file] = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]["prmedic"]["env_file"]
    assert (ROOT / "deploy" / env_file["path"]).resolve() == ROOT / ".env"


# -- 18: no success rate before any fix outcome ----------------------------------------------------


async def test_fix_success_rate_is_absent_until_a_fix_outcome_exists(webhook_client, store):
    before = await (await webhook_client.get("/metrics")).text()
    assert "prmedic_fix_success_rate" not in before

    pending = await store.record_fix_proposal(FixProposal(repo="octo/repo", pr_number=1, root_sha="a" * 40,
                                                          base_sha="a" * 40, fix_sha="b" * 40, delivery="pull_request"))
    assert "prmedic_fix_success_rate" not in await (await webhook_client.get("/metrics")).text()

    await store.resolve_fix_proposal(pending.id, "succeeded")
    after = await (await webhook_client.get("/metrics")).text()
    assert "prmedic_fix_success_rate 1.0" in after.splitlines()
