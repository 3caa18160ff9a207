"""The host's instance network once decided: bridge, subnets, names; and what follows from it
(gateways, an instance's addresses, its namespace). Pure: subnets.py decides the subnets,
service.py makes the plan real.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)

from homecloud.config import NetworkConfig
from homecloud.errors import UserError
from homecloud.names import dns_label
from homecloud.network.addresses import gateway4, gateway6, instance_address6
from homecloud.network.ifnames import validate_bridge_name
from homecloud.network.peers import Peer, validate_peers

MAX_DOMAIN = 200  # leaves room for <instance>.<host>. in a 253-character name
INSTANCE_NETNS_PREFIX = "hc-"  # /run/netns/hc-<instance>
GUEST_LINK = "eth0"


@dataclass(frozen=True)
class Names:
    """Who this host is in DNS: ``<instance>.<host>.<domain>``."""

    host: str
    domain: str
    peers: tuple[Peer, ...] = ()  # children and parent

    @property
    def origin(self) -> str:
        return f"{self.host}.{self.domain}"

    @property
    def peer_subnets(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """Every peer host's instance subnets."""
        return tuple(s for p in self.peers for s in p.subnets)


@dataclass(frozen=True)
class InstanceAddresses:
    ipv4: IPv4Address
    ipv6: IPv6Address


@dataclass(frozen=True)
class NetworkPlan:
    bridge: str
    subnet4: IPv4Network
    subnet6: IPv6Network
    names: Names

    @property
    def gateway4(self) -> IPv4Address:
        return gateway4(self.subnet4)

    @property
    def gateway6(self) -> IPv6Address:
        return gateway6(self.subnet6)

    @property
    def gateways(self) -> tuple[IPv4Address, IPv6Address]:
        """The bridge's addresses: the instances' gateways and resolvers."""
        return (self.gateway4, self.gateway6)

    @property
    def bridge_interfaces(self) -> list[IPv4Interface | IPv6Interface]:
        return [IPv4Interface(f"{self.gateway4}/{self.subnet4.prefixlen}"),
                IPv6Interface(f"{self.gateway6}/{self.subnet6.prefixlen}")]

    def addresses(self, instance: str, ipv4: IPv4Address) -> InstanceAddresses:
        """The instance's addresses, given its IPv4 lease (IPv6 follows from its name)."""
        return InstanceAddresses(ipv4, instance_address6(self.subnet6, instance))

    def guest_interfaces(self, addresses: InstanceAddresses) -> list[IPv4Interface | IPv6Interface]:
        return [IPv4Interface(f"{addresses.ipv4}/{self.subnet4.prefixlen}"),
                IPv6Interface(f"{addresses.ipv6}/{self.subnet6.prefixlen}")]

    def fqdn(self, instance: str) -> str:
        return f"{instance}.{self.names.origin}"


def instance_netns(instance: str) -> str:
    """The named network namespace of an instance (instance names fit: /run/netns has no
    15-character limit)."""
    return f"{INSTANCE_NETNS_PREFIX}{instance}"


def validate_names(config: NetworkConfig, machine_host_name: str) -> Names:
    """The DNS names of ``config`` and its peer hosts, checked; the host defaults to the
    machine's host name (its first label, as `hostname -s` shows it)."""
    host = dns_label(config.host_name or machine_host_name.split(".", 1)[0],
                     "network.host_name" if config.host_name else "this machine's host name")
    domain = config.domain.lower().strip(".")
    if not domain or len(domain) > MAX_DOMAIN:
        raise UserError(f"network.domain {config.domain!r} must have 1 to {MAX_DOMAIN} "
                        "characters")
    for part in domain.split("."):
        dns_label(part, f"network.domain {config.domain!r}: label")
    return Names(host=host, domain=domain, peers=validate_peers(config, host, domain))


def validate_bridge(config: NetworkConfig) -> str:
    """The configured bridge name, or a one-line UserError saying what is wrong with it."""
    try:
        return validate_bridge_name(config.bridge)
    except UserError as exc:
        raise UserError(f"network.bridge: {exc.message}") from None
