"""Who may hold a TCP connection to the DNS server, so one client cannot shut TCP out for
everyone: at most ``per_client`` connections per client (an IPv4 address, or an IPv6 /64, what
one machine may hold), ``total`` in all; when all are taken, a newcomer with fewer connections
takes the longest-idle connection of the client holding the most.

Pure bookkeeping: the server tells it about connections, it says which to close.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv6Network, ip_address

MAX_TCP_CONNECTIONS = 128
MAX_TCP_PER_CLIENT = 16


def client_of(address: str) -> str:
    """The client a peer address counts against."""
    try:
        ip = ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(eq=False)
class Connection:
    """One TCP connection: idle between messages, busy while one arrives or is answered."""

    client: str
    close: Callable[[], None]
    idle_since: float | None = None  # None: busy

    def busy(self) -> None:
        self.idle_since = None

    def idle(self, now: float) -> None:
        self.idle_since = now


@dataclass
class TcpClients:
    total: int = MAX_TCP_CONNECTIONS
    per_client: int = MAX_TCP_PER_CLIENT
    _held: dict[str, list[Connection]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(held) for held in self._held.values())

    def held_by(self, client: str) -> int:
        return len(self._held.get(client, ()))

    def admit(self, connection: Connection) -> bool:
        """Take ``connection`` in (True), making room by closing another client's idle
        connection if need be; False: refuse it (then close it)."""
        mine = self.held_by(connection.client)
        if mine >= self.per_client:
            return False
        if self.count >= self.total:
            victim = self._evictable(mine)
            if victim is None:
                return False
            self.release(victim)
            victim.close()
        self._held.setdefault(connection.client, []).append(connection)
        return True

    def release(self, connection: Connection) -> None:
        """Forget ``connection`` (closed); forgetting it twice is harmless."""
        held = self._held.get(connection.client)
        if held is None or connection not in held:
            return
        held.remove(connection)
        if not held:
            del self._held[connection.client]

    def _evictable(self, newcomer_holds: int) -> Connection | None:
        """The longest-idle connection of the client holding the most, if it holds more than
        the newcomer would."""
        biggest = max(self._held.values(), key=len, default=[])
        if len(biggest) <= newcomer_holds + 1:
            return None
        idle = [c for c in biggest if c.idle_since is not None]
        return min(idle, key=lambda c: c.idle_since or 0.0, default=None)
