"""Other homecloud hosts this one is linked to: its children (hosts whose zones it delegates)
and its parent (the host whose zone is this host's domain).

Linking two hosts takes three things, all derived here from the configuration: routes to the
other host's instance subnets through its address on a shared link (routing.py installs them),
those subnets in the firewall's ``peers`` sets (their instances may open connections to ours,
and ours reach theirs unmasqueraded), and DNS: names and reverse zones the other host serves are
asked there (network/dns_zone.py). IPv6 needs no configuration: a host's /48 follows from its name.

Pure: nothing here touches the system.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)

from homecloud.config import NetworkConfig, PeerHostConfig
from homecloud.errors import UserError
from homecloud.names import dns_label
from homecloud.network.addresses import ula_prefix

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network
CHILD = "child"
PARENT = "parent"


@dataclass(frozen=True)
class Peer:
    """Another homecloud host, checked. ``subnets`` are routed through ``via`` (the listed ones
    and, with an IPv6 next hop, its /48)."""

    name: str
    role: str  # CHILD | PARENT
    zone: str  # what its DNS is authoritative for
    servers: tuple[IPAddress, ...]  # where its DNS answers
    via: tuple[IPAddress, ...] = ()
    subnets: tuple[Network, ...] = ()

    @property
    def where(self) -> str:
        return _where(self.name, self.role)

    def next_hop(self, subnet: Network) -> IPAddress | None:
        return next((a for a in self.via if a.version == subnet.version), None)


@dataclass(frozen=True)
class PeerRoute:
    destination: Network
    gateway: IPAddress
    peer: str

    def __str__(self) -> str:
        return f"{self.destination} via {self.gateway} ({self.peer})"


def _addresses(texts: Iterable[str], where: str) -> tuple[IPAddress, ...]:
    try:
        return tuple(ip_address(text) for text in texts)
    except ValueError as exc:
        raise UserError(f"{where}: {exc}") from None


def _networks(texts: Iterable[str], where: str) -> tuple[Network, ...]:
    try:
        return tuple(ip_network(text) for text in texts)
    except ValueError as exc:
        raise UserError(f"{where}: subnets: {exc}") from None


def _first_address(subnet: Network) -> IPAddress:
    """Where homecloud's DNS answers in a subnet it owns: the bridge, its first address."""
    return subnet.network_address + 1


def _where(name: str, role: str) -> str:
    """How the configuration names a peer, for error messages."""
    return f"network.children: {name}" if role == CHILD else "network.parent"


def _make_peer(config: PeerHostConfig, name: str, role: str, zone: str) -> Peer:
    where = _where(name, role)
    via = _addresses(config.via, f"{where}: via")
    listed = _networks(config.subnets, where)
    servers = _addresses(config.addresses, f"{where}: addresses")
    if not servers:
        servers = tuple(_first_address(s) for s in listed)
    if via:
        for subnet in listed:
            if not any(a.version == subnet.version for a in via):
                raise UserError(f"{where}: no IPv{subnet.version} address in 'via' to route "
                                f"{subnet} through")
    subnets = listed
    if any(a.version == 6 for a in via):  # its /48 follows from its name, unless listed
        prefix = ula_prefix(name)
        if not any(prefix.overlaps(s) for s in listed):
            subnets += (prefix,)
    return Peer(name, role, zone, servers, via, subnets)


def validate_peers(config: NetworkConfig, host: str, domain: str) -> tuple[Peer, ...]:
    """The configured children and parent, checked (``host`` and ``domain`` are this host's,
    already checked)."""
    origin = f"{host}.{domain}"
    peers: list[Peer] = []
    seen: set[str] = set()
    for child in config.children:
        name = dns_label(child.name or "", "network.children: name")
        if name in seen:
            raise UserError(f"network.children: {name} is listed twice")
        seen.add(name)
        peers.append(_make_peer(child, name, CHILD, f"{name}.{origin}"))
    if config.parent is not None:
        if "." not in domain:
            raise UserError(f"network.parent: this host's domain {domain!r} must be the "
                            "parent's zone (<parent>.<its domain>)")
        peers.append(_make_peer(config.parent, domain.split(".", 1)[0], PARENT, domain))
    return tuple(peers)


def check_overlaps(peers: Sequence[Peer], own: Sequence[Network]) -> None:
    """Refuse a peer subnet that overlaps this host's subnets or another peer's."""
    taken: list[tuple[Network, str]] = [(s, "this host's subnet") for s in own]
    for peer in peers:
        for subnet in peer.subnets:
            for other, whose in taken:
                if subnet.version == other.version and subnet.overlaps(other):
                    raise UserError(f"{peer.where}: subnet {subnet} overlaps {whose} {other}")
            taken.append((subnet, f"the subnet of {peer.name}"))


def check_instance_names(peers: Sequence[Peer], instances: Iterable[str]) -> None:
    """Refuse an instance named like a child host: both would be ``<name>.<our zone>``."""
    children = {p.name: p for p in peers if p.role == CHILD}
    for name in sorted(instances):
        child = children.get(name)
        if child is not None:
            raise UserError(f"instance name {name!r} is taken by a child host "
                            f"(network.children): {child.zone} is delegated to it; choose "
                            "another name")


def peer_routes(peers: Iterable[Peer]) -> list[PeerRoute]:
    """The routes to the peers' subnets, for those with a next hop."""
    routes = []
    for peer in peers:
        for subnet in peer.subnets:
            gateway = peer.next_hop(subnet)
            if gateway is not None:
                routes.append(PeerRoute(subnet, gateway, peer.name))
    return routes
