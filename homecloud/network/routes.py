"""The routes on the machine, read over netlink: what subnets are already in use."""

from __future__ import annotations

import socket
from ipaddress import ip_network
from typing import Any

from homecloud.network.addresses import Route
from homecloud.network.netlink import rtnl

# Kernel route types worth knowing about; others (broadcast, anycast...) are shown by number.
_ROUTE_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 5: "multicast", 6: "blackhole",
                7: "unreachable", 8: "prohibit"}


def _route_from_message(message: Any, names: dict[int, str]) -> Route:
    family = message["family"]
    dst = message.get("dst") or ("0.0.0.0" if family == socket.AF_INET else "::")
    destination = ip_network(f"{dst}/{message['dst_len']}", strict=False)
    oif = message.get("oif")
    kind = _ROUTE_TYPES.get(message["type"], str(message["type"]))
    return Route(destination=destination, device=names.get(oif) if oif else None,
                 table=int(message.get("table")), kind=kind, protocol=int(message["proto"]))


def read_routes(netns: str | None = None) -> list[Route]:
    """Every IPv4 and IPv6 route in every table of this (or the named) network namespace."""
    with rtnl(netns) as ipr:
        names = {link["index"]: link.get("ifname") for link in ipr.get_links()}
        routes: list[Route] = []
        for family in (socket.AF_INET, socket.AF_INET6):
            routes.extend(_route_from_message(m, names)
                          for m in ipr.get_routes(family=family))
    return routes
