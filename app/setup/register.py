"""`prmedic register`: the manifest flow from a terminal.

GitHub takes a manifest only as a form the browser POSTs, so this serves one page on
127.0.0.1 that submits itself to GitHub, prints its address, and waits there for GitHub's
redirect back (`/callback?code=…&state=…`). The code is exchanged and the credentials written as
the setup page does (`files`); the installation link is printed. Nothing is written if GitHub
does not answer in time.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from app.server import WEBHOOK_PATH
from app.settings import ServerSettings
from app.setup import pages
from app.setup.conversion import ConversionError, RegisteredApp, convert_code
from app.setup.files import FilesConflict, WrittenFiles, conflicts, write_credentials
from app.setup.manifest import (
    build_manifest, check_account, check_app_name, install_url, new_app_url, normalise_public_url,
)

CALLBACK = "/callback"


@dataclass(frozen=True)
class Registration:
    app: RegisteredApp
    written: WrittenFiles


class Failed(Exception):
    """The registration ended without an App written down: the message says what to do."""


def hook_url(public_url: str | None, proxy_url: str | None) -> str:
    """An explicit public URL wins; else the relay channel (local development)."""
    if public_url:
        return f"{normalise_public_url(public_url)}{WEBHOOK_PATH}"
    if proxy_url:
        return proxy_url
    raise ValueError("where should GitHub send webhooks? Give --url https://YOUR-PUBLIC-HOST (the address "
                     "`prmedic serve` will be reached at), or set PRMEDIC_WEBHOOK_PROXY_URL to a relay "
                     "channel (create one at https://smee.io/new) for local development")


class LocalFlow:
    """The local page and the callback; `result` resolves with the registration or its failure."""

    def __init__(self, settings: ServerSettings, folder: Path, manifest_of: Callable[[str], dict],
                 org: str | None) -> None:
        self.settings = settings
        self.folder = folder
        self.manifest_of = manifest_of  # redirect URL → manifest
        self.org = org
        self.state = secrets.token_urlsafe(24)
        self.base_url = ""
        self.result: asyncio.Future[Registration] = asyncio.get_running_loop().create_future()

    async def page(self, request: web.Request) -> web.Response:
        if self.result.done():
            raise web.HTTPNotFound()
        manifest = self.manifest_of(f"{self.base_url}{CALLBACK}")
        action = new_app_url(self.settings.github_web_url, self.state, self.org)
        return pages.page("Create the GitHub App", pages.manifest_form(action=action, manifest=manifest))

    async def callback(self, request: web.Request) -> web.Response:
        if self.result.done():
            raise web.HTTPNotFound()
        if not hmac.compare_digest(request.query.get("state", ""), self.state):
            return pages.page("prmedic register", pages.stopped(
                ["GitHub's answer does not carry the state this command gave: it is not from this registration."]),
                400)
        try:
            app = await convert_code(self.settings.github_api_url, request.query.get("code", ""))
        except ConversionError as exc:
            self.result.set_exception(Failed(str(exc)))
            return pages.page("prmedic register", pages.stopped([str(exc)]), 502)
        try:
            written = write_credentials(self.folder, app, how="prmedic register")
        except FilesConflict as exc:
            lines = "\n".join(f"    {line}" for line in exc.lines)
            self.result.set_exception(Failed(
                f"the App {app.slug} (id {app.id}) is registered, but .env was not written: "
                f"{'; '.join(exc.problems)}.\nThe private key is in {exc.key_path}. Put these lines in .env "
                f"yourself:\n{lines}"))
            return pages.page("prmedic register", pages.stopped(exc.problems, next_step="See the terminal."), 409)
        self.result.set_result(Registration(app, written))
        return pages.page("prmedic is registered", pages.done(
            slug=app.slug, app_id=app.id, install_url=install_url(app.html_url),
            written=[f"private key: {written.key_path}", f".env: {', '.join(written.added) or 'up to date'}"]))


async def register(settings: ServerSettings, *, org: str | None = None, public_url: str | None = None,
                   name: str | None = None, port: int = 0, timeout: float = 600.0, folder: Path | None = None,
                   out: Callable[[str], None] = print) -> int:
    """Exit status: 0 registered and written, 1 failed or timed out, 2 a usage or settings problem."""
    folder = folder or Path.cwd()
    try:
        hook = hook_url(public_url, settings.webhook_proxy_url)
        org = check_account(org) if org else None
        name = check_app_name(name) if name else None
    except ValueError as exc:
        out(f"prmedic register: {exc}")
        return 2
    problems = conflicts(folder)
    if problems:
        out("prmedic register: " + "\n  ".join(["nothing was started:", *problems]))
        return 2

    flow = LocalFlow(settings, folder, lambda redirect: build_manifest(hook_url=hook, redirect_url=redirect,
                                                                       name=name), org)
    app = web.Application()
    app.router.add_get("/", flow.page)
    app.router.add_get(CALLBACK, flow.callback)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        flow.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        owner = f"the organisation {org}" if org else "your personal account"
        out(f"Open this page in your browser to create the GitHub App for {owner}:\n\n    {flow.base_url}/\n")
        out(f"Webhooks will go to {hook}. Waiting for GitHub's answer (up to {timeout / 60:g} minutes)…")
        try:
            done = await asyncio.wait_for(asyncio.shield(flow.result), timeout)
        except TimeoutError:
            out(f"prmedic register: no answer from GitHub within {timeout / 60:g} minutes; nothing was written. "
                "Run `prmedic register` again and open the page it prints.")
            return 1
        except Failed as exc:
            out(f"prmedic register: {exc}")
            return 1
    finally:
        await runner.cleanup()
    out(f"Registered the GitHub App {done.app.slug} (id {done.app.id}).")
    out(f"  private key: {done.written.key_path} (mode 0600)")
    out(f"  {done.written.env_path}: {', '.join(done.written.added) or 'already up to date'}")
    out(f"Install it on your repositories: {install_url(done.app.html_url)}")
    out("Then start prmedic with `prmedic serve` (and check the settings with `prmedic doctor`).")
    return 0
