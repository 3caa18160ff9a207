"""The subnets of a bridge, decided once and kept in the state database (table ``networks``), so
instances keep their addresses across agent restarts and reboots.

IPv6 always follows from the names (addresses.py). IPv4 is the user's ``network.subnet4`` when
set (checked against the machine's routes, ignoring our own bridge's), else the subnet chosen
the first time, else a free private /24.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from homecloud.errors import UserError
from homecloud.network.addresses import (
    bridge_subnet6,
    choose_subnet4,
    ula_prefix,
    validate_subnet4,
)
from homecloud.network.routes import Route

# Migration 1 of the network schema (records.py): shipped, so never edit it; migrate instead.
NETWORKS_DDL = """
CREATE TABLE networks (
    bridge      TEXT PRIMARY KEY,
    subnet4     TEXT NOT NULL,       -- '10.83.12.0/24'
    subnet6     TEXT NOT NULL,       -- 'fd3c:1a2b:3c4d:9e1f::/64'
    created     REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Subnets:
    subnet4: IPv4Network
    subnet6: IPv6Network


class NetworkTable:
    """Rows of ``networks`` in an open SQLite connection (inside the caller's transaction)."""

    def __init__(self, db: sqlite3.Connection, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    def get(self, bridge: str) -> Subnets | None:
        row = self._db.execute("SELECT subnet4, subnet6 FROM networks WHERE bridge = ?",
                               (bridge,)).fetchone()
        return Subnets(IPv4Network(row[0]), IPv6Network(row[1])) if row else None

    def put(self, bridge: str, subnets: Subnets) -> None:
        self._db.execute(
            "INSERT INTO networks (bridge, subnet4, subnet6, created) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (bridge) DO UPDATE SET subnet4 = excluded.subnet4, "
            "subnet6 = excluded.subnet6",
            (bridge, str(subnets.subnet4), str(subnets.subnet6), self._clock()))


def decide_subnets(bridge: str, host: str, wanted4: str | None, stored: Subnets | None,
                   routes: Sequence[Route], leases_in: Callable[[IPv4Network], int]) -> Subnets:
    """The bridge's subnets. ``leases_in(subnet)`` counts the instances holding addresses in
    ``subnet``: a user-set subnet may replace the stored one only when that is zero."""
    subnet6 = bridge_subnet6(ula_prefix(host), bridge)
    if wanted4 is not None:
        try:
            subnet4 = validate_subnet4(wanted4, routes, ignore_device=bridge)
        except UserError as exc:
            raise UserError(f"network.subnet4: {exc.message}") from None
        if stored is not None and stored.subnet4 != subnet4:
            holders = leases_in(stored.subnet4)
            if holders:
                raise UserError(f"network.subnet4 changed from {stored.subnet4} to {subnet4}, "
                                f"but {holders} instance(s) hold addresses in "
                                f"{stored.subnet4}: remove them first, or set subnet4 back")
    elif stored is not None:
        subnet4 = stored.subnet4
    else:
        subnet4 = choose_subnet4(routes, host, ignore_device=bridge)
    return Subnets(subnet4, subnet6)
