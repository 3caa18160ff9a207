"""Desired state: a small SQLite database (WAL) under the state directory.

It records what the user asked for; the pool, systemd and the kernel say what is. The schema is
versioned with ``PRAGMA user_version`` and upgraded by the ordered MIGRATIONS below, each run once
in its own transaction. Add a migration; never edit one that has shipped.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from homecloud.network.leases import LEASES_DDL
from homecloud.network.published import PORTS_DDL
from homecloud.network.subnets import NETWORKS_DDL

MIGRATIONS: Sequence[str] = (
    # 1: images and the instances that use them.
    """
    CREATE TABLE images (
        name        TEXT PRIMARY KEY,
        dataset     TEXT NOT NULL,
        source      TEXT NOT NULL,       -- 'build:debian/bookworm' or 'import:/path'
        created     REAL NOT NULL,
        size_bytes  INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE instances (
        name        TEXT PRIMARY KEY,
        image       TEXT NOT NULL REFERENCES images(name),
        kind        TEXT NOT NULL,       -- 'container' or 'vm'
        spec        TEXT NOT NULL,       -- JSON of what the user asked for
        created     REAL NOT NULL
    );
    """,
    # 2: instance creation is crash-consistent: a row is written first with phase 'creating'
    # ('removing' while it goes), so reconcile can tell half-made work from finished work.
    # machine_id is the guest's /etc/machine-id (nspawn --uuid=, journal directory).
    """
    ALTER TABLE instances ADD COLUMN phase TEXT NOT NULL DEFAULT 'ready';
    ALTER TABLE instances ADD COLUMN machine_id TEXT NOT NULL DEFAULT '';
    """,
    # 3: networking: the subnets chosen for each bridge (so they survive a restart), the IPv4
    # address each instance holds and the host ports it publishes (the primary key keeps a
    # host port to one instance).
    NETWORKS_DDL + LEASES_DDL + PORTS_DDL,
)


class Store:
    """One connection shared by the agent's threads, serialised by a lock.

    SQLite serialises writers anyway; one connection keeps transactions simple and the agent's
    write rate (a few rows per user action) is far below what that costs.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # What users asked for is root's business: SQLite gives the -wal/-shm files the mode
        # of the database file, so creating it 0600 covers all three.
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=10)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self.migrate()

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        with self._lock:
            current = self.schema_version
            if current > len(MIGRATIONS):
                from homecloud.errors import HostError

                raise HostError(f"state database {self.path} has schema {current}, newer than this "
                                f"homecloud knows ({len(MIGRATIONS)}); upgrade homecloud")
            for version in range(current + 1, len(MIGRATIONS) + 1):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _split_sql(MIGRATIONS[version - 1]):
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version={version}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement in its own transaction; returns the number of rows changed."""
        with self.transaction() as db:
            return db.execute(sql, params).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return [s for s in statements if s]
