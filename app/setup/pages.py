"""The setup pages: small, plain HTML, every value escaped. No JavaScript is needed; the one
script (submitting the manifest form by itself) only saves a click."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from aiohttp import web

_STYLE = ("body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}"
          "label{display:block;margin:.8rem 0 .2rem}input[type=text],input[type=url]{width:100%;padding:.3rem}"
          "button{margin-top:1.2rem;padding:.5rem 1rem}code{background:#f3f3f3;padding:0 .2rem}"
          ".problem{color:#a00}")


def page(title: str, body: str, status: int = 200) -> web.Response:
    html = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_STYLE}</style>'
            f"</head><body><h1>{escape(title)}</h1>\n{body}\n</body></html>\n")
    # Never cached, never framed: these pages carry one-time values.
    return web.Response(status=status, text=html, content_type="text/html",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Referrer-Policy": "no-referrer"})


def _problems(problems: list[str]) -> str:
    return "".join(f'<p class="problem">{escape(p)}</p>' for p in problems)


def setup_form(*, public_url: str, app_name: str, org: str, token: str, proxy_url: str | None,
               problems: list[str] | None = None) -> str:
    """The first page: where GitHub should reach this server, and whose App it is."""
    hook = (f"<p>Webhooks will go to the relay channel <code>{escape(proxy_url)}</code> "
            "(PRMEDIC_WEBHOOK_PROXY_URL); this server reads them from there.</p>" if proxy_url else
            "<p>GitHub sends webhooks to this URL followed by <code>/api/github/webhooks</code>: it must be "
            "reachable from the internet.</p>")
    personal = "" if org else " checked"
    organisation = " checked" if org else ""
    return f"""{_problems(problems or [])}
<p>prmedic has no GitHub App yet. Register one on GitHub with the permissions and events prmedic
needs; the App's id, webhook secret and private key come back here, are saved beside
<code>.env</code>, and prmedic starts working without a restart.</p>
<form method="post" action="/">
<input type="hidden" name="token" value="{escape(token)}">
<label for="url">This server's public URL</label>
<input type="url" id="url" name="url" required value="{escape(public_url)}">
{hook}
<label for="name">App name (unique on GitHub)</label>
<input type="text" id="name" name="name" required maxlength="34" value="{escape(app_name)}">
<fieldset><legend>Owner of the App</legend>
<label><input type="radio" name="account" value="personal"{personal}> my personal account</label>
<label><input type="radio" name="account" value="organization"{organisation}> the organisation
<input type="text" name="org" value="{escape(org)}" placeholder="organisation login"></label>
</fieldset>
<button type="submit">Register the App on GitHub</button>
</form>"""


def locked() -> str:
    """The answer without the setup link's token: where the link is."""
    return """<p>This setup page opens only with the link <code>prmedic serve</code> printed when it started
(it ends in <code>/?token=…</code>). Find it in the server's log, e.g. <code>docker compose logs prmedic</code>
or <code>kubectl logs deploy/prmedic</code>.</p>"""


def manifest_form(*, action: str, manifest: dict[str, Any], auto_submit: bool = True) -> str:
    """The form GitHub's manifest flow needs: a POST from the browser with the manifest as JSON."""
    script = "<script>document.getElementById('manifest-form').submit()</script>" if auto_submit else ""
    permissions = ", ".join(f"{escape(k)}: {escape(str(v))}" for k, v in manifest.get("default_permissions", {}).items())
    events = ", ".join(escape(e) for e in manifest.get("default_events", []))
    return f"""<p>GitHub will show the App <strong>{escape(manifest.get('name', ''))}</strong> for you to confirm.</p>
<ul><li>Webhook URL: <code>{escape(manifest['hook_attributes']['url'])}</code></li>
<li>Permissions: {permissions}</li><li>Events: {events}</li></ul>
<form id="manifest-form" method="post" action="{escape(action)}">
<input type="hidden" name="manifest" value="{escape(json.dumps(manifest))}">
<button type="submit">Create the App on GitHub</button>
</form>{script}"""


def done(*, slug: str, app_id: int, install_url: str, written: list[str]) -> str:
    files = "".join(f"<li><code>{escape(line)}</code></li>" for line in written)
    return f"""<p>The GitHub App <strong>{escape(slug)}</strong> (id {app_id}) is registered and prmedic
now accepts its webhooks.</p>
<ul>{files}</ul>
<p><a href="{escape(install_url)}">Install it on your repositories</a> to start.</p>
<p>Set <code>ANTHROPIC_API_KEY</code> in <code>.env</code> too if it is not set yet, and check everything
with <code>prmedic doctor</code>.</p>"""


def stopped(problems: list[str], *, lines: list[str] | None = None, next_step: str = "") -> str:
    manual = ""
    if lines:
        manual = ("<p>Put these lines in <code>.env</code> yourself (the webhook secret is shown once):</p><pre>"
                  + escape("\n".join(lines)) + "</pre>")
    return f"{_problems(problems)}{manual}<p>{escape(next_step)}</p>"
