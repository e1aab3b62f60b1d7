"""First-run setup as Probot users know it: `prmedic serve` without App settings serves a setup page
that registers the App through GitHub's manifest flow (against the GitHub simulator, a test playing
the browser) and goes on in normal mode; `prmedic register` does the same from a terminal; the
webhook proxy feeds a smee.io-style channel into the intake; the manifest asks for exactly the
permissions prmedic's calls need."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import yaml
from aiohttp import web
from conftest import delivery_headers, example, installed, sign

from app.routing import router
from app.runtime import Running, server_app
from app.server import WEBHOOK_PATH, WEBHOOKS_KEY, create_app
from app.settings import ServerSettings, Settings
from app.setup.conversion import ConversionError, RegisteredApp, convert_code
from app.setup.files import FilesConflict, conflicts, write_credentials
from app.setup.manifest import manifest_template, webhook_url
from app.setup.flow import COOKIE, SETUP_KEY
from app.setup.proxy import EventStreamParser, WebhookProxy, delivery_of
from app.setup.register import hook_url, register
from app.store import open_store

try:
    from sims.github import find_route, make_app_jwt
    from sims.github.manifests import ManifestRefused, register_app, validate_manifest
    from sims.github.permissions import AUTOMATIC_EVENTS, ENDPOINT_PERMISSIONS, EVENT_PERMISSIONS, LEVELS
    from sims.github.routing import ROUTES
except ImportError:  # pragma: no cover
    from tests.sims.github import find_route, make_app_jwt
    from tests.sims.github.manifests import ManifestRefused, register_app, validate_manifest
    from tests.sims.github.permissions import AUTOMATIC_EVENTS, ENDPOINT_PERMISSIONS, EVENT_PERMISSIONS, LEVELS
    from tests.sims.github.routing import ROUTES

ROOT = Path(__file__).resolve().parents[1]
APP_YML = yaml.safe_load((ROOT / "deploy" / "app.yml").read_text())


# -- the browser ---------------------------------------------------------------------------------


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action"), "method": a.get("method", "get"), "fields": {}})
        elif tag == "input" and self.forms and (a.get("type") != "radio" or "checked" in a):
            self.forms[-1]["fields"][a["name"]] = a.get("value") or ""


def forms_of(html: str) -> list[dict]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


async def through_the_pages(http: aiohttp.ClientSession, link: str, *, org: str | None = None,
                            **fields: str) -> tuple[int, str, str]:
    """A person's browser, without JavaScript: the setup page (opened with the `link` the server
    printed), its form (edited with `fields`), the manifest form posted to GitHub (the simulator),
    GitHub's redirect back; the last page and its URL."""
    parts = urlsplit(link)
    base_url = f"{parts.scheme}://{parts.netloc}"
    async with http.get(link) as page:
        assert page.status == 200, await page.text()
        [form] = forms_of(await page.text())
    data = {**form["fields"], **fields}
    if org:
        data.update(account="organization", org=org)
    async with http.post(f"{base_url}{form['action']}", data=data) as answer:
        assert answer.status == 200, await answer.text()
        [github_form] = forms_of(await answer.text())
    async with http.post(github_form["action"], data=github_form["fields"]) as final:
        return final.status, await final.text(), str(final.url)


def env_file(folder: Path) -> dict[str, str]:
    from dotenv import dotenv_values

    return dotenv_values(folder / ".env")


# -- first-run setup in process ------------------------------------------------------------------


