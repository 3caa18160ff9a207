import sqlite3

import pytest

from homecloud.agent import state
from homecloud.agent.state import Store
from homecloud.errors import HostError


def test_new_database_is_at_latest_schema_in_wal_mode(tmp_path):
    store = Store(tmp_path / "state.db")
    assert store.schema_version == len(state.MIGRATIONS)
    mode = store.query("PRAGMA journal_mode")[0][0]
    assert mode == "wal"
    tables = {r["name"] for r in store.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"images", "instances"} <= tables


def test_migrations_run_once_and_upgrade_old_databases(tmp_path, monkeypatch):
    path = tmp_path / "state.db"
    monkeypatch.setattr(state, "MIGRATIONS", state.MIGRATIONS[:1])
    Store(path).close()
    extra = "CREATE TABLE extra (x INTEGER);"
    monkeypatch.setattr(state, "MIGRATIONS", (*state.MIGRATIONS, extra))
    store = Store(path)
    assert store.schema_version == 2
    store.close()
    # Opening again does not re-run (a second CREATE TABLE would fail).
    assert Store(path).schema_version == 2


def test_failed_migration_leaves_schema_untouched(tmp_path, monkeypatch):
    path = tmp_path / "state.db"
    Store(path).close()
    before = len(state.MIGRATIONS)
    monkeypatch.setattr(state, "MIGRATIONS",
                        (*state.MIGRATIONS, "CREATE TABLE ok (x);\nCREATE TABLE broken (;"))
    with pytest.raises(sqlite3.OperationalError):
        Store(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == before
    assert not db.execute("SELECT 1 FROM sqlite_master WHERE name='ok'").fetchall()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "state.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=999")
    db.commit()
    db.close()
    with pytest.raises(HostError, match="newer than this homecloud"):
        Store(path)


def test_transaction_rolls_back_on_error(tmp_path):
    store = Store(tmp_path / "state.db")
    with pytest.raises(RuntimeError), store.transaction() as db:
        db.execute("INSERT INTO images VALUES ('a','images/a','x',0,0)")
        raise RuntimeError("boom")
    assert store.query("SELECT * FROM images") == []


def test_database_is_private_to_root(tmp_path):
    store = Store(tmp_path / "state.db")
    store.execute("INSERT INTO images VALUES ('a','images/a','x',0,0)")
    for suffix in ("", "-wal"):
        mode = (tmp_path / f"state.db{suffix}").stat().st_mode & 0o777
        assert mode == 0o600, f"state.db{suffix} is {oct(mode)}"
