"""The routes to other homecloud hosts' instance subnets, kept in the kernel (main table).

Our routes carry their own protocol number, so they are found again without a record: each
sync replaces the wanted ones and deletes ours that are no longer wanted, leaving every other
route alone (`ip route show proto 104` lists them).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from homecloud.errors import HostError
from homecloud.network.netlink import rtnl
from homecloud.network.peers import PeerRoute

ROUTE_PROTOCOL = 104  # rtm_protocol: unused by iproute2's rt_protos; 'h' for homecloud
MAIN_TABLE = 254


RouteKey = tuple[int, str, int]  # family, destination address, prefix length


def _ours(ipr: Any) -> dict[RouteKey, Any]:
    found: dict[RouteKey, Any] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        for message in ipr.get_routes(family=family, table=MAIN_TABLE, proto=ROUTE_PROTOCOL):
            found[(int(family), message.get_attr("RTA_DST"), message["dst_len"])] = message
    return found


def sync_routes(wanted: Sequence[PeerRoute], netns: str | None = None) -> list[str]:
    """Make our routes (in ``netns``, None: ours) exactly ``wanted``; what changed, as lines
    for the log. A route the kernel refuses (a next hop on no link of this host) raises a
    one-line HostError naming it; the others are still made."""
    from pyroute2 import NetlinkError

    changes: list[str] = []
    failures: list[str] = []
    with rtnl(netns) as ipr:
        existing = _ours(ipr)
        keep: set[RouteKey] = set()
        for route in wanted:
            family = int(socket.AF_INET if route.destination.version == 4 else socket.AF_INET6)
            key = (family, str(route.destination.network_address), route.destination.prefixlen)
            old = existing.get(key)
            if old is not None and old.get_attr("RTA_GATEWAY") == str(route.gateway):
                keep.add(key)
                continue
            try:
                ipr.route("replace", family=family, dst=str(route.destination),
                          gateway=str(route.gateway), proto=ROUTE_PROTOCOL, table=MAIN_TABLE)
            except NetlinkError as exc:  # an older route there goes: it is not what is wanted
                failures.append(f"{route}: {exc.args[-1] if exc.args else exc}")
                continue
            keep.add(key)
            changes.append(f"route {route}")
        for key in existing.keys() - keep:
            family, dst, length = key
            try:
                ipr.route("del", family=family, dst=f"{dst}/{length}",
                          proto=ROUTE_PROTOCOL, table=MAIN_TABLE)
            except NetlinkError:
                continue  # gone already
            changes.append(f"removed route {dst}/{length}")
    if failures:
        raise HostError(f"cannot route to peer hosts: {'; '.join(failures)} (is the next hop "
                        "on a link of this host?)")
    return changes
