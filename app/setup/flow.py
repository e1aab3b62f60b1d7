"""`prmedic serve` without App settings: the setup page at `/`, GitHub's redirect back, and the
switch to normal mode in the same process.

Until the App exists, whoever completes the page registers it, so the page is locked as
Jupyter's is: at start-up the server prints a link with a random token (`setup_url`, `announce`);
`GET /` answers 403 without that token (in the query, or in the cookie its first use sets) and
`POST /` without it in the form. The page shows the form (the public URL taken from the request,
editable; the App's name; personal account or organisation); its POST answers the manifest form
that the browser posts to GitHub, with a fresh random `state`. GitHub sends the browser back to
`/setup/callback?code=…&state=…`: an unknown state is refused, the code is exchanged, the
credentials are written (`files`), the App's services start (`on_registered`, from
app/runtime.py) and the webhook route takes deliveries signed with the new secret. From then on
`/` and the callback answer 404: the page works once.

`/healthz` answers 200 `{"status": "setup"}` while the page waits (a container's health check
and probes must not restart the server mid-setup), then as in normal mode.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from aiohttp import web

from app.errors import describe
from app.metrics import Metrics
from app.server import WebhookHandler, base_app
from app.settings import ENV_FILE, ServerSettings, Settings, SettingsError, load_settings
from app.setup import pages
from app.setup.conversion import ConversionError, convert_code
from app.setup.files import FilesConflict, conflicts, write_credentials
from app.setup.manifest import (
    CALLBACK_PATH, build_manifest, check_account, check_app_name, install_url, manifest_template, new_app_url,
    normalise_public_url, public_url_of, webhook_url,
)
from app.store import Store

log = logging.getLogger("prmedic.setup")

# Starts the App's services with its settings and gives back its webhook handler.
OnRegistered = Callable[[Settings], Awaitable[WebhookHandler]]
MAX_PENDING_STATES = 20
TITLE = "Set up prmedic"
COOKIE = "prmedic_setup"  # holds the token once the printed link has been opened


def same(given: str, expected: str) -> bool:
    """Constant-time comparison of a value from a request (which may hold any character) with ours."""
    return bool(given) and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def shown_host(host: str) -> str:
    """The host to put in a link to a server listening on `host` (every address: this machine)."""
    host = "localhost" if host in ("", "0.0.0.0", "::") else host
    return f"[{host}]" if ":" in host else host


class WebhookGate:
    """The webhook route in setup mode: 503 until the App exists, then the App's own handler."""

    def __init__(self) -> None:
        self.handler: WebhookHandler | None = None

    async def __call__(self, request: web.Request) -> web.Response:
        if self.handler is None:
            return web.json_response({"error": "prmedic is not set up yet: open the setup link from the server's "
                                               "log to register its GitHub App"}, status=503)
        return await self.handler(request)


