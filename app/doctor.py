"""`prmedic doctor`: checks the settings and the database, and reaches GitHub and Anthropic, in words."""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from gidgethub import BadRequest, GitHubException
from yarl import URL

from app.errors import NetworkProblem, describe, network_problem
from app.github import GitHubApp
from app.settings import Settings
from app.store import StoreUnavailable, open_store
from app.store.base import SchemaTooNew

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


def shown_database_url(url: str) -> str:
    """The database URL as the doctor prints it: the password (in the address or the query) left out."""
    if not is_postgres(url):
        return url
    parts = urllib.parse.urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if at and ":" in userinfo:
        parts = parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{host}")
    return urllib.parse.urlunsplit(parts._replace(query=re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)))


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


@dataclass(frozen=True)
class PostgresGrants:
    """What the database user may do where prmedic keeps its tables (its search path's first schema)."""

    user: str
    schema: str | None
    can_create: bool  # CREATE on the schema: needed by every schema upgrade (a new table or index)
    not_owned: tuple[str, ...]  # tables there owned by a role the user is not in: ALTER TABLE would fail
    schema_version: int | None  # None: prmedic's tables are not there yet (or cannot be read)
    max_connections: int
    unreadable: str | None = None  # why the schema version could not be read (the server's words)


GRANTS_QUERY = """
SELECT current_user::text AS "user", current_schema()::text AS schema,
       coalesce(has_schema_privilege(current_schema(), 'CREATE'), false) AS can_create,
       array(SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
               AND NOT pg_has_role(current_user, c.relowner, 'USAGE') ORDER BY 1) AS not_owned,
       to_regclass('schema_migrations') IS NOT NULL AS versioned,
       current_setting('max_connections')::int AS max_connections
"""


async def postgres_grants(url: str, timeout: float = 10.0) -> PostgresGrants:
    """Connect once, outside the store (which would upgrade the schema on opening), and read the grants
    and the schema version. Raises StoreUnavailable, with the driver's words, if the server cannot be
    reached or refuses the user."""
    import asyncpg

    try:
        conn = await asyncpg.connect(url, timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreUnavailable(describe(exc)) from exc
    version, unreadable = None, None
    try:
        row = await conn.fetchrow(GRANTS_QUERY)
        if row["versioned"]:
            try:
                version = await conn.fetchval("SELECT max(version) FROM schema_migrations")
            except asyncpg.InsufficientPrivilegeError as exc:
                unreadable = str(exc)
    except asyncpg.PostgresError as exc:
        raise StoreUnavailable(describe(exc)) from exc
    finally:
        await conn.close()
    return PostgresGrants(user=row["user"], schema=row["schema"], can_create=row["can_create"],
                          not_owned=tuple(row["not_owned"]), schema_version=version,
                          max_connections=row["max_connections"], unreadable=unreadable)


def grant_problems(grants: PostgresGrants) -> list[str]:
    """What would stop this user from creating or upgrading prmedic's tables, with the statement that fixes it."""
    if grants.schema is None:
        return [(f"the search path of {grants.user} names no schema that exists: create one it owns "
                 f"(CREATE SCHEMA prmedic AUTHORIZATION {grants.user}) or set search_path")]
    problems = []
    if not grants.can_create:
        problems.append(f"{grants.user} may not create tables in schema {grants.schema}, which every schema upgrade "
                        f"needs: GRANT CREATE ON SCHEMA {grants.schema} TO {grants.user}")
    if grants.not_owned:
        problems.append(f"{grants.user} does not own {', '.join(grants.not_owned)} in schema {grants.schema}, so an "
                        f"upgrade could not alter them: ALTER TABLE … OWNER TO {grants.user}")
    return problems


def schema_words(found: int | None, known: int) -> tuple[bool, str]:
    """Whether the database's schema version works with this prmedic (which knows up to `known`), in words."""
    if found is None:
        return True, f"no prmedic tables yet: they are created (version {known}) when prmedic starts"
    if found > known:
        return False, (f"schema version {found} is newer than this prmedic knows ({known}): a newer prmedic "
                       "upgraded it; run that version or a later one")
    if found < known:
        return True, f"schema version {found}: this prmedic upgrades it to {known} when it starts"
    return True, f"schema version {found}, this prmedic's"


async def check_database(settings: Settings, check: Callable[..., None]) -> None:
    """Reachable, schema version against the code's and, on PostgreSQL, the grants an upgrade needs. On
    PostgreSQL the doctor never upgrades the schema itself: it opens the store only when it is current."""
    url = settings.database_url
    where = shown_database_url(url)
    if is_postgres(url):
        from app.store.postgres.schema import SCHEMA_VERSION

        try:
            grants = await postgres_grants(url)
        except StoreUnavailable as exc:
            check(False, "database", f"cannot connect to {where} ({exc}); check PRMEDIC_DATABASE_URL, that the "
                  "server runs and accepts this user from here (pg_hba.conf), and the password")
            return
        fits, words = schema_words(grants.schema_version, SCHEMA_VERSION)
        if grants.unreadable:
            fits, words = False, (f"its schema version cannot be read ({grants.unreadable}): let {grants.user} "
                                  "own prmedic's tables, or run prmedic as their owner")
        problems = grant_problems(grants)
        check(fits, "database", f"PostgreSQL at {where}, reachable as {grants.user}, {words}; "
              f"server allows {grants.max_connections} connections, each replica uses up to "
              f"{settings.database_pool_size} + 1")
        check(not problems, "database permissions", "; ".join(problems) or
              f"{grants.user} may create and alter prmedic's tables in schema {grants.schema}")
        if not fits or grants.schema_version != SCHEMA_VERSION:
            return
    store = open_store(url)
    try:
        await store.open()
        await store.ping()
        counts = await store.count_jobs_by_state()
        queued = sum(n for (_, state), n in counts.items() if state == "queued")
        if is_postgres(url):
            check(True, "job store", f"opened, {queued} job(s) queued")
        else:
            version = store.describe().get("schema_version")
            check(True, "database", f"SQLite at {where}, reachable, schema version {version}, this prmedic's; "
                  f"{queued} job(s) queued")
    except SchemaTooNew as exc:
        check(False, "database", f"{where}: {schema_words(exc.found, exc.known)[1]}")
    except StoreUnavailable as exc:
        hint = "the server and the user" if is_postgres(url) else "the directory's permissions"
        check(False, "job store" if is_postgres(url) else "database",
              f"{where} cannot be opened ({exc}); check PRMEDIC_DATABASE_URL and {hint}")
    finally:
        await store.close()


async def run_doctor(settings: Settings, say: Callable[[str], None]) -> bool:
    ok = True

    def check(passed: bool, what: str, detail: str = "") -> None:
        nonlocal ok
        ok = ok and passed
        say(f"{'✓' if passed else '✗'} {what}{': ' + detail if detail else ''}")

    check(True, "settings", f"App {settings.app_id}, GitHub at {settings.github_api_url}, "
          f"store {shown_database_url(settings.database_url)}")
    await check_database(settings, check)

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