@pytest.fixture
def bare(monkeypatch, tmp_path, github_server) -> Path:
    """No App settings anywhere; GitHub is the simulator; the working directory is empty."""
    for name in [n for n in os.environ if n.startswith(("PRMEDIC_", "ANTHROPIC_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PRMEDIC_GITHUB_API_URL", github_server.url)
    monkeypatch.setenv("PRMEDIC_GITHUB_WEB_URL", github_server.url)
    monkeypatch.setenv("PRMEDIC_DATABASE_URL", f"sqlite:///{tmp_path / 'prmedic.db'}")
    monkeypatch.setenv("PRMEDIC_WORKER_POLL_SECONDS", "0.05")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@contextlib.asynccontextmanager
async def serving(aiohttp_client, settings, *, pipelines=None):
    """`prmedic serve`'s application in process (`app.runtime.server_app`), with its worker."""
    running = Running(with_worker=True, pipelines={} if pipelines is None else pipelines)
    async with contextlib.AsyncExitStack() as stack:
        client = await aiohttp_client(await server_app(settings, stack, running))
        running.begin()
        try:
            yield client, running
        finally:
            await running.stop()


@dataclass
class SetupServer:
    client: Any  # the test client: a browser of its own, keeping cookies
    base: str
    http: aiohttp.ClientSession  # another browser
    running: Running
    token: str  # the setup link's

    @property
    def link(self) -> str:
        """The link the server prints at start-up."""
        return f"{self.base}/?token={self.token}"

    @property
    def page(self) -> str:
        """The setup page's path with the token, for the test client."""
        return f"/?token={self.token}"


@pytest.fixture
async def setup_server(bare, aiohttp_client):
    async with serving(aiohttp_client, ServerSettings()) as (client, running):
        async with aiohttp.ClientSession() as http:
            base = str(client.make_url("")).rstrip("/")
            yield SetupServer(client, base, http, running, client.app[SETUP_KEY].token)


async def test_the_setup_page_opens_only_with_the_printed_links_token(setup_server):
    client = setup_server.client
    for path in ("/", "/?token=", "/?token=guessed", f"/?token={setup_server.token[:-1]}", "/?token=%C3%A9t%C3%A9"):
        locked = await client.get(path)
        text = await locked.text()
        assert locked.status == 403, path
        assert "server's log" in text and "/?token=" in text and not forms_of(text)
        assert setup_server.token not in text and COOKIE not in locked.cookies
    assert (await client.get("/", cookies={COOKIE: "guessed"})).status == 403
    # the link opens the page, and leaves a cookie so that / reloads without the token
    page = await client.get(setup_server.page)
    assert page.status == 200 and forms_of(await page.text())
    cookie = page.cookies[COOKIE]
    assert cookie.value == setup_server.token and cookie["httponly"] and cookie["samesite"] == "Strict"
    assert (await client.get("/")).status == 200
    # another browser, without the link, is still refused
    async with setup_server.http.get(f"{setup_server.base}/") as other:
        assert other.status == 403
    # the setup URL names where the server listens (every address: this machine)
    flow = client.app[SETUP_KEY]
    assert flow.setup_url("0.0.0.0", 3000) == f"http://localhost:3000/?token={flow.token}"
    assert flow.setup_url("::", 8080) == f"http://localhost:8080/?token={flow.token}"
    assert flow.setup_url("::1", 3000).startswith("http://[::1]:3000/?token=")


async def test_health_checks_pass_during_setup_and_say_so(setup_server):
    health = await setup_server.client.get("/healthz")
    body = await health.json()
    assert health.status == 200 and body["status"] == "setup" and body["store"] == "ok"
    assert setup_server.token not in json.dumps(body)


async def test_the_setup_page_takes_the_public_url_from_the_request_and_escapes_it(setup_server):
    client, base = setup_server.client, setup_server.base
    page = await client.get(setup_server.page)
    assert page.status == 200 and page.headers["Cache-Control"] == "no-store"
    [form] = forms_of(await page.text())
    assert form["fields"]["url"] == base and form["fields"]["account"] == "personal"
    assert form["fields"]["name"] == APP_YML["name"] and form["fields"]["token"]

    proxied = await client.get(setup_server.page, headers={"X-Forwarded-Proto": "https, http",
                                             "X-Forwarded-Host": 'prmedic.example.com"><script>x()</script>'})
    text = await proxied.text()
    assert "<script>" not in text
    [form] = forms_of(text)
    assert form["fields"]["url"] == 'https://prmedic.example.com"><script>x()</script>'


async def test_the_manifest_names_this_server_and_goes_to_the_account_chosen(setup_server, github_server):
    client = setup_server.client
    [form] = forms_of(await (await client.get(setup_server.page)).text())
    public = "https://prmedic.example.com/bots"
    answer = await client.post("/", data={**form["fields"], "url": public + "/", "name": "prmedic for acme",
                                          "account": "organization", "org": "acme"})
    [github_form] = forms_of(await answer.text())
    assert github_form["action"].startswith(f"{github_server.url}/organizations/acme/settings/apps/new?state=")
    manifest = json.loads(github_form["fields"]["manifest"])
    assert manifest["hook_attributes"] == {"url": f"{public}{WEBHOOK_PATH}", "active": True}
    assert manifest["redirect_url"] == f"{public}/setup/callback"
    assert manifest["public"] is False and manifest["name"] == "prmedic for acme"
    assert manifest["default_permissions"] == APP_YML["default_permissions"]
    assert manifest["default_events"] == APP_YML["default_events"]
    assert validate_manifest(manifest) == []

    personal = await client.post("/", data=form["fields"])
    [again] = forms_of(await personal.text())
    assert again["action"].startswith(f"{github_server.url}/settings/apps/new?state=")
    states = [parse_qs(urlsplit(f["action"]).query)["state"][0] for f in (github_form, again)]
    assert states[0] != states[1] and all(len(state) >= 32 for state in states)  # random, one per submission


async def test_the_form_needs_the_pages_token_and_valid_fields(setup_server, github_server):
    client = setup_server.client
    [form] = forms_of(await (await client.get(setup_server.page)).text())  # the cookie is set, too
    for token in ("guessed", "", "été"):
        forged = await client.post("/", data={**form["fields"], "token": token})
        assert forged.status == 403 and not forms_of(await forged.text()) and "server's log" in await forged.text()
    missing = await client.post("/", data={k: v for k, v in form["fields"].items() if k != "token"})
    assert missing.status == 403
    # the form's token is what counts: another browser that holds it (no cookie) may post it
    async with setup_server.http.post(f"{setup_server.base}/", data=form["fields"]) as posted:
        assert posted.status == 200 and forms_of(await posted.text())[0]["action"].startswith(github_server.url)
    bad = await client.post("/", data={**form["fields"], "url": "ftp://x", "account": "organization", "org": "-x"})
    text = await bad.text()
    assert bad.status == 400 and "Public URL" in text and "Organisation" in text


async def test_a_redirect_whose_state_this_server_did_not_give_is_refused(setup_server, github_server, bare):
    client = setup_server.client
    code = register_app(github_server.state, _manifest())  # an App someone else created: a real code
    refused = await client.get(f"/setup/callback?code={code}&state=not-mine")
    assert refused.status == 400 and "not from this setup" in await refused.text()
    assert not github_server.state.calls("POST", r"^/app-manifests/") and not (bare / ".env").exists()
    assert (await client.get("/setup/callback?code=x&state=%C3%A9")).status == 400
    assert (await client.get(setup_server.page)).status == 200  # the setup goes on


async def test_setup_registers_the_app_writes_its_settings_and_goes_on_without_a_restart(setup_server, github_server,
                                                                                         bare):
    client, base, http = setup_server.client, setup_server.base, setup_server.http
    state = github_server.state
    assert (await client.post(WEBHOOK_PATH, data=b"{}")).status == 503  # not set up yet
    assert (await (await client.get("/healthz")).json())["status"] == "setup"

    status, page, _ = await through_the_pages(http, setup_server.link)
    assert status == 200, page
    [manifest] = state.manifests
    assert manifest["redirect_url"] == f"{base}/setup/callback"
    install = f"https://github.com/apps/{state.app_slug}/installations/new"
    assert f'href="{install}"' in page
    # the key (0600) and the .env entries, which a restart reads
    env = env_file(bare)
    key = bare / "prmedic.private-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE((bare / ".env").stat().st_mode) == 0o600
    assert env == {"PRMEDIC_APP_ID": str(state.app_id), "PRMEDIC_APP_SLUG": state.app_slug,
                   "PRMEDIC_PRIVATE_KEY_PATH": "./prmedic.private-key.pem",
                   "PRMEDIC_WEBHOOK_SECRET": next(iter(state.manifest_codes.values())).webhook_secret}
    assert Settings().app_id == state.app_id
    # the page works once, even with its link; the health check says the server runs as usual
    for method, path in (("GET", "/"), ("GET", setup_server.page), ("POST", "/"),
                         ("GET", "/setup/callback?code=x&state=y")):
        assert (await client.request(method, path)).status == 404
    health = await client.get("/healthz")
    assert health.status == 200 and (await health.json())["status"] == "ok"
    # webhooks signed with the new secret are accepted; the worker (started just now) takes the job
    body = json.dumps(installed(example("pull_request", "opened"))).encode()
    good = await client.post(WEBHOOK_PATH, data=body, headers=delivery_headers(
        "pull_request", body, secret=env["PRMEDIC_WEBHOOK_SECRET"]))
    assert good.status == 202, await good.text()
    old = await client.post(WEBHOOK_PATH, data=body, headers=delivery_headers("pull_request", body))
    assert old.status == 401
    store = open_store(os.environ["PRMEDIC_DATABASE_URL"])
    await store.open()
    try:
        for _ in range(100):
            [job] = await store.list_jobs()
            if job.state.value == "no_pipeline":
                break
            await asyncio.sleep(0.05)
        assert job.state.value == "no_pipeline"  # the worker runs (these tests give it no pipelines)
    finally:
        await store.close()
    # GitHub's code was spent once
    assert [r.status for r in state.calls("POST", r"^/app-manifests/")] == [201]


async def test_a_dotenv_that_already_sets_a_name_stops_the_setup_before_the_code_is_spent(setup_server, github_server,
                                                                                          bare):
    base, http = setup_server.base, setup_server.http
    (bare / ".env").write_text("PRMEDIC_APP_SLUG=someone-else\nPRMEDIC_LOG_LEVEL=DEBUG")
    status, page, redirect = await through_the_pages(http, setup_server.link)
    assert status == 409 and "already sets PRMEDIC_APP_SLUG" in page and "reload this page" in page
    assert redirect.startswith(f"{base}/setup/callback?code=")
    assert not github_server.state.calls("POST", r"^/app-manifests/")
    # the line removed, the same redirect reloaded works: the code was not spent
    (bare / ".env").write_text("PRMEDIC_LOG_LEVEL=DEBUG")
    async with http.get(redirect) as again:
        assert again.status == 200, await again.text()
    assert (bare / ".env").read_text().startswith("PRMEDIC_LOG_LEVEL=DEBUG\n# GitHub App ")


# -- the code and the files ------------------------------------------------------------------------


def _manifest(**extra) -> dict:
    return {**manifest_template(), "hook_attributes": {"url": "https://x.example/api/github/webhooks"},
            "redirect_url": "https://x.example/setup/callback", **extra}


async def test_a_code_works_once_and_for_an_hour(github_server):
    state = github_server.state
    code = register_app(state, _manifest())
    app = await convert_code(github_server.url, code)
    assert (app.id, app.slug, app.html_url) == (state.app_id, state.app_slug, f"https://github.com/apps/{state.app_slug}")
    assert app.pem.get_secret_value().startswith("-----BEGIN RSA PRIVATE KEY-----") and app.client_secret
    with pytest.raises(ConversionError, match="used already or has expired"):
        await convert_code(github_server.url, code)
    late = register_app(state, _manifest())
    late_id = state.app_id
    state.advance(3601)
    with pytest.raises(ConversionError, match="used already or has expired"):
        await convert_code(github_server.url, late)
    assert [r.status for r in state.calls("POST", r"^/app-manifests/")] == [201, 404, 404]
    # the App registered first was replaced by the second: the simulator holds one App
    assert state.app_id == late_id and state.app_id != app.id


async def test_the_new_app_authenticates_with_the_key_github_handed_over(github_server):
    code = register_app(github_server.state, _manifest(name="prmedic acme"))
    app = await convert_code(github_server.url, code)
    jwt = make_app_jwt(app.pem.get_secret_value(), app.id, now=github_server.state.now())
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{github_server.url}/app", headers={"Authorization": f"Bearer {jwt}",
                                                                 "User-Agent": "test"}) as answer:
            assert answer.status == 200 and (await answer.json())["slug"] == "prmedic-acme"


