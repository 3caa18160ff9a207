"""The zones a host is authoritative for, built from a plain description of it.

A host ``alpha`` with domain ``home.arpa`` owns ``alpha.home.arpa``: the apex (SOA, NS, and the
host's addresses), ``<instance>.alpha.home.arpa`` (A, AAAA), ``_<service>._<proto>.<instance>...``
(SRV: where the host publishes that port), and delegations of ``<child>.alpha.home.arpa`` to child
hosts (NS + glue), whose own domain is ``alpha.home.arpa``. It also owns the reverse zones of its
subnets (PTR for the host and every instance). Zones other hosts serve that are not below ours
(the parent's zone, other hosts' reverse zones) are *forwardings*: questions in them are asked
there.

Pure: ``build_zones`` turns a ``ZoneDescription`` into lookup tables that answer.py reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import Any

from dnslib import AAAA, NS, PTR, QTYPE, RR, SOA, SRV, A, DNSLabel

from homecloud.errors import UserError

DEFAULT_DOMAIN = "home.arpa"
DEFAULT_TTL = 30
# SOA timers (refresh, retry, expire): nobody transfers our zones, but the fields must be sane.
SOA_TIMERS = (3600, 600, 86400)

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network
Key = tuple[bytes, ...]  # a name as lower-case labels, most specific first


def name_key(name: DNSLabel | str) -> Key:
    label = name if isinstance(name, DNSLabel) else DNSLabel(name)
    return tuple(part.lower() for part in label.label)


# -- the description (what the agent writes) ---------------------------------------------------

@dataclass(frozen=True)
class ServiceRecord:
    """A published port, as an SRV record: ``_<service>._<protocol>.<instance>`` -> host:port."""

    protocol: str  # tcp | udp
    host_port: int
    guest_port: int
    service: str | None = None  # e.g. "http"; the guest port number when unset

    @property
    def label(self) -> str:
        return f"_{self.service or self.guest_port}._{self.protocol}"


@dataclass(frozen=True)
class InstanceEntry:
    name: str
    ipv4: IPv4Address | None = None
    ipv6: IPv6Address | None = None
    services: tuple[ServiceRecord, ...] = ()


@dataclass(frozen=True)
class ChildHost:
    """A host whose zone ``<name>.<our zone>`` is delegated to it."""

    name: str
    addresses: tuple[IPAddress, ...]
    port: int = 53  # where its server answers; only tests use another


@dataclass(frozen=True)
class Forwarding:
    """A zone another homecloud host serves, outside ours: questions in it are asked there."""

    zone: str
    addresses: tuple[IPAddress, ...]
    port: int = 53

    @property
    def servers(self) -> tuple[tuple[str, int], ...]:
        return tuple((str(a), self.port) for a in self.addresses)


@dataclass(frozen=True)
class ZoneDescription:
    host: str
    domain: str = DEFAULT_DOMAIN
    addresses: tuple[IPAddress, ...] = ()  # the host's own: apex A/AAAA and NS glue
    subnets: tuple[Network, ...] = ()  # reverse zones we answer for
    instances: tuple[InstanceEntry, ...] = ()
    children: tuple[ChildHost, ...] = ()
    forwards: tuple[Forwarding, ...] = ()
    serial: int = 1
    ttl: int = DEFAULT_TTL

    @property
    def origin(self) -> str:
        return f"{self.host}.{self.domain}".lower().strip(".")

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host, "domain": self.domain, "serial": self.serial, "ttl": self.ttl,
            "addresses": [str(a) for a in self.addresses],
            "subnets": [str(s) for s in self.subnets],
            "instances": [{
                "name": i.name,
                "ipv4": str(i.ipv4) if i.ipv4 else None,
                "ipv6": str(i.ipv6) if i.ipv6 else None,
                "services": [{"protocol": s.protocol, "host_port": s.host_port,
                              "guest_port": s.guest_port, "service": s.service}
                             for s in i.services],
            } for i in self.instances],
            "children": [{"name": c.name, "addresses": [str(a) for a in c.addresses],
                          "port": c.port} for c in self.children],
            "forwards": [{"zone": f.zone, "addresses": [str(a) for a in f.addresses],
                          "port": f.port} for f in self.forwards],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ZoneDescription:
        """Read what ``to_json`` wrote; a wrong field raises a one-line UserError."""
        try:
            return cls(
                host=str(data["host"]),
                domain=str(data.get("domain", DEFAULT_DOMAIN)),
                serial=int(data.get("serial", 1)),
                ttl=int(data.get("ttl", DEFAULT_TTL)),
                addresses=tuple(ip_address(a) for a in data.get("addresses", ())),
                subnets=tuple(ip_network(s) for s in data.get("subnets", ())),
                instances=tuple(InstanceEntry(
                    name=str(i["name"]),
                    ipv4=IPv4Address(i["ipv4"]) if i.get("ipv4") else None,
                    ipv6=IPv6Address(i["ipv6"]) if i.get("ipv6") else None,
                    services=tuple(ServiceRecord(str(s["protocol"]), int(s["host_port"]),
                                                 int(s["guest_port"]), s.get("service"))
                                   for s in i.get("services", ())),
                ) for i in data.get("instances", ())),
                children=tuple(ChildHost(str(c["name"]),
                                         tuple(ip_address(a) for a in c["addresses"]),
                                         int(c.get("port", 53)))
                               for c in data.get("children", ())),
                forwards=tuple(Forwarding(str(f["zone"]),
                                          tuple(ip_address(a) for a in f["addresses"]),
                                          int(f.get("port", 53)))
                               for f in data.get("forwards", ())),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"invalid DNS zone description: {type(exc).__name__}: {exc}") from None


# -- the built zones ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Delegation:
    """A child zone cut: its NS records and the glue to reach them."""

    ns: tuple[RR, ...]
    glue: tuple[RR, ...]
    servers: tuple[tuple[str, int], ...]  # (address, port) to ask


@dataclass
class Zone:
    apex: Key
    soa: RR
    records: dict[Key, dict[int, list[RR]]] = field(default_factory=dict)
    empty_nonterminals: set[Key] = field(default_factory=set)
    delegations: dict[Key, Delegation] = field(default_factory=dict)

    def add(self, rr: RR) -> None:
        key = name_key(rr.rname)
        self.records.setdefault(key, {}).setdefault(rr.rtype, []).append(rr)
        for depth in range(1, len(key) - len(self.apex)):
            self.empty_nonterminals.add(key[depth:])

    def contains(self, key: Key) -> bool:
        return len(key) >= len(self.apex) and key[len(key) - len(self.apex):] == self.apex

    def delegation_for(self, key: Key) -> tuple[Key, Delegation] | None:
        """The child cut at or above ``key``, if any."""
        for depth in range(len(key) - len(self.apex)):
            cut = self.delegations.get(key[depth:])
            if cut is not None:
                return key[depth:], cut
        return None

    def addresses_of(self, key: Key) -> list[RR]:
        node = self.records.get(key, {})
        return node.get(QTYPE.A, []) + node.get(QTYPE.AAAA, [])

    @property
    def negative_ttl(self) -> int:
        return min(self.soa.ttl, self.soa.rdata.times[-1])


@dataclass
class Zones:
    """Every zone of the host, most specific apex first."""

    zones: list[Zone]
    origin: Key
    forwards: dict[Key, tuple[tuple[str, int], ...]] = field(default_factory=dict)

    def find(self, key: Key) -> Zone | None:
        for zone in self.zones:
            if zone.contains(key):
                return zone
        return None

    def forward_for(self, key: Key) -> tuple[tuple[str, int], ...] | None:
        """The servers of the most specific forwarded zone holding ``key``, if any."""
        for depth in range(len(key) + 1):
            servers = self.forwards.get(key[depth:])
            if servers is not None:
                return servers
        return None

    def addresses_of(self, key: Key) -> list[RR]:
        zone = self.find(key)
        return zone.addresses_of(key) if zone else []


def _address_rr(name: str, address: IPAddress, ttl: int) -> RR:
    if isinstance(address, IPv4Address):
        return RR(name, QTYPE.A, rdata=A(str(address)), ttl=ttl)
    return RR(name, QTYPE.AAAA, rdata=AAAA(str(address)), ttl=ttl)


def reverse_zone_names(network: Network) -> list[str]:
    """The reverse zones covering ``network``, on label boundaries (8 bits for IPv4, 4 for
    IPv6): a /24 is one zone, a /23 two, a /26 lives in its /24."""
    step = 8 if network.version == 4 else 4
    boundary = -(-network.prefixlen // step) * step  # round up to a label boundary
    if network.version == 4:
        boundary = max(8, min(boundary, 24))
    parts = boundary // step
    names = []
    for subnet in (network.subnets(new_prefix=boundary) if boundary >= network.prefixlen
                   else [network.supernet(new_prefix=boundary)]):
        labels = subnet.network_address.reverse_pointer.split(".")
        suffix = labels[-2:]  # in-addr.arpa / ip6.arpa
        names.append(".".join(labels[-2 - parts:-2] + suffix))
    return names


def _soa(apex: str, origin: str, description: ZoneDescription) -> RR:
    timers = (description.serial, *SOA_TIMERS, description.ttl)
    return RR(apex, QTYPE.SOA, rdata=SOA(origin, f"hostmaster.{origin}", timers),
              ttl=description.ttl)


def _new_zone(apex: str, description: ZoneDescription) -> Zone:
    origin = description.origin
    zone = Zone(apex=name_key(apex), soa=_soa(apex, origin, description))
    zone.add(zone.soa)
    zone.add(RR(apex, QTYPE.NS, rdata=NS(origin), ttl=description.ttl))
    return zone


def _check_labels(description: ZoneDescription) -> None:
    """Instance and child names are single labels, each used once."""
    seen: dict[str, str] = {}
    for what, name in ([("instance", i.name) for i in description.instances]
                       + [("child host", c.name) for c in description.children]):
        if not name or "." in name:
            raise UserError(f"{what} name {name!r} is not a single DNS label")
        if name.lower() in seen:
            raise UserError(f"{what} {name} has the name of another {seen[name.lower()]} in "
                            f"zone {description.origin}")
        seen[name.lower()] = what


def build_zones(description: ZoneDescription) -> Zones:
    """All of the host's zones, ready to answer from."""
    _check_labels(description)
    origin = description.origin
    ttl = description.ttl
    forward = _new_zone(origin, description)
    for address in description.addresses:
        forward.add(_address_rr(origin, address, ttl))
    reverse = [_new_zone(name, description)
               for subnet in description.subnets for name in reverse_zone_names(subnet)]
    zones = Zones(sorted([forward, *reverse], key=lambda z: -len(z.apex)), name_key(origin),
                  {name_key(f.zone): f.servers for f in description.forwards})

    def add_ptr(address: IPAddress, target: str) -> None:
        pointer = address.reverse_pointer
        zone = zones.find(name_key(pointer))
        if zone is not None:
            zone.add(RR(pointer, QTYPE.PTR, rdata=PTR(target), ttl=ttl))

    for address in description.addresses:
        add_ptr(address, origin)
    for instance in description.instances:
        fqdn = f"{instance.name}.{origin}"
        for ip in (instance.ipv4, instance.ipv6):
            if ip is not None:
                forward.add(_address_rr(fqdn, ip, ttl))
                add_ptr(ip, fqdn)
        for service in instance.services:
            forward.add(RR(f"{service.label}.{fqdn}", QTYPE.SRV,
                           rdata=SRV(0, 0, service.host_port, origin), ttl=ttl))
    for child in description.children:
        _delegate(forward, child, f"{child.name}.{origin}", ttl)
    return zones


def _delegate(zone: Zone, child: ChildHost, apex: str, ttl: int) -> None:
    ns = RR(apex, QTYPE.NS, rdata=NS(apex), ttl=ttl)
    glue = tuple(_address_rr(apex, address, ttl) for address in child.addresses)
    zone.delegations[name_key(apex)] = Delegation(
        ns=(ns,), glue=glue, servers=tuple((str(a), child.port) for a in child.addresses))
    # The cut's ancestors exist (as empty non-terminals) even though its records are the child's.
    key = name_key(apex)
    for depth in range(1, len(key) - len(zone.apex)):
        zone.empty_nonterminals.add(key[depth:])
