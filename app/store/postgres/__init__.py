"""The PostgreSQL backend (asyncpg), for several replicas sharing one database.

One class, `PostgresStore`, assembled from its table groups as the SQLite backend is: `connection`
(the pool, the schema upgrade at `open()`, group commit of deliveries, the named lock), `notify`
(LISTEN/NOTIFY wake-ups across replicas), `jobs` (claiming with `FOR UPDATE SKIP LOCKED`, with the
supersede rule of `supersede`), `records` (installations, meta, sessions, tool calls, reviews,
fixes) and `retention` (`prune`). `schema` holds the tables, their versions and the row conversions.
"""

from app.store.postgres.jobs import JobTables
from app.store.postgres.records import RecordTables
from app.store.postgres.retention import Retention


class PostgresStore(JobTables, RecordTables, Retention):
    """The `Store` interface on one PostgreSQL database, shared by any number of processes."""


__all__ = ["PostgresStore"]
