"""The App manifest this prmedic registers itself with, and the GitHub page it is posted to.

GitHub's manifest flow: the browser POSTs a form field `manifest` (JSON) to
`{github}/settings/apps/new?state=…` (or `/organizations/{org}/settings/apps/new`); the person
confirms; GitHub creates the App and sends the browser to the manifest's `redirect_url` with
`?code=…&state=…`. The manifest itself is `deploy/app.yml` (least permissions, the events the
routing handles; `tests/test_setup.py` holds both), shipped inside the package as
`app/setup/app.yml`; only the URLs, the name and `public: false` are filled in here.
"""

from __future__ import annotations

import copy
import re
import urllib.parse
from importlib import resources
from typing import Any

import yaml
from aiohttp import web

from app.server import WEBHOOK_PATH

TEMPLATE = "app.yml"
CALLBACK_PATH = "/setup/callback"
# GitHub: an App's name is at most 34 characters; an account (organisation) login at most 39.
MAX_NAME = 34
ACCOUNT_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")


def manifest_template() -> dict[str, Any]:
    """`deploy/app.yml` as shipped in the package."""
    text = resources.files("app.setup").joinpath(TEMPLATE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _first(value: str | None) -> str | None:
    # X-Forwarded-* may list one value per proxy: the first is the one the browser used.
    return value.split(",")[0].strip() or None if value else None


def public_url_of(request: web.Request) -> str:
    """This server's address as the browser sees it: a reverse proxy's X-Forwarded-Proto and
    X-Forwarded-Host first, else the request's own scheme and Host."""
    proto = _first(request.headers.get("X-Forwarded-Proto")) or request.scheme
    host = _first(request.headers.get("X-Forwarded-Host")) or request.host
    return f"{proto}://{host}"


def normalise_public_url(text: str) -> str:
    """`text` as the base of the App's URLs (an http(s) URL with a host, maybe a path prefix, no
    query, no trailing slash); ValueError says what is wrong with it."""
    url = urllib.parse.urlsplit(text.strip())
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"{text.strip()!r} is not an http(s) URL with a host (e.g. https://prmedic.example.com)")
    if url.query or url.fragment:
        raise ValueError(f"{text.strip()!r} has a query or fragment: give the server's base URL")
    return urllib.parse.urlunsplit((url.scheme, url.netloc, url.path.rstrip("/"), "", ""))


def check_app_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise ValueError(f"an App name has 1 to {MAX_NAME} characters (GitHub's limit)")
    return name


def check_account(login: str) -> str:
    login = login.strip()
    if not ACCOUNT_LOGIN.fullmatch(login):
        raise ValueError(f"{login!r} is not an organisation login (letters, digits and single hyphens, at most 39)")
    return login


def webhook_url(public_url: str, proxy_url: str | None = None) -> str:
    """Where GitHub sends deliveries: the relay channel when one is set (local development: the
    server subscribes to it), else this server's webhook route."""
    return proxy_url or f"{public_url}{WEBHOOK_PATH}"


def build_manifest(*, hook_url: str, redirect_url: str, name: str | None = None,
                   template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest to post: the template with this server's webhook and redirect URLs, private."""
    manifest = copy.deepcopy(template if template is not None else manifest_template())
    if name:
        manifest["name"] = check_app_name(name)
    manifest["hook_attributes"] = {**(manifest.get("hook_attributes") or {}), "url": hook_url, "active": True}
    manifest["redirect_url"] = redirect_url
    manifest["public"] = False
    return manifest


def new_app_url(web_url: str, state: str, org: str | None = None) -> str:
    """GitHub's page that takes the manifest: the personal account's, or the organisation's."""
    where = f"/organizations/{urllib.parse.quote(org, safe='')}" if org else ""
    return f"{web_url.rstrip('/')}{where}/settings/apps/new?{urllib.parse.urlencode({'state': state})}"


def install_url(html_url: str) -> str:
    """The page where the new App is installed on repositories."""
    return f"{html_url.rstrip('/')}/installations/new"
