"""First-run setup, as Probot users know it.

- `manifest`: the App manifest (from `deploy/app.yml`, shipped as `app/setup/app.yml`), the URLs
  it names and the GitHub page it is posted to.
- `conversion`: GitHub's redirect back carries a code; `POST /app-manifests/{code}/conversions`
  turns it into the App's id, slug, webhook secret and private key.
- `files`: those written where the settings are read (a 0600 key file, `.env` entries), never
  overwriting anything.
- `pages`: the small HTML pages; `flow`: the setup page of `prmedic serve` without App settings,
  which goes on in normal mode once the App exists; `register`: `prmedic register`, the same
  from a terminal.
- `proxy`: local development: deliveries from a smee.io-style channel (PRMEDIC_WEBHOOK_PROXY_URL)
  into the webhook intake.
"""
