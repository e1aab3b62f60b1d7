"""The SQLite backend's schema versions (the store contract runs in tests/test_store_contract.py)."""

from __future__ import annotations

import sqlite3

import pytest

from app.store import SchemaTooNew, StoreUnavailable, open_store
from app.store.sqlite.schema import SCHEMA_V1, SCHEMA_VERSION


async def test_a_store_made_before_schema_versions_is_adopted_with_its_rows(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_V1)
    db.execute("INSERT INTO meta (key, value) VALUES ('app_slug', 'prmedic')")
    db.commit()
    db.close()
    store = open_store(f"sqlite:///{path}")
    await store.open()
    try:
        assert await store.get_meta("app_slug") == "prmedic"
        assert store.describe()["schema_version"] == SCHEMA_VERSION
    finally:
        await store.close()
    db = sqlite3.connect(path)
    assert [r[0] for r in db.execute("SELECT version FROM schema_migrations ORDER BY 1")] == list(
        range(1, SCHEMA_VERSION + 1))
    db.close()


async def test_a_store_upgraded_by_a_newer_prmedic_stops_start_up_naming_both_versions(tmp_path):
    path = tmp_path / "newer.db"
    store = open_store(f"sqlite:///{path}")
    await store.open()
    await store.close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(SchemaTooNew, match=f"version {SCHEMA_VERSION + 1}, but this prmedic knows versions up to "
                                           f"{SCHEMA_VERSION}") as refused:
        await open_store(f"sqlite:///{path}").open()
    assert isinstance(refused.value, StoreUnavailable)
