"""`prmedic doctor`: checks the settings and reaches GitHub and Anthropic, in words."""

from __future__ import annotations

import os
from collections.abc import Callable

from gidgethub import BadRequest, GitHubException
from yarl import URL

from app.errors import NetworkProblem, describe, network_problem
from app.github import GitHubApp
from app.settings import Settings
from app.store import StoreUnavailable, open_store

REQUIRED_PERMISSIONS = {
    "checks": "write",
    "contents": "write",
    "pull_requests": "write",
    "issues": "read",  # the issue_comment event; PR comments are written through pull_requests
    "actions": "read",
    "metadata": "read",
}
REQUIRED_EVENTS = ("pull_request", "check_run", "workflow_run", "issue_comment", "pull_request_review_comment")
LEVEL = {"none": 0, "read": 1, "write": 2, "admin": 3}


def permission_problems(permissions: dict[str, str], events: list[str]) -> list[str]:
    problems = []
    for name, needed in REQUIRED_PERMISSIONS.items():
        have = permissions.get(name, "none")
        if LEVEL.get(have, 0) < LEVEL[needed]:
            problems.append(f"permission {name} is {have!r}, needs {needed!r}")
    for event in REQUIRED_EVENTS:
        if event not in events:
            problems.append(f"not subscribed to the {event!r} event")
    return problems


def likely_cause(problem: NetworkProblem, url_setting: str) -> str:
    """What to check first for a connection that failed, by what failed."""
    hints: dict[str, str] = {
        "dns": f"check the host's spelling in {url_setting}, then this machine's DNS (a network that reaches "
               "the internet only through a proxy may not resolve outside names)",
        "refused": f"nothing accepts connections there: check the host and port in {url_setting}",
        "timeout": "no answer came: a firewall may drop the traffic, or this network needs a proxy",
        "tls": f"check that {url_setting} says https only if the server speaks TLS; a server with a private "
               "certificate authority needs SSL_CERT_FILE pointing at its CA bundle",
        "proxy": "check the proxy address in HTTPS_PROXY / HTTP_PROXY",
        "closed": f"something between here and the server (a proxy or firewall) cut the connection, or {url_setting} "
                  "points at a service that is not the API",
        "unreachable": "this machine has no route there: check its network connection",
    }
    return hints.get(problem.cause, f"check {url_setting} and this machine's network connection")


async def run_doctor(settings: Settings, say: Callable[[str], None]) -> bool:
    ok = True

    def check(passed: bool, what: str, detail: str = "") -> None:
        nonlocal ok
        ok = ok and passed
        say(f"{'✓' if passed else '✗'} {what}{': ' + detail if detail else ''}")

    check(True, "settings", f"App {settings.app_id}, GitHub at {settings.github_api_url}, store {settings.database_url}")

    store = open_store(settings.database_url)
    try:
        await store.open()
        await store.ping()
        counts = await store.count_jobs_by_state()
        queued = sum(n for (_, state), n in counts.items() if state == "queued")
        check(True, "job store", f"reachable, {queued} job(s) queued")
    except StoreUnavailable as exc:
        check(False, "job store", f"cannot be opened ({exc}); check PRMEDIC_DATABASE_URL and the directory's permissions")
    finally:
        await store.close()

    github = GitHubApp(app_id=settings.app_id, private_key=settings.private_key_pem,
                       base_url=settings.github_api_url, max_retry_wait=5)
    try:
        app_info = await github.app_client().getitem("/app")
    except BadRequest as exc:
        if exc.status_code == 404:
            check(False, "GitHub App", f"{settings.github_api_url}/app answered 404: this is not GitHub's REST API; "
                  "check PRMEDIC_GITHUB_API_URL (GitHub Enterprise Server: https://HOST/api/v3)")
        else:
            check(False, "GitHub App", f"GitHub refused the App's credentials ({exc.status_code.value} {exc}); "
                  "check PRMEDIC_APP_ID and that the private key belongs to this App")
    except (GitHubException, OSError) as exc:
        problem = network_problem(exc, URL(settings.github_api_url).host)
        if problem is None:
            check(False, "GitHub App", f"GET {settings.github_api_url}/app failed ({describe(exc)}); "
                  "check PRMEDIC_GITHUB_API_URL, or try again if GitHub is having trouble")
        else:
            check(False, "GitHub App", f"{problem}; {likely_cause(problem, 'PRMEDIC_GITHUB_API_URL')}")
    else:
        problems = permission_problems(app_info.get("permissions") or {}, app_info.get("events") or [])
        check(True, "GitHub App", f"{app_info.get('name')} (slug {app_info.get('slug')}), "
              f"{app_info.get('installations_count', '?')} installation(s)")
        check(not problems, "App permissions and events", "; ".join(problems) or "all present")
    finally:
        await github.close()

    if not (os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")):
        check(False, "Anthropic", "ANTHROPIC_API_KEY is not set")
        return ok
    import anthropic

    client = anthropic.AsyncAnthropic(max_retries=1, timeout=20)
    try:
        await client.beta.agents.list(limit=1)
    except anthropic.AuthenticationError:
        check(False, "Anthropic", "the API key was refused; check ANTHROPIC_API_KEY")
    except anthropic.PermissionDeniedError as exc:
        check(False, "Anthropic", f"the key cannot use Managed Agents ({exc.message})")
    except anthropic.APIConnectionError as exc:
        problem = network_problem(exc)
        assert problem is not None
        check(False, "Anthropic", f"{problem}; {likely_cause(problem, 'ANTHROPIC_BASE_URL')}")
    except anthropic.APIError as exc:
        check(False, "Anthropic", f"{client.base_url} failed ({describe(exc)})")
    else:
        check(True, "Anthropic", f"Managed Agents reachable at {client.base_url}")
    finally:
        await client.close()
    return ok
