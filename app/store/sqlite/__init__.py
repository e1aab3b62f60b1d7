"""The embedded SQLite backend (WAL) with group commit for webhook intake.

One class, `SQLiteStore`, assembled from its table groups: `connection` (the connection, the
checkpointer and the group-commit writer of deliveries), `jobs` (the worker's side of the jobs
table, with the supersede rule of `supersede`), and `records` (installations, meta, sessions,
tool calls, reviews, fixes), and `retention` (`prune`). `schema` holds the tables, their versions and
the row conversions.
"""

from app.store.sqlite.jobs import JobTables
from app.store.sqlite.records import RecordTables
from app.store.sqlite.retention import Retention


class SQLiteStore(JobTables, RecordTables, Retention):
    """The `Store` interface on one SQLite database file (or `:memory:`)."""


__all__ = ["SQLiteStore"]
