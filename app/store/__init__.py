"""The store: what prmedic keeps durably (deliveries, jobs, installations, sessions, reviews, fixes).

`Store` (in `base`) is the interface every backend implements; `open_store` picks the backend
from the database URL (docs/architecture.md, "The store").
"""

from app.store.base import Store, StopListener, StoreUnavailable
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


def open_store(database_url: str) -> Store:
    """The store a database URL names (not opened yet): `sqlite:///path` (or `sqlite:///:memory:`)."""
    if database_url.startswith("sqlite:///"):
        return SQLiteStore(database_url.removeprefix("sqlite:///"))
    raise ValueError(f"unsupported database URL: {database_url.split(':', 1)[0]}")


__all__ = [
    "Delivery", "FixProposal", "Installation", "InstallationChange", "Job", "JobKind", "JobState", "NewJob",
    "PullReviewState", "RecordResult", "SQLiteStore", "SessionRecord", "StopListener", "Store", "StoreUnavailable",
    "ToolCallRecord", "open_store",
]
