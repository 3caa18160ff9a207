"""Published ports in the state database: which instance holds which host port.

The table's primary key (protocol, host port) keeps a host port to one instance even if two
creations race; ``PortTable`` runs inside the caller's ``Store.transaction()``, like LeaseTable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from homecloud.network.ports import PortMapping, check_not_published, check_unique

# Migration 1 of the network schema (records.py): shipped, so never edit it; migrate instead.
PORTS_DDL = """
CREATE TABLE ports (
    protocol    TEXT NOT NULL,       -- 'tcp' or 'udp'
    host_port   INTEGER NOT NULL,
    instance    TEXT NOT NULL,
    guest_port  INTEGER NOT NULL,
    PRIMARY KEY (protocol, host_port)
);
"""


class PortTable:
    """Published ports in the ``ports`` table of an open SQLite connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def published(self) -> dict[str, tuple[PortMapping, ...]]:
        """Instance name -> its published ports, for every instance that publishes any."""
        out: dict[str, list[PortMapping]] = {}
        rows = self._db.execute("SELECT instance, host_port, guest_port, protocol FROM ports "
                                "ORDER BY instance, protocol, host_port")
        for instance, host_port, guest_port, protocol in rows:
            out.setdefault(instance, []).append(PortMapping(host_port, guest_port, protocol))
        return {name: tuple(mappings) for name, mappings in out.items()}

    def of(self, instance: str) -> tuple[PortMapping, ...]:
        return self.published().get(instance, ())

    def publish(self, instance: str, mappings: Iterable[PortMapping]) -> None:
        """Record ``mappings`` for ``instance``; Conflict (naming the owner) for a host port
        another instance holds. The instance's earlier mappings are replaced."""
        wanted = list(mappings)
        check_unique(wanted)
        check_not_published(instance, wanted, self.published())
        self.withdraw(instance)
        self._db.executemany(
            "INSERT INTO ports (protocol, host_port, instance, guest_port) VALUES (?, ?, ?, ?)",
            [(m.protocol, m.host_port, instance, m.guest_port) for m in wanted])

    def withdraw(self, instance: str) -> int:
        """Drop every port of ``instance``; returns how many there were."""
        return self._db.execute("DELETE FROM ports WHERE instance = ?", (instance,)).rowcount
