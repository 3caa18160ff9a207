"""IPv4 leases: which instance holds which address of a bridge's subnet.

``next_free_address`` is the pure allocator. ``LeaseTable`` keeps leases in the state database
(table ``leases``, created by the migration in LEASES_DDL); the caller runs it inside the store's
``BEGIN IMMEDIATE`` transaction, which is the host-level lock that keeps two allocations apart.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Network

from homecloud.errors import Conflict

# Migration 1 of the network schema (records.py): shipped, so never edit it; migrate instead.
LEASES_DDL = """
CREATE TABLE leases (
    subnet      TEXT NOT NULL,       -- the bridge's IPv4 subnet, '10.83.12.0/24'
    address     TEXT NOT NULL,       -- '10.83.12.2'
    instance    TEXT NOT NULL,
    created     REAL NOT NULL,
    PRIMARY KEY (subnet, address),
    UNIQUE (subnet, instance)
);
"""


def next_free_address(subnet: IPv4Network, taken: Iterable[IPv4Address]) -> IPv4Address:
    """The lowest address of ``subnet`` that is not taken, the network, the broadcast address or
    the gateway (the first host address, which the bridge holds)."""
    used = set(taken)
    first = subnet.network_address + 2  # .0 is the network, .1 the gateway
    last = subnet.broadcast_address - 1
    address = first
    while address <= last:
        if address not in used:
            return address
        address += 1
    raise Conflict(f"no IPv4 address is left in {subnet} ({len(used)} in use): remove an "
                   "instance or configure a larger subnet")


class LeaseTable:
    """Leases in the ``leases`` table of an open SQLite connection."""

    # Another writer that slipped in between our read and our insert (only possible without the
    # store's BEGIN IMMEDIATE): try the next address.
    _RETRIES = 8

    def __init__(self, db: sqlite3.Connection, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    def get(self, subnet: IPv4Network, instance: str) -> IPv4Address | None:
        row = self._db.execute("SELECT address FROM leases WHERE subnet = ? AND instance = ?",
                               (str(subnet), instance)).fetchone()
        return IPv4Address(row[0]) if row else None

    def leases(self, subnet: IPv4Network) -> dict[str, IPv4Address]:
        """Instance name -> address, for every lease in ``subnet``."""
        rows = self._db.execute("SELECT instance, address FROM leases WHERE subnet = ? "
                                "ORDER BY instance", (str(subnet),))
        return {name: IPv4Address(address) for name, address in rows}

    def allocate(self, subnet: IPv4Network, instance: str) -> IPv4Address:
        """The instance's address in ``subnet``: its existing lease, or the next free one."""
        for _ in range(self._RETRIES):
            existing = self.get(subnet, instance)
            if existing is not None:
                return existing
            taken = self.leases(subnet).values()
            address = next_free_address(subnet, taken)
            try:
                with _savepoint(self._db):
                    self._db.execute("INSERT INTO leases (subnet, address, instance, created) "
                                     "VALUES (?, ?, ?, ?)",
                                     (str(subnet), str(address), instance, self._clock()))
                return address
            except sqlite3.IntegrityError:
                continue
        raise Conflict(f"could not lease an address in {subnet} for {instance}: too many "
                       "concurrent allocations, try again")

    def release(self, instance: str) -> int:
        """Drop every lease of ``instance``; returns how many there were."""
        with _savepoint(self._db):
            return self._db.execute("DELETE FROM leases WHERE instance = ?",
                                    (instance,)).rowcount


@contextmanager
def _savepoint(db: sqlite3.Connection) -> Iterator[None]:
    """A savepoint: nests inside the caller's transaction, or is one when there is none."""
    db.execute("SAVEPOINT lease")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK TO lease")
        db.execute("RELEASE lease")
        raise
    db.execute("RELEASE lease")
