"""Tell systemd-resolved, on hosts that run it, to ask hc-dns for our names.

The bridge's link in resolved gets the bridge's addresses (where hc-dns answers) as its DNS
servers, and as routing-only domains ``~<host>.<domain>`` and the reverse zones of the bridge's
subnets; it is never a default route, so every other name goes where it went before. The host
then resolves ``<instance>.<host>.<domain>`` (and instance addresses back to names) like any
other name, through nss-resolve or the stub on 127.0.0.53.

resolved forgets a link's settings when the link is made again (a new ifindex): the agent
registers each time it sets the bridge up (at start, and when it makes a vanished bridge again).
resolved keeps them across its own restarts (in /run/systemd/resolve/netif/, which its unit
preserves); only a resolved started for the first time after the agent (installed later, say)
needs `systemctl restart hcd`, which `hc doctor` says.

Where resolved does not run (its bus name has no owner), nothing is done: we do not want D-Bus
activation to start it. Nothing here fails the network set-up: errors are logged.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from homecloud.dns.zone import reverse_zone_names
from homecloud.errors import HomecloudError, HostError
from homecloud.network.dns_zone import peer_forwardings
from homecloud.network.plan import NetworkPlan
from homecloud.systemd.bus import SystemBus

log = logging.getLogger(__name__)

RESOLVE1 = b"org.freedesktop.resolve1"
RESOLVE1_PATH = b"/org/freedesktop/resolve1"
MANAGER_IFACE = b"org.freedesktop.resolve1.Manager"
LINK_IFACE = b"org.freedesktop.resolve1.Link"
DBUS = b"org.freedesktop.DBus"
DBUS_PATH = b"/org/freedesktop/DBus"

IPAddress = IPv4Address | IPv6Address
# One Manager method call: (method, D-Bus signature of its arguments, the arguments).
Call = tuple[bytes, bytes, list[Any]]


@dataclass(frozen=True)
class LinkDns:
    """What resolved should know of the bridge: where to ask, and for which names."""

    servers: tuple[IPAddress, ...]
    domains: tuple[str, ...]  # routing-only (resolved shows them as ~name)
    default_route: bool = False

    @classmethod
    def of(cls, plan: NetworkPlan) -> LinkDns:
        # Ours, then what hc-dns asks peer hosts for (the parent's zone, their reverse zones).
        zones = [plan.names.origin, *reverse_zone_names(plan.subnet4),
                 *reverse_zone_names(plan.subnet6)]
        zones += [forwarding.zone for forwarding in peer_forwardings(plan.names.peers)]
        return cls(servers=plan.gateways, domains=tuple(dict.fromkeys(zones)))

    def calls(self, ifindex: int) -> list[Call]:
        """The Manager calls that set the link up (org.freedesktop.resolve1(5))."""
        return [
            (b"SetLinkDNS", b"ia(iay)", [ifindex, dns_servers(self.servers)]),
            (b"SetLinkDomains", b"ia(sb)", [ifindex, routing_domains(self.domains)]),
            (b"SetLinkDefaultRoute", b"ib", [ifindex, self.default_route]),
            # Instances are named by hc-dns: no link-local name guessing on the bridge.
            (b"SetLinkLLMNR", b"is", [ifindex, b"no"]),
            (b"SetLinkMulticastDNS", b"is", [ifindex, b"no"]),
        ]

    def describe(self) -> str:
        return (f"DNS servers {' '.join(map(str, self.servers)) or 'none'}, domains "
                f"{' '.join('~' + d for d in self.domains) or 'none'}")

    def lacking(self, current: LinkDns) -> list[str]:
        """What ``current`` (resolved's settings of the link) lacks of these, as words."""
        lacks = [f"DNS server {s}" for s in self.servers if s not in current.servers]
        lacks += [f"domain ~{d}" for d in self.domains if d not in current.domains]
        if current.default_route != self.default_route:
            lacks.append(f"DefaultRoute={'yes' if self.default_route else 'no'}")
        return lacks


def dns_servers(addresses: tuple[IPAddress, ...]) -> list[tuple[int, bytes]]:
    """SetLinkDNS's ``a(iay)``: each address as its family and its raw bytes."""
    return [(socket.AF_INET if a.version == 4 else socket.AF_INET6, a.packed)
            for a in addresses]


def routing_domains(domains: tuple[str, ...]) -> list[tuple[bytes, bool]]:
    """SetLinkDomains's ``a(sb)``: true marks a routing-only domain (not a search domain)."""
    return [(domain.encode(), True) for domain in domains]


def parse_link(props: dict[bytes, Any]) -> LinkDns:
    """A resolve1 Link object's properties (DNS ``a(iay)``, Domains ``a(sb)``), as LinkDns;
    search domains are left out: they are not ours."""
    servers = tuple(ip_address(bytes(raw)) for _, raw in props.get(b"DNS", ()))
    domains = tuple(_text(name) for name, routing in props.get(b"Domains", ()) if routing)
    return LinkDns(servers, domains, bool(props.get(b"DefaultRoute", False)))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def resolved_running(bus: SystemBus) -> bool:
    """Whether resolved owns its bus name now (asking it directly would start it)."""
    from pystemd.dbuslib import apply_signature

    return bool(bus.call(DBUS_PATH, DBUS, b"NameHasOwner", apply_signature(b"s", [RESOLVE1]),
                         destination=DBUS))


def register_bridge(plan: NetworkPlan, bus: SystemBus | None) -> None:
    """Register the bridge with resolved, if it runs; never raises (resolved is a convenience
    of the host's own resolver: instances and hc-dns work without it)."""
    if bus is None:
        return
    try:
        if not resolved_running(bus):
            log.debug("network: systemd-resolved is not running: %s not registered with it",
                      plan.bridge)
            return
        wanted = LinkDns.of(plan)
        _apply(bus, wanted.calls(socket.if_nametoindex(plan.bridge)))
    except Exception as exc:  # a D-Bus or netlink error, whatever its type
        log.warning("network: cannot register %s with systemd-resolved (the host itself will "
                    "not resolve *.%s): %s", plan.bridge, plan.names.origin, exc)
        return
    log.info("network: systemd-resolved asks %s for *.%s", plan.bridge, plan.names.origin)


def _apply(bus: SystemBus, calls: list[Call]) -> None:
    from pystemd.dbuslib import apply_signature

    for method, signature, args in calls:
        bus.call(RESOLVE1_PATH, MANAGER_IFACE, method, apply_signature(signature, args),
                 destination=RESOLVE1)


def link_settings(bus: SystemBus, bridge: str) -> LinkDns:
    """What resolved has for the bridge now."""
    from pystemd.dbuslib import apply_signature

    path = bus.call(RESOLVE1_PATH, MANAGER_IFACE, b"GetLink",
                    apply_signature(b"i", [socket.if_nametoindex(bridge)]), destination=RESOLVE1)
    return parse_link(bus.get_all(bytes(path), LINK_IFACE, destination=RESOLVE1))


def registration_gaps(plan: NetworkPlan, bus: SystemBus) -> list[str] | None:
    """What resolved's settings of the bridge lack (nothing: registered), or None when resolved
    is not running; a one-line HostError when they cannot be read."""
    try:
        if not resolved_running(bus):
            return None
        return LinkDns.of(plan).lacking(link_settings(bus, plan.bridge))
    except HomecloudError:
        raise
    except Exception as exc:  # a D-Bus or netlink error, whatever its type
        raise HostError(f"cannot read systemd-resolved's settings of {plan.bridge}: "
                        f"{exc}") from exc