def test_the_simulator_refuses_what_github_refuses_in_a_manifest():
    assert validate_manifest(_manifest()) == []
    errors = validate_manifest(_manifest(url="not a url", colour="blue", default_events=["issue_comment", "ping"],
                                         default_permissions={"checks": "admin", "pull_requests": "write"}))
    assert "colour is not a manifest parameter" in errors and any(e.startswith("url is required") for e in errors)
    assert "default_events: 'issue_comment' needs the issues permission (read)" in errors
    assert any("'ping' is sent to every App" in e for e in errors)
    assert any("checks cannot be 'admin'" in e for e in errors)
    with pytest.raises(ManifestRefused):
        register_app(None, {"redirect_url": "https://x.example/"})


def _registered(**kw) -> RegisteredApp:
    return RegisteredApp.model_validate({
        "id": 901, "slug": "prmedic-acme", "name": "prmedic acme", "html_url": "https://github.com/apps/prmedic-acme",
        "client_id": "Iv1.x", "client_secret": "cs", "webhook_secret": "whs-1", "pem": "-----BEGIN KEY-----\nk\n", **kw})


def test_credentials_go_to_a_0600_key_and_appended_dotenv_lines(tmp_path):
    (tmp_path / ".env").write_text("ANTHROPIC_API_KEY=sk-ant-x")  # no final newline
    written = write_credentials(tmp_path, _registered())
    assert written.key_path == tmp_path / "prmedic.private-key.pem" and written.key_path.read_text().endswith("k\n")
    assert stat.S_IMODE(written.key_path.stat().st_mode) == 0o600
    lines = (tmp_path / ".env").read_text().splitlines()
    assert lines[0] == "ANTHROPIC_API_KEY=sk-ant-x" and lines[1].startswith("# GitHub App prmedic-acme (id 901)")
    assert lines[2:] == ["PRMEDIC_APP_ID=901", "PRMEDIC_APP_SLUG=prmedic-acme",
                         "PRMEDIC_PRIVATE_KEY_PATH=./prmedic.private-key.pem", "PRMEDIC_WEBHOOK_SECRET=whs-1"]
    # the same again changes nothing
    assert write_credentials(tmp_path, _registered()).added == []
    assert len((tmp_path / ".env").read_text().splitlines()) == 6


