"""GitHub's code → the new App's credentials: `POST /app-manifests/{code}/conversions`.

The call needs no authentication (the code is the credential); a code works once and for an
hour. GitHub answers `201` with the App (`id`, `slug`, `name`, `html_url`, `owner`, …) and
`client_id`, `client_secret`, `webhook_secret` and `pem` (the private key), `404` for a code it
does not know (used, expired or made up) and `422` for one it refuses.
"""

from __future__ import annotations

import json
import urllib.parse

import aiohttp
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from app import __version__
from app.errors import describe


class RegisteredApp(BaseModel):
    """What the conversion answers, as far as prmedic keeps it."""

    model_config = ConfigDict(extra="ignore")

    id: int
    slug: str
    name: str
    html_url: str
    client_id: str
    client_secret: SecretStr
    webhook_secret: SecretStr
    pem: SecretStr


class ConversionError(Exception):
    """The code did not become an App: the message says why and what to do."""


async def convert_code(api_url: str, code: str, *, timeout: float = 30.0) -> RegisteredApp:
    url = f"{api_url.rstrip('/')}/app-manifests/{urllib.parse.quote(code, safe='')}/conversions"
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
               "User-Agent": f"prmedic/{__version__}"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
            async with http.post(url, headers=headers) as answer:
                status, text = answer.status, await answer.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConversionError(f"could not reach GitHub to exchange the code: {describe(exc)}") from None
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if status == 404:
        raise ConversionError("GitHub does not know this code: it was used already or has expired "
                              "(a code works once, within an hour). Start the setup again.")
    if status != 201:
        message = (body or {}).get("message") if isinstance(body, dict) else None
        raise ConversionError(f"GitHub answered {status} to the code exchange" + (f": {message}" if message else ""))
    if isinstance(body, dict) and not body.get("webhook_secret"):
        raise ConversionError("GitHub created the App without a webhook secret; prmedic refuses unsigned "
                              "deliveries: set one in the App's settings and in PRMEDIC_WEBHOOK_SECRET")
    try:
        return RegisteredApp.model_validate(body)
    except ValidationError as exc:
        raise ConversionError(f"GitHub's answer to the code exchange lacks what prmedic needs: {exc}") from None
