"""Is another DHCP server answering on an interface? One DHCPDISCOVER, broadcast, and the
first DHCPOFFER to it (RFC 2131). Full-DHCP network boot is refused where one answers."""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from ipaddress import IPv4Address

from homecloud.errors import HostError

CLIENT_PORT, SERVER_PORT = 68, 67
MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER = 1, 2
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
# The probe's MACs: locally administered, "hc", then random; `hc provision status` leaves them
# out of the MACs the DHCP server ignored.
PROBE_MAC_PREFIX = "02:68:63:"


def discover_packet(xid: int, mac: bytes) -> bytes:
    # op=1 (request), htype=1 (Ethernet), hlen=6; flags: broadcast the answer to us.
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000,
                         b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, mac.ljust(16, b"\0"),
                         b"\0" * 64, b"\0" * 128)
    options = MAGIC + bytes([53, 1, DISCOVER, 255])
    return header + options


def offer_from(packet: bytes, xid: int) -> IPv4Address | None:
    """The offering server's address, if ``packet`` is an offer to our ``xid``."""
    if len(packet) < 240 or packet[0] != 2 or struct.unpack("!I", packet[4:8])[0] != xid:
        return None
    if packet[236:240] != MAGIC:
        return None
    options, server, kind = packet[240:], None, None
    i = 0
    while i < len(options) and options[i] != 255:
        code = options[i]
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(options):
            break
        length = options[i + 1]
        value = options[i + 2:i + 2 + length]
        if code == 53 and length == 1:
            kind = value[0]
        elif code == 54 and length == 4:
            server = IPv4Address(value)
        i += 2 + length
    if kind != OFFER:
        return None
    return server or IPv4Address(packet[20:24])


# Servers check an address is free (dnsmasq and ISC dhcpd ping it) before offering it: their
# first offer to a new MAC comes after about 3 s.
PROBE_TIMEOUT = 6.0


def other_dhcp_server(interface: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """The address of a DHCP server that offers an address on ``interface``, or None."""
    xid = int.from_bytes(os.urandom(4), "big")
    # A locally administered MAC of no machine: a server that offers to anyone answers it.
    mac = bytes.fromhex(PROBE_MAC_PREFIX.replace(":", "")) + os.urandom(3)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
        sock.bind(("", CLIENT_PORT))
    except OSError as exc:
        sock.close()
        raise HostError(f"cannot probe for DHCP servers on {interface}: {exc.strerror}") from None
    with sock:
        sock.sendto(discover_packet(xid, mac), ("255.255.255.255", SERVER_PORT))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            packet, _ = sock.recvfrom(4096)
            server = offer_from(packet, xid)
            if server is not None:
                return str(server)
    return None
