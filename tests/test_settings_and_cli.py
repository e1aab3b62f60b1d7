"""Settings, start-up errors, logs and the operator commands."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time

import pytest
from conftest import example

from app.cli import main
from app.logs import JsonFormatter, configure_logging, delivery_id_var, job_id_var, redact
from app.settings import Settings, SettingsError, load_settings
from app.store import Delivery, JobKind, NewJob, open_store

# Shaped like real tokens, built at run time so no secret scanner flags this file.
FAKE_TOKEN = "ghs_" + "16C7e42F292c6912E7710c838347Ae178B4a"


def run_prmedic(*args: str, env: dict, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def bare_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PRMEDIC_", "ANTHROPIC_"))}


def test_missing_settings_stop_start_up_with_every_problem_and_exit_2(tmp_path):
    # `serve` without any App settings starts first-run setup instead (tests/test_setup.py).
    result = run_prmedic("worker", env=bare_env(), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for name in ("PRMEDIC_APP_ID", "PRMEDIC_PRIVATE_KEY", "PRMEDIC_WEBHOOK_SECRET"):
        assert name in result.stderr
    assert "is not set" in result.stderr


def test_malformed_settings_are_each_named_with_their_fix(tmp_path):
    env = {**bare_env(), "PRMEDIC_APP_ID": "twelve", "PRMEDIC_PRIVATE_KEY": "not a key", "PRMEDIC_WEBHOOK_SECRET": " ",
           "PRMEDIC_PORT": "70000", "PRMEDIC_DATABASE_URL": "mysql://db", "PRMEDIC_GITHUB_API_URL": "api.github.com"}
    result = run_prmedic("worker", env=env, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(lines) == 6, result.stderr
    assert any("PRMEDIC_APP_ID" in line and "numeric id" in line for line in lines)
    assert any("PEM" in line for line in lines)
    assert any("PRMEDIC_WEBHOOK_SECRET: is empty" in line for line in lines)
    assert any("PRMEDIC_PORT" in line for line in lines)
    assert any("PRMEDIC_DATABASE_URL" in line for line in lines)
    assert any("PRMEDIC_GITHUB_API_URL" in line for line in lines)


def test_settings_come_from_a_dotenv_file(tmp_path, app_private_key, monkeypatch):
    for name in [n for n in os.environ if n.startswith("PRMEDIC_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    escaped = app_private_key.strip().replace("\n", "\\n")
    (tmp_path / ".env").write_text(
        f'PRMEDIC_APP_ID=77\nPRMEDIC_PRIVATE_KEY="{escaped}"\nPRMEDIC_WEBHOOK_SECRET=s3cret\nPRMEDIC_PORT=8080\n'
    )
    settings = load_settings()
    assert (settings.app_id, settings.port, settings.database_url) == (77, 8080, "sqlite:///./prmedic.db")
    assert settings.private_key_pem == app_private_key.strip() + "\n"


def test_unreadable_key_file_is_reported(settings_env, monkeypatch, tmp_path):
    monkeypatch.setenv("PRMEDIC_PRIVATE_KEY_PATH", str(tmp_path / "missing.pem"))
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert "cannot read" in str(error.value) and "missing.pem" in str(error.value)


def test_postgres_urls_are_accepted_and_other_databases_refused_clearly(settings_env, monkeypatch):
    for url in ("postgresql://prmedic:pw@db:5432/prmedic", "postgres://localhost/prmedic", "postgresql:///prmedic"):
        monkeypatch.setenv("PRMEDIC_DATABASE_URL", url)
        assert load_settings().database_url == url and not load_settings().store_missing
    monkeypatch.setenv("PRMEDIC_DATABASE_URL", "mysql://localhost/prmedic")
    with pytest.raises(SettingsError, match="'mysql' is neither a sqlite:/// nor a postgresql:// URL"):
        load_settings()


def test_json_logs_carry_delivery_and_job_ids_and_never_a_token():
    record = logging.LogRecord("prmedic", logging.INFO, __file__, 1,
                               f"minted {FAKE_TOKEN} for Authorization: token abc123", (), None)
    d_token, j_token = delivery_id_var.set("delivery-1"), job_id_var.set(42)
    try:
        from app.logs import _ContextFilter

        _ContextFilter().filter(record)
    finally:
        delivery_id_var.reset(d_token)
        job_id_var.reset(j_token)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["delivery_id"] == "delivery-1" and entry["job_id"] == 42
    assert "ghs_" not in entry["msg"] and "abc123" not in entry["msg"]


@pytest.mark.parametrize("secret", [
    FAKE_TOKEN, "github_pat_" + "11ABCDEFG0123456789_abcdefghijkl",
    "sk-ant-api03-abcdefghijklmnop", "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxIn0.c2lnbmF0dXJl",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
])
def test_redaction_covers_every_kind_of_secret(secret):
    assert secret not in redact(f"before {secret} after")


def test_redaction_hides_a_database_password_and_keeps_the_rest_of_the_url():
    line = redact("cannot connect to postgresql://prmedic:s3cr3t-pw@db.internal:5432/prmedic")
    assert "s3cr3t-pw" not in line
    assert "postgresql://prmedic:[redacted]@db.internal:5432/prmedic" in line
    assert redact("git@github.com:octo/repo and https://github.com/octo/repo") == \
        "git@github.com:octo/repo and https://github.com/octo/repo"


def test_jobs_command_lists_recent_jobs_with_state_attempts_and_error(settings, capsys):
    async def a_retried_job() -> int:
        store = open_store(settings.database_url)
        await store.open()
        delivery = Delivery(delivery_id="d1", event="pull_request", received_at=time.time())
        job = NewJob(kind=JobKind.review, repo="octo/repo", pr_number=3, head_sha="b" * 40)
        [job_id] = (await store.record_delivery(delivery, [job])).job_ids
        await store.claim_jobs("w", 1, 60)
        await store.retry_job(job_id, "w", "GitHubBroken: 502 Bad Gateway", time.time() + 60)
        await store.close()
        return job_id

    job_id = asyncio.run(a_retried_job())
    assert main(["jobs"]) == 0
    out = capsys.readouterr().out
    assert "octo/repo#3" in out and "queued" in out and "1/3" in out and "502 Bad Gateway" in out
    assert main(["jobs", "--json", "--state", "queued"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["id"] == job_id and listed["attempts"] == 1


def test_jobs_command_on_an_empty_store(settings, capsys):
    async def create_the_store():
        store = open_store(settings.database_url)
        await store.open()
        await store.close()

    asyncio.run(create_the_store())
    assert main(["jobs"]) == 0
    assert capsys.readouterr().out.strip() == "no jobs"


def test_configure_logging_json(capsys):
    configure_logging("json", "INFO")
    try:
        logging.getLogger("prmedic.test").info("hello %s", "world", extra={"event": "ping"})
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert json.loads(line)["msg"] == "hello world"
        assert json.loads(line)["event"] == "ping"
    finally:
        logging.getLogger().handlers[:] = []


def test_settings_defaults(settings: Settings):
    assert settings.github_api_url == "http://127.0.0.1:9/unused"
    assert (settings.host, settings.port, settings.worker_concurrency, settings.job_max_attempts) == ("0.0.0.0", 3000, 8, 3)
    assert settings.bot_login == "prmedic[bot]"
    assert example("ping")["zen"]
