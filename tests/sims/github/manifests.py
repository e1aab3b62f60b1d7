"""GitHub's App manifest flow, for a test acting as the browser and as github.com.

- ``POST /settings/apps/new?state=…`` and ``POST /organizations/{org}/settings/apps/new?state=…``
  (GitHub's web pages, not the API): the form field ``manifest`` is validated as GitHub does, the
  App is registered at once (the person's "Create GitHub App" click is taken as given) and the
  answer is GitHub's redirect to the manifest's ``redirect_url`` with ``?code=…&state=…``.
- :func:`register_app` does the same without HTTP and returns the code.
- ``POST /app-manifests/{code}/conversions`` (``routes/manifests.py``) turns a code into the App's
  credentials: once, within an hour.

The simulator holds one App: registering replaces its identity (id, slug, name, owner, key pair,
permissions, events) in the :class:`~.state.GitHubState`; installations are added by the test.
"""

from __future__ import annotations

import json
import re
import secrets
import urllib.parse
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .permissions import AUTOMATIC_EVENTS, EVENT_PERMISSIONS, LEVELS
from .render import Render
from .spec import load_spec

MANIFEST_KEYS = {"name", "url", "hook_attributes", "redirect_url", "callback_urls", "setup_url", "description",
                 "public", "default_events", "default_permissions", "request_oauth_on_install", "setup_on_update"}
CODE_TTL_SECONDS = 3600
MAX_NAME = 34


@dataclass
class ManifestCode:
    code: str
    app: dict[str, Any]  # the App as GET /app shows it, at registration
    pem: str
    webhook_secret: str
    client_secret: str
    expires_at: float
    used: bool = False


class ManifestRefused(Exception):
    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("; ".join(errors))


def _http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    url = urllib.parse.urlsplit(value)
    return url.scheme in ("http", "https") and bool(url.hostname)


def validate_manifest(manifest: Any) -> list[str]:
    """What GitHub would refuse in ``manifest``; empty if it is acceptable."""
    if not isinstance(manifest, dict):
        return ["the manifest is not a JSON object"]
    errors = [f"{key} is not a manifest parameter" for key in sorted(set(manifest) - MANIFEST_KEYS)]
    if not _http_url(manifest.get("url")):
        errors.append("url is required: the App's homepage, an http(s) URL")
    hook = manifest.get("hook_attributes")
    if hook is not None:
        if not isinstance(hook, dict) or set(hook) - {"url", "active"}:
            errors.append("hook_attributes takes url and active")
        elif hook.get("active", True) and not _http_url(hook.get("url")):
            errors.append("hook_attributes.url is required for an active webhook: an http(s) URL")
    if not _http_url(manifest.get("redirect_url")):
        errors.append("redirect_url must be an http(s) URL (where GitHub sends the browser with the code)")
    if not isinstance(manifest.get("public", False), bool):
        errors.append("public must be a boolean")
    name = manifest.get("name")
    if name is not None and not (isinstance(name, str) and 1 <= len(name.strip()) <= MAX_NAME):
        errors.append(f"name must have 1 to {MAX_NAME} characters")
    known = load_spec()[0]["components"]["schemas"]["app-permissions"]["properties"]
    permissions = manifest.get("default_permissions") or {}
    if not isinstance(permissions, dict):
        errors.append("default_permissions must be an object")
        permissions = {}
    for perm, level in permissions.items():
        if perm not in known:
            errors.append(f"default_permissions: {perm!r} is not a permission")
        elif level not in known[perm].get("enum", []):
            errors.append(f"default_permissions: {perm} cannot be {level!r} (one of {known[perm].get('enum')})")
    events = manifest.get("default_events") or []
    if not isinstance(events, list):
        return [*errors, "default_events must be a list"]
    for event in events:
        if event in AUTOMATIC_EVENTS:
            errors.append(f"default_events: {event!r} is sent to every App and cannot be subscribed to")
        elif event not in EVENT_PERMISSIONS:
            errors.append(f"default_events: {event!r} is not an event the simulator knows")
        else:
            perm, level = EVENT_PERMISSIONS[event]
            if LEVELS.get(permissions.get(perm, "none"), 0) < LEVELS[level]:
                errors.append(f"default_events: {event!r} needs the {perm} permission ({level})")
    return errors


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "app"


def _new_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def register_app(state, manifest: Any, *, owner: str = "octocat", owner_type: str = "User") -> str:
    """Register the App ``manifest`` describes as the simulator's App, with a new key pair and
    webhook secret; the code GitHub would put in the redirect. Raises ManifestRefused."""
    errors = validate_manifest(manifest)
    if errors:
        raise ManifestRefused(errors)
    app_id = state.next_id("app", 900000)
    pem = _new_key()
    state.app_id = app_id
    state.app_name = (manifest.get("name") or f"app-{app_id}").strip()
    state.app_slug = _slug(state.app_name)
    state.app_owner = owner
    state.client_id = f"Iv23li{secrets.token_hex(7)}"
    # GitHub gives every App metadata: read.
    state.app_permissions = {"metadata": "read", **(manifest.get("default_permissions") or {})}
    state.app_events = list(manifest.get("default_events") or [])
    state.set_app_key(private_key=pem)
    state.add_user(owner, type=owner_type)
    state.manifests.append(manifest)
    code = secrets.token_hex(20)
    state.manifest_codes[code] = ManifestCode(
        code, Render(state, "").app(), pem, webhook_secret=secrets.token_hex(20),
        client_secret=secrets.token_hex(20), expires_at=state.now() + CODE_TTL_SECONDS)
    return code


def add_manifest_routes(app: web.Application, state) -> None:
    """GitHub's web pages of the manifest flow (register before the API's catch-all route)."""

    async def new_app(request: web.Request) -> web.Response:
        form = await request.post()
        try:
            manifest = json.loads(str(form.get("manifest", "")))
        except ValueError:
            return web.Response(status=422, text="the manifest field is not JSON")
        org = request.match_info.get("org")
        try:
            code = register_app(state, manifest, owner=org or "octocat",
                                owner_type="Organization" if org else "User")
        except ManifestRefused as exc:
            return web.Response(status=422, text="\n".join(exc.errors))
        target = urllib.parse.urlsplit(manifest["redirect_url"])
        query = urllib.parse.parse_qsl(target.query) + [("code", code)]
        if "state" in request.query:
            query.append(("state", request.query["state"]))
        raise web.HTTPFound(urllib.parse.urlunsplit(target._replace(query=urllib.parse.urlencode(query))))

    app.router.add_post("/settings/apps/new", new_app)
    app.router.add_post("/organizations/{org}/settings/apps/new", new_app)