def test_a_differing_dotenv_value_is_never_overwritten(tmp_path):
    (tmp_path / ".env").write_text("PRMEDIC_WEBHOOK_SECRET=the-old-one\n")
    (tmp_path / "prmedic.private-key.pem").write_text("another key\n")
    assert conflicts(tmp_path) == [f"{tmp_path / '.env'} already sets PRMEDIC_WEBHOOK_SECRET: remove that line "
                                   "(prmedic never overwrites a setting)"]
    with pytest.raises(FilesConflict) as stopped:
        write_credentials(tmp_path, _registered())
    assert (tmp_path / ".env").read_text() == "PRMEDIC_WEBHOOK_SECRET=the-old-one\n"
    assert (tmp_path / "prmedic.private-key.pem").read_text() == "another key\n"
    # nothing GitHub handed over once is lost: the key has a file of its own, the lines are given
    assert stopped.value.key_path == tmp_path / "prmedic-acme.901.private-key.pem"
    assert "PRMEDIC_WEBHOOK_SECRET=whs-1" in stopped.value.lines
    assert "PRMEDIC_PRIVATE_KEY_PATH=./prmedic-acme.901.private-key.pem" in stopped.value.lines


def test_the_packaged_manifest_is_deploy_app_yml():
    assert (ROOT / "app" / "setup" / "app.yml").read_bytes() == (ROOT / "deploy" / "app.yml").read_bytes(), (
        "copy deploy/app.yml to app/setup/app.yml (the copy the package ships)")
    assert manifest_template() == APP_YML


