"""The zone this host publishes through hc-dns, built from the network's plan and members: its
description (instances, published ports as SRV, reverse zones, child delegations, zones other
hosts serve), hc-dns's configuration, and its records as plain rows (what `hc dns ls` shows).

Pure: writing it for hc-dns is dns_publish.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dnslib import QTYPE, RR

from homecloud.dns.config import DnsConfig
from homecloud.dns.zone import (
    ChildHost,
    Forwarding,
    InstanceEntry,
    ServiceRecord,
    ZoneDescription,
    build_zones,
    reverse_zone_names,
)
from homecloud.network.peers import CHILD, PARENT, Peer
from homecloud.network.plan import NetworkPlan
from homecloud.network.records import Member

DNS_PORT = 53


def zone_description(plan: NetworkPlan, members: Sequence[Member],
                     serial: int = 1) -> ZoneDescription:
    """The host's zone: the bridge addresses at the apex, an entry per instance (SRV records
    for its published ports), the reverse zones of both subnets, the child delegations and
    the zones other hosts serve (the parent's, their reverse zones)."""
    names = plan.names
    return ZoneDescription(
        host=names.host, domain=names.domain, serial=serial,
        addresses=plan.gateways, subnets=(plan.subnet4, plan.subnet6),
        instances=tuple(InstanceEntry(
            m.name, m.addresses.ipv4, m.addresses.ipv6,
            tuple(ServiceRecord(p.protocol, p.host_port, p.guest_port) for p in m.ports))
            for m in members),
        children=tuple(ChildHost(p.name, p.servers) for p in names.peers if p.role == CHILD),
        forwards=tuple(peer_forwardings(names.peers)))


def peer_forwardings(peers: Sequence[Peer]) -> list[Forwarding]:
    """The zones peer hosts serve outside ours: the parent's, and their reverse zones."""
    forwards = []
    for peer in peers:
        if peer.role == PARENT:
            forwards.append(Forwarding(peer.zone, peer.servers))
        forwards.extend(Forwarding(zone, peer.servers)
                        for subnet in peer.subnets for zone in reverse_zone_names(subnet))
    return forwards


def dns_config(plan: NetworkPlan, members: Sequence[Member], port: int = DNS_PORT) -> DnsConfig:
    """hc-dns's configuration: listen on the bridge addresses, forward to the machine's
    resolvers."""
    return DnsConfig(zone=zone_description(plan, members),
                     listen=tuple(str(a) for a in plan.gateways), port=port)


def _row(zone: str, rr: RR) -> dict[str, Any]:
    return {"zone": zone, "name": str(rr.rname).rstrip("."), "type": QTYPE.get(rr.rtype),
            "ttl": rr.ttl, "data": str(rr.rdata).rstrip(".")}


def zone_records(description: ZoneDescription) -> list[dict[str, Any]]:
    """Every record of every zone the host serves (delegations as their NS and glue), the
    forward zone first, then the reverse zones."""
    rows: list[dict[str, Any]] = []
    zones = build_zones(description)
    for zone in sorted(zones.zones, key=lambda z: (z.apex != zones.origin, len(z.apex))):
        apex = ".".join(part.decode() for part in zone.apex)
        for records in zone.records.values():
            for rrs in records.values():
                rows.extend(_row(apex, rr) for rr in rrs)
        for delegation in zone.delegations.values():
            rows.extend(_row(apex, rr) for rr in (*delegation.ns, *delegation.glue))
    return rows
