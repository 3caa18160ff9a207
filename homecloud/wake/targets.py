"""Whom a connection the firewall sent to the wake listener was for, and when an awake
instance has been idle long enough. Pure: the instances come as the agent's API lists them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

Address = IPv4Address | IPv6Address


@dataclass(frozen=True)
class Target:
    """Where a woken connection goes: the instance and its address and guest port."""

    name: str
    address: Address
    port: int


@dataclass(frozen=True)
class IdleInstance:
    name: str
    idle: float  # seconds
    addresses: frozenset[Address]
    running: bool


def idle_instances(listing: Iterable[Mapping[str, Any]]) -> list[IdleInstance]:
    """The ``--idle`` instances of a `GET /v1/instances` answer that have an address."""
    out = []
    for item in listing:
        if item.get("idle") is None:
            continue
        addresses = frozenset(ip_address(a) for a in (item.get("ipv4"), item.get("ipv6")) if a)
        if addresses:
            out.append(IdleInstance(item["name"], float(item["idle"]), addresses,
                                    item.get("state") in ("running", "starting")))
    return out


def find_target(listing: Iterable[Mapping[str, Any]], address: Address, port: int
                ) -> Target | None:
    """The idle instance a connection to ``address``:``port`` (before our DNAT) was for: one
    of its own addresses (the same port in the guest), or a TCP port it publishes on the host
    (its guest port, on the instance's address of the same IP version)."""
    address = _unmapped(address)
    for item in listing:
        if item.get("idle") is None:
            continue
        own = {a: ip_address(a) for a in (item.get("ipv4"), item.get("ipv6")) if a}
        if address in own.values():
            return Target(item["name"], address, port)
        for text in item.get("ports", ()):
            host, _, rest = str(text).partition(":")
            guest, _, protocol = rest.partition("/")
            if protocol == "tcp" and int(host) == port:
                same = [a for a in own.values() if a.version == address.version]
                return Target(item["name"], same[0], int(guest)) if same else None
    return None


def _unmapped(address: Address) -> Address:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass
class IdleClock:
    """When each awake idle instance last had a connection open; who is due to sleep. Times
    are monotonic: the wall clock stepped by hand or by NTP must put nothing to sleep."""

    last_busy: dict[str, float] = field(default_factory=dict)

    def due(self, now: float, awake: Iterable[IdleInstance], busy: set[str]) -> list[str]:
        """Instances awake and idle for their whole idle time. One first seen awake starts its
        count now (just woken, or started by hand: it gets its full idle time)."""
        instances = {i.name: i for i in awake}
        seen = {}
        for instance in instances.values():
            last = now if instance.name in busy else self.last_busy.get(instance.name, now)
            seen[instance.name] = last
        self.last_busy = seen
        return sorted(name for name, last in seen.items()
                      if now - last >= instances[name].idle)
