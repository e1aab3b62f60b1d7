"""Throw-away PostgreSQL databases for the benchmarks: created empty, counted, dropped.

The server comes from `--postgres-url` or `PRMEDIC_BENCH_POSTGRES_URL` (default: the machine's own,
`postgresql://postgres@127.0.0.1:5432/postgres`); the user must be allowed to create databases.
"""

from __future__ import annotations

import asyncio
import os
import urllib.parse
import uuid

DEFAULT_ADMIN_URL = os.environ.get("PRMEDIC_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def database_url(admin_url: str, name: str) -> str:
    """`admin_url` with its database replaced by `name`."""
    parts = urllib.parse.urlsplit(admin_url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def fresh_name(prefix: str = "prmedic_bench") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def _admin(admin_url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def create(admin_url: str, name: str) -> str:
    """An empty database `name` (dropped first if it exists); its URL."""
    asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'))
    return database_url(admin_url, name)


def drop(admin_url: str, name: str) -> None:
    asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def count_jobs(url: str) -> int:
    async def count() -> int:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval("SELECT count(*) FROM jobs")
        finally:
            await conn.close()

    return asyncio.run(count())
