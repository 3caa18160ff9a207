"""The IPv4 addresses of the interface machines boot on."""

from __future__ import annotations

from ipaddress import IPv4Interface

from homecloud.errors import UserError
from homecloud.network.netlink import rtnl


def ipv4_addresses(interface: str) -> list[IPv4Interface]:
    with rtnl() as ipr:
        links = ipr.link_lookup(ifname=interface)
        if not links:
            raise UserError(f"there is no interface {interface!r} on this host; see `ip link`")
        return [IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
                for a in ipr.get_addr(family=2, index=links[0])]