class SetupFlow:
    def __init__(self, settings: ServerSettings, on_registered: OnRegistered, *, folder: Path | None = None):
        self.settings = settings
        self.on_registered = on_registered
        self.folder = folder or Path.cwd()
        self.token = secrets.token_urlsafe(32)  # opens the page: printed at start-up, never served without it
        self.states: list[str] = []  # handed to GitHub, newest last
        self.done = False
        self.gate = WebhookGate()
        self._lock = asyncio.Lock()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.show)
        app.router.add_post("/", self.submit)
        app.router.add_get(CALLBACK_PATH, self.callback)
        app.middlewares.append(self.health_while_open)

    def setup_url(self, host: str, port: int) -> str:
        """The link that opens the setup page on this server (`host`, `port`: where it listens)."""
        return f"http://{shown_host(host)}:{port}/?token={self.token}"

    def _open(self) -> None:
        if self.done:
            raise web.HTTPNotFound()

    @web.middleware
    async def health_while_open(self, request: web.Request, handler: web.Handler) -> web.StreamResponse:
        """`/healthz` says "setup" (200, the store permitting) until the App is registered."""
        if request.path != "/healthz" or self.done:
            return await handler(request)
        answer = await handler(request)  # the store's check, as in normal mode
        if answer.status != 200:
            return answer
        body = {"status": "setup", "store": "ok", "setup": "no GitHub App yet: open the setup link from the server's log"}
        return web.Response(body=orjson.dumps(body), content_type="application/json")  # compact, as in normal mode

    async def show(self, request: web.Request) -> web.Response:
        self._open()
        from_link = same(request.query.get("token", ""), self.token)
        if not (from_link or same(request.cookies.get(COOKIE, ""), self.token)):
            return pages.page(TITLE, pages.locked(), 403)
        answer = self._form(public_url_of(request), manifest_template().get("name", "prmedic"), "")
        if from_link:  # reloading / then works without the token in the address
            answer.set_cookie(COOKIE, self.token, path="/", httponly=True, samesite="Strict",
                              secure=request.secure or None)
        return answer

    def _form(self, public_url: str, name: str, org: str, problems: list[str] | None = None,
              status: int = 200) -> web.Response:
        return pages.page(TITLE, pages.setup_form(public_url=public_url, app_name=name, org=org, token=self.token,
                                                  proxy_url=self.settings.webhook_proxy_url, problems=problems),
                          status)

    async def submit(self, request: web.Request) -> web.Response:
        self._open()
        form = await request.post()
        if not same(str(form.get("token", "")), self.token):
            return pages.page(TITLE, pages.locked(), 403)
        raw_url, raw_name, raw_org = (str(form.get(k, "")) for k in ("url", "name", "org"))
        problems: list[str] = []
        public_url = name = org = None
        try:
            public_url = normalise_public_url(raw_url)
        except ValueError as exc:
            problems.append(f"Public URL: {exc}")
        try:
            name = check_app_name(raw_name)
        except ValueError as exc:
            problems.append(f"App name: {exc}")
        if form.get("account") == "organization":
            try:
                org = check_account(raw_org)
            except ValueError as exc:
                problems.append(f"Organisation: {exc}")
        if problems:
            return self._form(raw_url, raw_name, raw_org, problems, 400)
        state = secrets.token_urlsafe(24)
        self.states = [*self.states[-(MAX_PENDING_STATES - 1):], state]
        manifest = build_manifest(hook_url=webhook_url(public_url, self.settings.webhook_proxy_url),
                                  redirect_url=f"{public_url}{CALLBACK_PATH}", name=name)
        action = new_app_url(self.settings.github_web_url, state, org)
        return pages.page("Create the GitHub App", pages.manifest_form(action=action, manifest=manifest))

    async def callback(self, request: web.Request) -> web.Response:
        self._open()
        state, code = request.query.get("state", ""), request.query.get("code", "")
        if not any(same(state, mine) for mine in self.states):
            log.warning("setup: refused a redirect whose state this server did not hand out")
            return pages.page(TITLE, pages.stopped(
                ["GitHub's answer does not carry the state this server gave: it is not from this setup."],
                next_step="Start again at /."), 400)
        if not code:
            return pages.page(TITLE, pages.stopped(["GitHub's answer carries no code."],
                                                   next_step="Start again at /."), 400)
        async with self._lock:  # one exchange at a time: a code works once
            self._open()
            return await self._register(code)

    async def _register(self, code: str) -> web.Response:
        problems = conflicts(self.folder)
        if problems:
            return pages.page(TITLE, pages.stopped(problems, next_step="Then reload this page: GitHub's code "
                                                   "stays good for an hour."), 409)
        try:
            registered = await convert_code(self.settings.github_api_url, code)
        except ConversionError as exc:
            return pages.page(TITLE, pages.stopped([str(exc)], next_step="Start again at /."), 502)
        try:
            written = write_credentials(self.folder, registered)
        except FilesConflict as exc:
            self.done = True  # the App exists: a second one would only add confusion
            log.error("setup: the App %s is registered but .env was not written: %s", registered.slug, exc)
            return pages.page(TITLE, pages.stopped(exc.problems, lines=exc.lines, next_step=(
                f"The private key is in {exc.key_path}. Then restart prmedic serve.")), 409)
        try:
            settings = load_settings(Settings, **{
                **self.settings.model_dump(), "app_id": registered.id, "app_slug": registered.slug,
                "private_key_path": written.key_path.resolve(), "webhook_secret": registered.webhook_secret})
        except SettingsError as exc:
            self.done = True
            return pages.page(TITLE, pages.stopped([str(exc)], next_step="Fix them, then restart prmedic serve."), 500)
        self.done = True
        try:
            self.gate.handler = await self.on_registered(settings)
        except Exception as exc:  # noqa: BLE001 - the App and its settings exist: say what is left to do
            log.exception("setup: the App %s is registered but its services did not start", registered.slug)
            return pages.page(TITLE, pages.stopped(
                [f"The App {registered.slug} is registered and its settings are written, but prmedic could not "
                 f"start with them: {describe(exc)}"], next_step="Restart prmedic serve."), 500)
        self.states.clear()
        log.info("setup: the GitHub App %s (id %d) is registered; its webhooks are accepted from now on",
                 registered.slug, registered.id)
        lines = [f"private key: {written.key_path}",
                 f"{written.env_path}: {', '.join(written.added) or 'already up to date'}"]
        return pages.page("prmedic is set up", pages.done(slug=registered.slug, app_id=registered.id,
                                                          install_url=install_url(registered.html_url),
                                                          written=lines))


SETUP_KEY = web.AppKey("setup_flow", SetupFlow)


def setup_app(settings: ServerSettings, store: Store, metrics: Metrics, on_registered: OnRegistered,
              *, folder: Path | None = None) -> tuple[web.Application, SetupFlow]:
    """The server of first-run setup: the usual routes (the webhook route behind the gate) and the
    setup pages; the flow is also `app[SETUP_KEY]`."""
    flow = SetupFlow(settings, on_registered, folder=folder)
    app = base_app(store, metrics, flow.gate.__call__)
    flow.add_routes(app)
    app[SETUP_KEY] = flow
    return app, flow


def announce(url: str, folder: Path | None = None) -> None:
    """Say at start-up where the setup page is: a WARNING in the log, and plain lines on stderr (a
    JSON log, or a log level above WARNING, must not hide the link)."""
    env_file = (folder or Path.cwd()) / ENV_FILE
    log.warning("no GitHub App settings (PRMEDIC_* variables, or %s): first-run setup. Open %s in a browser to "
                "register prmedic's GitHub App (or run `prmedic register`); its settings are written there and "
                "prmedic starts working without a restart", env_file, url)
    print(f"\nprmedic has no GitHub App yet. To register one, open this link in a browser (it opens the setup page "
          f"until the App is registered, and changes each time prmedic serve starts):\n\n    {url}\n",
          file=sys.stderr, flush=True)