def test_the_manifest_subscribes_to_exactly_the_events_the_routing_handles():
    routed = set(router._shallow_routes) | set(router._deep_routes)
    assert set(APP_YML["default_events"]) == routed - AUTOMATIC_EVENTS
    assert routed & AUTOMATIC_EVENTS == {"installation", "installation_repositories"}  # sent to every App


# -- `prmedic register` ----------------------------------------------------------------------------


async def test_register_prints_a_local_page_that_leads_to_github_and_writes_the_app(bare, github_server):
    out: list[str] = []
    task = asyncio.create_task(register(ServerSettings(), org="acme", public_url="https://bots.example.com",
                                        out=out.append, timeout=30))
    for _ in range(100):
        if out:
            break
        await asyncio.sleep(0.02)
    [local] = re.findall(r"http://127\.0\.0\.1:\d+/", out[0])
    async with aiohttp.ClientSession() as http:
        async with http.get(local) as page:  # the page that submits itself to GitHub
            text = await page.text()
        assert "document.getElementById('manifest-form').submit()" in text
        [form] = forms_of(text)
        assert form["action"].startswith(f"{github_server.url}/organizations/acme/settings/apps/new?state=")
        async with http.post(form["action"], data=form["fields"]) as final:
            assert final.status == 200 and "is registered" in await final.text()
    assert await task == 0
    state = github_server.state
    [manifest] = state.manifests
    assert manifest["hook_attributes"]["url"] == "https://bots.example.com/api/github/webhooks"
    assert manifest["redirect_url"] == f"{local}callback" and state.app_owner == "acme"
    assert f"Install it on your repositories: https://github.com/apps/{state.app_slug}/installations/new" in out
    assert env_file(bare)["PRMEDIC_APP_ID"] == str(state.app_id)


