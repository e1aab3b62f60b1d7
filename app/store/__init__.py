"""The store: what prmedic keeps durably (deliveries, jobs, installations, sessions, reviews, fixes).

`Store` (in `base`) is the interface every backend implements; `open_store` picks the backend
from the database URL (docs/architecture.md, "The store").
"""

from app.store.base import SchemaTooNew, Store, StopListener, StoreUnavailable
from app.store.models import (
    Delivery,
    FixProposal,
    Installation,
    InstallationChange,
    Job,
    JobKind,
    JobState,
    NewJob,
    PullReviewState,
    RecordResult,
    SessionRecord,
    ToolCallRecord,
)
from app.store.sqlite import SQLiteStore

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(database_url: str, *, pool_size: int = 10) -> Store:
    """The store a database URL names (not opened yet): `sqlite:///path` (or `sqlite:///:memory:`), or
    `postgresql://user:password@host:port/database` (also `postgres://`) with a pool of `pool_size`
    connections."""
    if database_url.startswith("sqlite:///"):
        return SQLiteStore(database_url.removeprefix("sqlite:///"))
    if database_url.startswith(POSTGRES_SCHEMES):
        # asyncpg is imported only by those who use it
        from app.store.postgres import PostgresStore

        return PostgresStore(database_url, pool_size=pool_size)
    raise ValueError(f"unsupported database URL: {database_url.split(':', 1)[0]}")


__all__ = [
    "POSTGRES_SCHEMES", "Delivery", "FixProposal", "Installation", "InstallationChange", "Job", "JobKind", "JobState",
    "NewJob", "PullReviewState", "RecordResult", "SQLiteStore", "SchemaTooNew", "SessionRecord", "StopListener",
    "Store", "StoreUnavailable", "ToolCallRecord", "open_store",
]
