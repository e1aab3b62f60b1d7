"""Network failures read as words (logs, `prmedic jobs`, `doctor`), from real failed connections."""

from __future__ import annotations

import asyncio
import http
import socket
import time

import aiohttp
import anthropic
import pytest
from aiohttp import web
from gidgethub import GitHubBroken

from app.cli import main
from app.doctor import run_doctor
from app.errors import describe, network_problem
from app.github import GitHubApp
from app.metrics import Metrics
from app.store import Delivery, JobKind, NewJob
from app.worker import Worker

UNRESOLVABLE = "nonexistent.invalid"  # RFC 2606: never resolves


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def plain_http_port():
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


async def aiohttp_failure(url: str) -> Exception:
    async with aiohttp.ClientSession() as session:
        try:
            await session.get(url)
        except Exception as exc:  # noqa: BLE001 - the failure is what the test looks at
            return exc
    raise AssertionError(f"{url} answered")


async def anthropic_failure(base_url: str) -> Exception:
    async with anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=base_url, max_retries=0) as client:
        try:
            await client.models.list()
        except anthropic.APIConnectionError as exc:
            return exc
    raise AssertionError(f"{base_url} answered")


async def test_a_refused_connection_names_the_host_and_port(closed_port):
    exc = await aiohttp_failure(f"http://127.0.0.1:{closed_port}/app")
    assert describe(exc) == f"cannot reach 127.0.0.1:{closed_port}: connection refused"
    assert network_problem(exc).cause == "refused"


async def test_a_name_that_does_not_resolve():
    exc = await aiohttp_failure(f"https://{UNRESOLVABLE}/app")
    assert describe(exc).startswith(f"cannot reach {UNRESOLVABLE}: name does not resolve")
    assert network_problem(exc).cause == "dns"


async def test_https_to_a_plain_http_server_is_a_tls_failure(plain_http_port):
    exc = await aiohttp_failure(f"https://127.0.0.1:{plain_http_port}/")
    assert describe(exc) == f"cannot reach 127.0.0.1:{plain_http_port}: the TLS handshake failed (wrong version number)"
    assert network_problem(exc).cause == "tls"


async def test_anthropic_connection_errors_read_as_words_with_the_host(closed_port):
    refused = await anthropic_failure(f"http://127.0.0.1:{closed_port}")
    assert describe(refused) == f"cannot reach 127.0.0.1:{closed_port}: connection refused"
    unresolved = await anthropic_failure(f"http://{UNRESOLVABLE}")
    assert describe(unresolved).startswith(f"cannot reach {UNRESOLVABLE}: name does not resolve")


async def test_the_github_client_giving_up_on_a_connection_reads_as_words(app_private_key, closed_port):
    github = GitHubApp(app_id=1, private_key=app_private_key, base_url=f"http://127.0.0.1:{closed_port}",
                       max_retry_wait=0)
    try:
        with pytest.raises(GitHubBroken) as error:
            await github.app_client().getitem("/app")
    finally:
        await github.close()
    assert describe(error.value) == f"cannot reach 127.0.0.1:{closed_port}: connection refused"
    assert "ConnectionKey" not in describe(error.value)


def test_other_failures_keep_their_type_and_message():
    assert describe(ValueError("bad patch")) == "ValueError: bad patch"
    assert describe(asyncio.TimeoutError()) == "TimeoutError: TimeoutError"
    assert describe(GitHubBroken(http.HTTPStatus.BAD_GATEWAY, "Bad Gateway")) == "GitHubBroken: Bad Gateway"
    assert network_problem(FileNotFoundError(2, "No such file")) is None


async def test_prmedic_jobs_and_the_log_show_a_network_failure_in_words(store, closed_port, capsys, caplog):
    async def review(ctx):
        async with aiohttp.ClientSession() as session:
            await session.get(f"http://127.0.0.1:{closed_port}/repos/octo/repo")

    delivery = Delivery(delivery_id="d-net", event="pull_request", received_at=time.time())
    job = NewJob(kind=JobKind.review, repo="octo/repo", pr_number=9, head_sha="d" * 40)
    await store.record_delivery(delivery, [job], max_attempts=1)
    await Worker(store, {"review": review}, metrics=Metrics(), retry_base_seconds=0).run_until_idle()

    assert await asyncio.to_thread(main, ["jobs"]) == 0
    out = capsys.readouterr().out
    words = f"gave up after 1 attempts: cannot reach 127.0.0.1:{closed_port}: connection refused"
    assert words in out
    assert any(words in record.getMessage() for record in caplog.records if record.name == "prmedic.worker")


async def test_doctor_says_what_failed_and_the_likely_cause(settings, closed_port, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://{UNRESOLVABLE}")
    lines: list[str] = []
    refused = settings.model_copy(update={"github_api_url": f"http://127.0.0.1:{closed_port}"})
    assert await run_doctor(refused, lines.append) is False
    [github] = [line for line in lines if line.startswith("✗ GitHub App")]
    assert f"cannot reach 127.0.0.1:{closed_port}: connection refused" in github
    assert "check the host and port in PRMEDIC_GITHUB_API_URL" in github
    [claude] = [line for line in lines if line.startswith("✗ Anthropic")]
    assert f"cannot reach {UNRESOLVABLE}: name does not resolve" in claude and "DNS" in claude
    assert "ANTHROPIC_BASE_URL" in claude and "PRMEDIC_GITHUB_API_URL" not in claude


async def test_doctor_points_at_dns_for_a_host_that_does_not_resolve(settings, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    lines: list[str] = []
    unresolved = settings.model_copy(update={"github_api_url": f"https://{UNRESOLVABLE}/api/v3"})
    assert await run_doctor(unresolved, lines.append) is False
    [github] = [line for line in lines if line.startswith("✗ GitHub App")]
    assert f"cannot reach {UNRESOLVABLE}: name does not resolve" in github
    assert "DNS" in github and "port" not in github


async def test_doctor_calls_a_url_that_is_not_the_api_a_wrong_url(settings, plain_http_port):
    lines: list[str] = []
    wrong = settings.model_copy(update={"github_api_url": f"http://127.0.0.1:{plain_http_port}"})
    assert await run_doctor(wrong, lines.append) is False
    [github] = [line for line in lines if line.startswith("✗ GitHub App")]
    assert "answered 404" in github and "https://HOST/api/v3" in github
