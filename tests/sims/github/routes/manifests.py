"""The manifest flow's code exchange (the codes are made by ``..manifests``)."""

from __future__ import annotations

from ..common import not_found
from ..routing import Ctx, route


@route("POST", "/app-manifests/{code}/conversions", auth="none")
def create_from_manifest(ctx: Ctx):
    entry = ctx.state.manifest_codes.get(ctx.params["code"])
    if entry is None or entry.used or entry.expires_at <= ctx.state.now():
        raise not_found()
    entry.used = True
    return 201, {**entry.app, "client_id": entry.app["client_id"], "client_secret": entry.client_secret,
                 "webhook_secret": entry.webhook_secret, "pem": entry.pem}
