"""Neighbour caches when an instance's address moves to a new link.

A re-created instance gets the same addresses (its IPv4 lease back, its IPv6 derived from its
name) on a new veth with a new MAC. Every cache that still maps those addresses to the old MAC
(the host's, on the bridge, and each other instance's) keeps sending to a MAC nobody has; the
kernel finds out only when the entry expires, about 10 s later. So, once the new link is
plumbed:

- the host's entries for the addresses on the bridge are deleted (deterministic: the next
  packet asks afresh);
- the instance announces its addresses from its own namespace: a gratuitous ARP request and
  an unsolicited neighbour advertisement with the override flag. Linux updates an entry it
  already has on either (no entry is created, so this adds nothing to idle caches).

The kernel's own announcements (``arp_notify``, ``ndisc_notify``) go out as the link comes up,
before the bridge port forwards, and are lost (measured), so these are sent once the port
forwards.
"""

from __future__ import annotations

import errno
import socket
import struct
import threading
import time
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from homecloud.network.namespaces import in_netns
from homecloud.network.netlink import rtnl

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARP_REQUEST = 1
ARPHRD_ETHER = 1
BROADCAST_MAC = b"\xff" * 6
ALL_NODES = "ff02::1"
ND_NEIGHBOR_ADVERT = 136
NA_FLAG_OVERRIDE = 0x20000000
ND_OPT_TARGET_LLADDR = 2
# Hosts drop neighbour discovery messages that crossed a router: the hop limit must be 255.
ND_HOP_LIMIT = 255
BR_STATE_FORWARDING = 3
# How long to wait for the bridge port to forward (the kernel enables it when it sees the
# carrier, a few ms after the link comes up).
PORT_WAIT = 0.5
PORT_POLL = 0.002

IPAddress = IPv4Address | IPv6Address


def gratuitous_arp(mac: bytes, address: IPv4Address) -> bytes:
    """An ARP request for ``address`` from ``address`` itself (the ARP payload; the link layer
    adds the Ethernet header)."""
    ip = address.packed
    return struct.pack("!HHBBH6s4s6s4s", ARPHRD_ETHER, ETH_P_IP, 6, 4, ARP_REQUEST,
                       mac, ip, b"\0" * 6, ip)


def unsolicited_advert(mac: bytes, address: IPv6Address) -> bytes:
    """A neighbour advertisement of ``address`` at ``mac``, overriding cached entries (the
    ICMPv6 message; the kernel fills in the checksum)."""
    return (struct.pack("!BBHI", ND_NEIGHBOR_ADVERT, 0, 0, NA_FLAG_OVERRIDE) + address.packed
            + struct.pack("!BB6s", ND_OPT_TARGET_LLADDR, 1, mac))


def refresh_neighbours(bridge: str, port: str, addresses: Sequence[IPAddress], *,
                       guest_netns: str, guest_link: str, netns: str | None = None) -> None:
    """After ``addresses`` moved to ``guest_link`` in ``guest_netns`` (its veth's host end
    ``port`` on ``bridge``): delete the host's stale entries for them, wait for the port to
    forward and announce them from the guest's side. ``netns``: the host's namespace (None:
    ours)."""
    with rtnl(netns) as ipr:
        forget_neighbours(ipr, bridge, addresses)
        wait_port_forwarding(ipr, port)
    announce(guest_netns, guest_link, addresses)


def forget_neighbours(ipr: Any, bridge: str, addresses: Sequence[IPAddress]) -> int:
    """Delete the neighbour entries for ``addresses`` on ``bridge``; how many there were."""
    from pyroute2 import NetlinkError

    indexes = ipr.link_lookup(ifname=bridge)
    if not indexes:
        return 0
    forgotten = 0
    for address in addresses:
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        try:
            ipr.neigh("del", dst=str(address), ifindex=indexes[0], family=family)
        except NetlinkError as exc:
            if exc.code != errno.ENOENT:
                raise
        else:
            forgotten += 1
    return forgotten


def wait_port_forwarding(ipr: Any, port: str, timeout: float = PORT_WAIT) -> bool:
    """Wait until the bridge port ``port`` forwards; False if it did not within ``timeout``
    (the announcement is then sent anyway: it may still be heard)."""
    indexes = ipr.link_lookup(ifname=port)
    if not indexes:
        return False
    deadline = time.monotonic() + timeout
    while True:
        info = ipr.brport("show", index=indexes[0])[0].get_attr("IFLA_PROTINFO")
        if info is not None and info.get_attr("IFLA_BRPORT_STATE") == BR_STATE_FORWARDING:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(PORT_POLL)


def announce(netns: str, link: str, addresses: Sequence[IPAddress]) -> None:
    """Send, from ``link`` in the namespace ``netns``, a gratuitous ARP for each IPv4 address
    and an unsolicited neighbour advertisement for each IPv6 one."""
    def send() -> socket.socket:
        index = socket.if_nametoindex(link)
        # Protocol 0: a socket that receives nothing, so it hooks into no device (binding a
        # receiving one waits for an RCU grace period).
        arp = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        try:
            arp.bind((link, 0))
            mac = arp.getsockname()[4]
            for address in addresses:
                if isinstance(address, IPv4Address):
                    arp.sendto(gratuitous_arp(mac, address),
                               (link, ETH_P_ARP, 0, 0, BROADCAST_MAC))
            with socket.socket(socket.AF_INET6, socket.SOCK_RAW,
                               socket.IPPROTO_ICMPV6) as icmp:
                icmp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ND_HOP_LIMIT)
                icmp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
                for address in addresses:
                    if isinstance(address, IPv6Address):
                        icmp.sendto(unsolicited_advert(mac, address), (ALL_NODES, 0, 0, index))
        except BaseException:
            arp.close()
            raise
        return arp

    arp = in_netns(netns, send)
    # Closing a packet socket waits for an RCU grace period (8-20 ms measured): not on the
    # path of `hc run`.
    threading.Thread(target=arp.close, name="close-arp-socket", daemon=True).start()
