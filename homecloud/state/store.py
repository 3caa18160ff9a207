"""Desired state: a small SQLite database (WAL) under the state directory.

It records what the user asked for; the pool, systemd and the kernel say what is. The store
itself owns no table: each package that keeps state brings a ``Schema`` (its component name and
its ordered migrations) and asks the store to ``require`` it, so the store sits below every
package that uses it. Each component's version is kept in the ``schema_versions`` table; a
migration runs once, in its own transaction. Add a migration; never edit one that has shipped.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homecloud.errors import HostError


@dataclass(frozen=True)
class Schema:
    """A package's tables: ``migrations[i]`` brings the component from version i to i + 1."""

    component: str
    migrations: tuple[str, ...]


VERSIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_versions (
    component   TEXT PRIMARY KEY,
    version     INTEGER NOT NULL
);
"""
# Databases made before components had versions of their own counted one list of migrations in
# PRAGMA user_version: what each of those versions had made, per component.
LEGACY_VERSIONS: Mapping[int, Mapping[str, int]] = {
    1: {"images": 1, "instances": 1},
    2: {"images": 1, "instances": 2},
    3: {"images": 1, "instances": 2, "network": 1},
}
# Set once the versions are kept per component; a legacy reader would refuse it as newer.
COMPONENT_VERSIONS = 1000


class Store:
    """One connection shared by the agent's threads, serialised by a lock.

    SQLite serialises writers anyway; one connection keeps transactions simple and the agent's
    write rate (a few rows per user action) is far below what that costs.
    """

    def __init__(self, path: Path, schemas: Sequence[Schema] = ()) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # What users asked for is root's business: SQLite gives the -wal/-shm files the mode
        # of the database file, so creating it 0600 covers all three.
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.path = path
        self._lock = threading.RLock()
        self._required: set[str] = set()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None,
                                   timeout=10)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._adopt_legacy()
        for schema in schemas:
            self.require(schema)

    def _adopt_legacy(self) -> None:
        with self.transaction() as db:
            legacy = int(db.execute("PRAGMA user_version").fetchone()[0])
            if legacy == COMPONENT_VERSIONS:
                return
            if legacy and legacy not in LEGACY_VERSIONS:
                raise HostError(f"state database {self.path} has schema {legacy}, newer than "
                                "this homecloud knows; upgrade homecloud")
            db.execute(VERSIONS_DDL)
            for component, version in LEGACY_VERSIONS.get(legacy, {}).items():
                db.execute("INSERT INTO schema_versions VALUES (?, ?)", (component, version))
            db.execute(f"PRAGMA user_version={COMPONENT_VERSIONS}")

    def version(self, component: str) -> int:
        rows = self.query("SELECT version FROM schema_versions WHERE component = ?",
                          (component,))
        return int(rows[0][0]) if rows else 0

    def require(self, schema: Schema) -> None:
        """Bring ``schema``'s tables to its latest version (once per open store)."""
        with self._lock:
            if schema.component in self._required:
                return
            current = self.version(schema.component)
            if current > len(schema.migrations):
                raise HostError(f"state database {self.path} has {schema.component} schema "
                                f"{current}, newer than this homecloud knows "
                                f"({len(schema.migrations)}); upgrade homecloud")
            for version in range(current + 1, len(schema.migrations) + 1):
                with self.transaction() as db:
                    for statement in _split_sql(schema.migrations[version - 1]):
                        db.execute(statement)
                    db.execute("INSERT OR REPLACE INTO schema_versions VALUES (?, ?)",
                               (schema.component, version))
            self._required.add(schema.component)

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