async def test_register_gives_up_in_time_and_says_what_to_do(bare):
    out: list[str] = []
    assert await register(ServerSettings(), public_url="https://bots.example.com", timeout=0.2, out=out.append) == 1
    assert "no answer from GitHub within" in out[-1] and "nothing was written" in out[-1]
    assert not (bare / ".env").exists()


async def test_register_needs_to_know_where_webhooks_go(bare):
    out: list[str] = []
    assert await register(ServerSettings(), out=out.append) == 2
    assert "--url" in out[0] and "PRMEDIC_WEBHOOK_PROXY_URL" in out[0]
    # for local development the relay channel is the webhook URL; an explicit --url wins
    assert hook_url(None, "https://smee.io/abc") == "https://smee.io/abc"
    assert hook_url("https://bots.example.com/", "https://smee.io/abc") == "https://bots.example.com/api/github/webhooks"
    assert webhook_url("http://localhost:3000", "https://smee.io/abc") == "https://smee.io/abc"


def test_register_refuses_to_add_a_second_app(settings_env, capsys):
    from app.cli import main

    assert main(["register", "--url", "https://bots.example.com"]) == 2
    assert "settings are set already" in capsys.readouterr().err


# -- the webhook proxy -------------------------------------------------------------------------------


def test_the_event_stream_parser_reads_smee_events():
    parser = EventStreamParser()
    lines = ["id: 0", "event: ready", "data: {}", "", ": keep-alive", "id: 1", 'data: {"a":', "data: 1}", "",
             "retry: 2500\r\n", "data: x\r\n", "\r\n"]
    events = [e for e in map(parser.feed, lines) if e is not None]
    assert [(e.type, e.data) for e in events] == [("ready", ["{}"]), ("message", ['{"a":', "1}"]), ("message", ["x"])]
    assert parser.retry_ms == 2500


def test_a_delivery_is_rebuilt_as_smee_client_rebuilds_it():
    body = {"action": "opened", "title": "Grüße ✓", "n": 1}
    delivery = delivery_of(json.dumps({"x-github-event": "pull_request", "x-github-delivery": "d-1",
                                       "x-hub-signature-256": "sha256=abc", "host": "smee.io", "content-length": "9",
                                       "body": body, "query": {}, "timestamp": 1}))
    assert delivery.body == '{"action":"opened","title":"Grüße ✓","n":1}'.encode()  # JSON.stringify's bytes
    assert delivery.headers["X-GitHub-Event"] == "pull_request" and "host" not in delivery.headers
    assert "timestamp" not in delivery.headers and delivery_of('{"no": "body"}') is None


class Channel:
    """A smee.io-style channel: each connection streams the events queued for it, then drops."""

    def __init__(self) -> None:
        self.connections: list[list[str]] = []
        self.opened = 0
        self.accepts: list[str | None] = []

    def add_connection(self, *events: dict | None) -> None:
        self.connections.append(["event: ready\ndata: {}\n\n"] + [
            f"id: {i}\ndata: {json.dumps(e)}\n\n" if e is not None else ": ping\n\n" for i, e in enumerate(events)])

    async def stream(self, request: web.Request) -> web.StreamResponse:
        self.accepts.append(request.headers.get("Accept"))
        self.opened += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in (self.connections.pop(0) if self.connections else []):
            await response.write(chunk.encode())
        if not self.connections and self.opened > 1:
            await asyncio.sleep(30)  # the last connection stays open
        return response  # the stream drops


def smee_event(event: str, payload: dict, secret: str) -> dict:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return {"host": "smee.io", "x-github-event": event, "x-github-delivery": f"d-{secret[:4]}",
            "x-hub-signature-256": sign(body, secret), "content-type": "application/json",
            "body": payload, "query": {}, "timestamp": 1700000000000}


