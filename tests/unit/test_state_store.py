import sqlite3

import pytest

from homecloud.errors import HostError
from homecloud.images.catalog import SCHEMA as IMAGES
from homecloud.state.store import COMPONENT_VERSIONS, Schema, Store

THINGS = Schema("things", ("CREATE TABLE things (x INTEGER);",))


def test_new_database_has_each_required_schema_at_its_latest_in_wal_mode(tmp_path):
    store = Store(tmp_path / "state.db", [IMAGES, THINGS])
    assert store.version("images") == len(IMAGES.migrations)
    assert store.version("things") == 1
    mode = store.query("PRAGMA journal_mode")[0][0]
    assert mode == "wal"
    tables = {r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"images", "things"} <= tables


def test_migrations_run_once_and_upgrade_old_databases(tmp_path):
    path = tmp_path / "state.db"
    Store(path, [THINGS]).close()
    extra = Schema("things", (*THINGS.migrations, "CREATE TABLE extra (x INTEGER);"))
    store = Store(path, [extra])
    assert store.version("things") == 2
    store.close()
    # Opening again does not re-run (a second CREATE TABLE would fail).
    assert Store(path, [extra]).version("things") == 2


def test_failed_migration_leaves_schema_untouched(tmp_path):
    path = tmp_path / "state.db"
    Store(path, [THINGS]).close()
    broken = Schema("things", (*THINGS.migrations, "CREATE TABLE ok (x);\nCREATE TABLE broken (;"))
    with pytest.raises(sqlite3.OperationalError):
        Store(path, [broken])
    store = Store(path)
    assert store.version("things") == 1
    assert not store.query("SELECT 1 FROM sqlite_master WHERE name='ok'")


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "state.db"
    Store(path, [THINGS]).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_versions SET version = 999 WHERE component = 'things'")
    db.commit()
    db.close()
    with pytest.raises(HostError, match="newer than this homecloud"):
        Store(path, [THINGS])


def test_unknown_legacy_schema_is_refused(tmp_path):
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=999")
    db.commit()
    db.close()
    with pytest.raises(HostError, match="newer than this homecloud"):
        Store(path)


def test_a_database_from_before_component_versions_is_adopted(tmp_path):
    """Version 3 of the single migration list had made the images, instances and network
    tables: their components start from there, and nothing is made twice."""
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE images (name TEXT PRIMARY KEY, dataset TEXT NOT NULL, "
                     "source TEXT NOT NULL, created REAL NOT NULL, size_bytes INTEGER);"
                     "PRAGMA user_version=3;")
    db.close()
    store = Store(path, [IMAGES])
    assert store.version("images") == 1
    assert store.version("instances") == 2
    assert store.version("network") == 1
    assert store.query("PRAGMA user_version")[0][0] == COMPONENT_VERSIONS


def test_transaction_rolls_back_on_error(tmp_path):
    store = Store(tmp_path / "state.db", [IMAGES])
    with pytest.raises(RuntimeError), store.transaction() as db:
        db.execute("INSERT INTO images VALUES ('a','images/a','x',0,0)")
        raise RuntimeError("boom")
    assert store.query("SELECT * FROM images") == []


def test_database_is_private_to_root(tmp_path):
    store = Store(tmp_path / "state.db", [IMAGES])
    store.execute("INSERT INTO images VALUES ('a','images/a','x',0,0)")
    for suffix in ("", "-wal"):
        mode = (tmp_path / f"state.db{suffix}").stat().st_mode & 0o777
        assert mode == 0o600, f"state.db{suffix} is {oct(mode)}"
