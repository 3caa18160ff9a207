"""Which addresses a bridge and its instances get.

IPv6 needs no coordination: the ULA /48 comes from the host name (RFC 4193: fd00::/8 + a 40-bit
global id, here a hash of the name instead of a timestamp), the /64 subnet id from the bridge name
and the interface id from the instance name, so anyone who knows the names knows the address.
IPv4 is a /24 from the private ranges that no route on the machine covers (or one the user sets);
addresses inside it are leases (see leases.py).

All pure: the routes are passed in (routes.py reads them from the kernel).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_network,
)

from homecloud.errors import UserError

ULA_PREFIX = IPv6Network("fd00::/8")
# RFC 1918, in the order we try them: 10/8 first, it has room for 65,536 /24s.
PRIVATE_RANGES_V4 = (
    IPv4Network("10.0.0.0/8"),
    IPv4Network("172.16.0.0/12"),
    IPv4Network("192.168.0.0/16"),
)
SUBNET_PREFIX_V4 = 24
# A user-set subnet: from a /8 down to a /29 (4 addresses for instances).
USER_PREFIX_RANGE_V4 = (8, 29)
# Interface ids that must not be derived (RFC 5453): the subnet-router anycast (::0), our
# gateway (::1), and the reserved subnet anycast range at the top.
_RESERVED_IID_LOW = (0, 1)
_RESERVED_IID_HIGH = 0xFDFF_FFFF_FFFF_FF80



@dataclass(frozen=True)
class Route:
    destination: IPv4Network | IPv6Network
    device: str | None = None
    table: int = 254
    kind: str = "unicast"
    protocol: int = 0  # who made it (rtm_protocol): homecloud's own are routing.ROUTE_PROTOCOL

    def __str__(self) -> str:
        text = str(self.destination)
        if self.kind != "unicast":
            text = f"{self.kind} {text}"
        if self.device:
            text += f" dev {self.device}"
        if self.table not in (254, 255):
            text += f" table {self.table}"
        return text


def _digest(domain: str, name: str) -> bytes:
    """A hash of ``name`` separated by purpose, so the bridge and host hashes never coincide."""
    return hashlib.sha256(f"homecloud/{domain}\0{name}".encode()).digest()


def ula_prefix(host_name: str) -> IPv6Network:
    """The host's ULA /48: fd00::/8 followed by 40 bits of a hash of the host name."""
    global_id = int.from_bytes(_digest("ula", host_name.lower())[:5], "big")
    value = (0xFD << 120) | (global_id << 80)
    return IPv6Network((value, 48))


def bridge_subnet6(host_prefix: IPv6Network, bridge: str) -> IPv6Network:
    """The /64 for ``bridge`` inside the host's /48: the 16-bit subnet id is a hash of its name."""
    if host_prefix.prefixlen != 48:
        raise ValueError(f"{host_prefix} is not a /48")
    subnet_id = int.from_bytes(_digest("subnet", bridge)[:2], "big")
    return IPv6Network((int(host_prefix.network_address) | (subnet_id << 64), 64))


def interface_id(instance: str) -> int:
    """The 64-bit interface id for ``instance``: a hash of its name, skipping reserved ids."""
    for attempt in range(1000):
        suffix = "" if attempt == 0 else f"\0{attempt}"
        iid = int.from_bytes(_digest("iid", instance + suffix)[:8], "big")
        if iid not in _RESERVED_IID_LOW and iid < _RESERVED_IID_HIGH:
            return iid
    raise AssertionError("unreachable: a thousand reserved hashes in a row")


def gateway6(subnet: IPv6Network) -> IPv6Address:
    """The bridge's own address in its /64 (::1): the instances' gateway and resolver."""
    return subnet.network_address + 1


def instance_address6(subnet: IPv6Network, instance: str) -> IPv6Address:
    if subnet.prefixlen != 64:
        raise ValueError(f"{subnet} is not a /64")
    return subnet.network_address + interface_id(instance)