async def test_the_proxy_feeds_the_intake_drops_bad_signatures_and_reconnects(settings, store, aiohttp_server,
                                                                           caplog):
    channel = Channel()
    good = installed(example("pull_request", "opened"))
    channel.add_connection(smee_event("pull_request", good, "test-webhook-secret"), None,
                           smee_event("pull_request", good, "not-the-secret"))
    channel.add_connection()
    server = await aiohttp_server(_channel_app(channel))
    webhooks = create_app(settings, store)[WEBHOOKS_KEY]
    proxy = WebhookProxy(str(server.make_url("/channel")), webhooks.deliver, initial_backoff=0.01)
    task = asyncio.create_task(proxy.run())
    try:
        for _ in range(200):
            if channel.opened >= 2:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert channel.opened == 2 and proxy.connections == 2 and channel.accepts == ["text/event-stream"] * 2
    [job] = await store.list_jobs()
    assert job.kind.value == "review" and job.pr_number == good["number"]
    dropped = [r.getMessage() for r in caplog.records if r.name == "prmedic.webhook_proxy" and "dropped" in r.getMessage()]
    assert len(dropped) == 1 and "401" in dropped[0] and "signature does not match" in dropped[0]
    assert any("reconnecting" in r.getMessage() for r in caplog.records if r.name == "prmedic.webhook_proxy")


def _channel_app(channel: Channel) -> web.Application:
    app = web.Application()
    app.router.add_get("/channel", channel.stream)
    return app


async def test_serve_with_a_proxy_url_subscribes_to_the_channel(settings_env, aiohttp_server, aiohttp_client,
                                                                monkeypatch):
    channel = Channel()
    delivery = installed(example("pull_request", "opened"))
    channel.add_connection(smee_event("pull_request", delivery, settings_env["PRMEDIC_WEBHOOK_SECRET"]))
    channel.add_connection()
    server = await aiohttp_server(_channel_app(channel))
    monkeypatch.setenv("PRMEDIC_WEBHOOK_PROXY_URL", str(server.make_url("/channel")))
    async with serving(aiohttp_client, Settings()) as (client, _):
        assert (await client.get("/")).status == 404  # set up already: no setup page
        store = client.app[WEBHOOKS_KEY].store
        for _ in range(200):
            if await store.list_jobs():
                break
            await asyncio.sleep(0.02)
        [job] = await store.list_jobs()
    assert job.pr_number == delivery["number"] and channel.opened >= 1


# -- a real `prmedic serve` -----------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SETUP_LINK = re.compile(r"^    (http://\S+/\?token=\S+)$", re.M)


async def test_prmedic_serve_without_settings_leads_to_a_registered_app_that_accepts_its_webhooks(
        github_server, tmp_path, capsys):
    """A real `prmedic serve` in an empty folder: healthy while it waits (so a container is not
    restarted mid-setup), the page locked but for the link printed on stderr, then a registered App."""
    from app.cli import main

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRMEDIC_", "ANTHROPIC_"))}
    env.update(PYTHONPATH=str(ROOT), PRMEDIC_HOST="127.0.0.1", PRMEDIC_PORT=str(port), PRMEDIC_LOG_FORMAT="json",
               PRMEDIC_GITHUB_API_URL=github_server.url, PRMEDIC_GITHUB_WEB_URL=github_server.url,
               PRMEDIC_WORKER_POLL_SECONDS="0.1", PRMEDIC_JOB_RETRY_BASE_SECONDS="60")
    log_path = tmp_path.parent / f"{tmp_path.name}-serve.log"
    with open(log_path, "ab") as log:  # appended to by the server; read here through its own handle
        process = subprocess.Popen([sys.executable, "-m", "app", "serve"], env=env, cwd=tmp_path, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{base}/healthz") as health:
                        if health.status == 200:
                            assert (await health.json())["status"] == "setup"
                            break
                await asyncio.sleep(0.05)
            assert await asyncio.to_thread(main, ["healthcheck", "--host", "127.0.0.1", "--port", str(port)]) == 0
            assert '"status":"setup"' in capsys.readouterr().out
            [link] = SETUP_LINK.findall(log_path.read_text())  # printed once, on its own line
            assert link.startswith(f"{base}/?token=")
            async with http.get(f"{base}/") as locked:
                assert locked.status == 403 and "server's log" in await locked.text()
            status, page, _ = await through_the_pages(http, link)
            assert status == 200, page
            secret = env_file(tmp_path)["PRMEDIC_WEBHOOK_SECRET"]
            body = json.dumps(installed(example("pull_request", "opened"))).encode()
            async with http.post(f"{base}{WEBHOOK_PATH}", data=body,
                                 headers=delivery_headers("pull_request", body, secret=secret)) as answer:
                assert answer.status == 202, await answer.text()
            async with http.get(link) as gone:
                assert gone.status == 404
        store = open_store(f"sqlite:///{tmp_path / 'prmedic.db'}")
        await store.open()
        try:
            for _ in range(100):  # the worker started in the same process claims the job
                [job] = await store.list_jobs()
                if job.attempts:
                    break
                await asyncio.sleep(0.1)
            assert job.attempts >= 1
        finally:
            await store.close()
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 30)
        output = log_path.read_text()
    assert process.returncode == 0, output
    # the WARNING in the (JSON) log carries the same link
    [warning] = [json.loads(line) for line in output.splitlines() if "first-run setup" in line]
    assert warning["level"] == "warning" and link in warning["msg"], warning
    assert "setup: the GitHub App" in output
    assert stat.S_IMODE((tmp_path / "prmedic.private-key.pem").stat().st_mode) == 0o600