def bridge_mac(bridge: str) -> str:
    """A fixed, locally administered MAC for the bridge. Left to itself, a Linux bridge takes
    the lowest MAC of its ports and changes it as instances come and go, which breaks the
    instances' neighbour entries for their gateway."""
    raw = bytearray(_digest("mac", bridge)[:6])
    raw[0] = (raw[0] & 0xFC) | 0x02  # unicast, locally administered
    return ":".join(f"{b:02x}" for b in raw)


def gateway4(subnet: IPv4Network) -> IPv4Address:
    """The bridge's own address: the first host address (.1 of a /24)."""
    return subnet.network_address + 1


def overlapping_route(subnet: IPv4Network | IPv6Network, routes: Iterable[Route],
                      ignore_device: str | None = None) -> Route | None:
    """The first route on the machine that covers any address of ``subnet``, if any.

    Default routes cover everything and say nothing about what is in use, so they are skipped;
    so are routes of ``ignore_device`` (our own bridge, when checking its current subnet).
    """
    for route in routes:
        if route.destination.version != subnet.version or route.destination.prefixlen == 0:
            continue
        if ignore_device is not None and route.device == ignore_device:
            continue
        if route.destination.overlaps(subnet):
            return route
    return None


def _candidate_subnets4(seed: str) -> Iterator[IPv4Network]:
    """Every /24 of the private ranges, starting in 10/8 at a place given by ``seed`` (the host
    name), so two homecloud hosts on one LAN are unlikely to pick the same one."""
    first = PRIVATE_RANGES_V4[0]
    count = 1 << (SUBNET_PREFIX_V4 - first.prefixlen)
    start = int.from_bytes(_digest("subnet4", seed)[:4], "big") % count
    base = int(first.network_address)
    for i in range(count):
        yield IPv4Network((base + ((start + i) % count << 8), SUBNET_PREFIX_V4))
    for network in PRIVATE_RANGES_V4[1:]:
        yield from network.subnets(new_prefix=SUBNET_PREFIX_V4)


def choose_subnet4(routes: Iterable[Route], seed: str,
                   ignore_device: str | None = None) -> IPv4Network:
    """A private /24 that no route on the machine covers."""
    routes = [r for r in routes if r.destination.version == 4]
    for candidate in _candidate_subnets4(seed):
        if overlapping_route(candidate, routes, ignore_device) is None:
            return candidate
    raise UserError("every private IPv4 /24 overlaps a route on this host; set network.subnet4 "
                    "in the configuration")


def parse_subnet4(text: str) -> IPv4Network:
    """A user-set IPv4 subnet such as ``10.42.0.0/24``: private, a network address, sized
    between a /8 and a /29."""
    try:
        network = ip_network(text, strict=True)
    except ValueError as exc:
        detail = "host bits are set" if "host bits" in str(exc) else "not an IPv4 network"
        raise UserError(f"subnet {text!r} is invalid ({detail}): use a network like "
                        "10.42.0.0/24") from None
    if not isinstance(network, IPv4Network):
        raise UserError(f"subnet {text!r} is not IPv4: use a network like 10.42.0.0/24")
    low, high = USER_PREFIX_RANGE_V4
    if not low <= network.prefixlen <= high:
        raise UserError(f"subnet {text} must be between a /{low} and a /{high}")
    if not any(network.subnet_of(r) for r in PRIVATE_RANGES_V4):
        raise UserError(f"subnet {text} is not private: use one inside 10.0.0.0/8, "
                        "172.16.0.0/12 or 192.168.0.0/16")
    return network


def validate_subnet4(text: str, routes: Iterable[Route],
                     ignore_device: str | None = None) -> IPv4Network:
    """Parse a user-set subnet and refuse one that overlaps a route already on the machine."""
    network = parse_subnet4(text)
    clash = overlapping_route(network, routes, ignore_device)
    if clash is not None:
        raise UserError(f"subnet {network} overlaps the route {clash} already on this host: "
                        "choose another subnet, or leave it unset to pick a free one")
    return network