# -- the manifest's permissions: exactly what the calls need ---------------------------------------------


def test_the_permission_table_agrees_with_the_simulators_routes():
    for r in ROUTES:
        if (r.method, r.template) in ENDPOINT_PERMISSIONS:
            assert tuple(r.perms or ()) == ENDPOINT_PERMISSIONS[(r.method, r.template)], r.template


def needed_permissions(requests, events) -> dict[str, str]:
    """The least permissions that allow every recorded call and every subscribed event."""
    single: dict[str, str] = {}
    either: list[tuple] = []

    def need(perm: str, level: str) -> None:
        if LEVELS[level] > LEVELS[single.get(perm, "none")]:
            single[perm] = level

    for record in requests:
        if record.path.startswith("/_sim/"):
            continue  # the log archive a redirect points at: not the API
        route, _, _ = find_route(record.method, record.path)
        assert route is not None, f"{record.method} {record.path}"
        alternatives = ENDPOINT_PERMISSIONS[(route.method, route.template)]
        if len(alternatives) == 1:
            need(*alternatives[0])
        elif alternatives:
            either.append(alternatives)
        if record.method == "POST" and isinstance(record.json, dict):
            for perm, level in (record.json.get("permissions") or {}).items():
                need(perm, level)  # a token minted with permissions: the App must hold them
    for event in events:
        need(*EVENT_PERMISSIONS[event])
    for alternatives in either:
        assert any(LEVELS[single.get(p, "none")] >= LEVELS[lvl] for p, lvl in alternatives), (
            f"a call allowed by any of {alternatives}: choose one in deploy/app.yml")
    return single


async def test_the_manifest_asks_for_exactly_what_a_review_a_command_and_a_fix_use(app_stack, pr, git_repo):
    from command_helpers import command, finished
    from review_helpers import review_script
    from test_command_ask import ANSWER, ask_script
    from test_fix_pipeline import GOOD, Project, fix_script, propose

    state = app_stack.state
    for installation in state.installations.values():  # installed with exactly what the manifest asks for
        installation.permissions = dict(APP_YML["default_permissions"])
    app_stack.sim.default_script = review_script([{"path": "src/app.py", "line": 41, "severity": "major",
                                                   "body": "`total` skips the first item."}])
    assert (await app_stack.deliver("pull_request", pr.event("opened"))).status == 202
    await app_stack.run_jobs()
    assert state.reviews_of("octo-org/widgets", pr.pr.number)

    app_stack.sim.default_script = ask_script(("reply", {"body": ANSWER}))
    cid, answer, _ = await command(app_stack, pr, "/ask why?")
    await finished(app_stack, cid)
    assert ANSWER in answer

    project = Project(app_stack, git_repo)
    project.failing_job(4242)
    app_stack.sim.default_script = fix_script(("read_ci_log", {"job_id": 4242, "start_line": 200, "max_lines": 5}),
                                              propose(project.patch({"src/calc.py": GOOD})))
    assert (await app_stack.deliver("check_run", project.check_run_event(4242))).status == 202
    await app_stack.run_jobs()
    assert state.pull("octo-org/calc", 8)

    assert not [r for r in state.refusals if r.kind == "http-403"], state.refusals
    assert needed_permissions(state.requests, APP_YML["default_events"]) == APP_YML["default_permissions"]
