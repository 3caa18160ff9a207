"""Is another DHCP server answering on an interface? One DHCPDISCOVER, broadcast, and the
first DHCPOFFER to it (RFC 2131). Full-DHCP network boot is refused where one answers.

``discover`` also asks as a network-booting machine would (client architecture, vendor class)
and reads the boot offers it gets: what `hc provision` tells machines, seen from the wire."""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address

from homecloud.errors import HostError

CLIENT_PORT, SERVER_PORT = 68, 67
MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER = 1, 2
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
# The probe's MACs: locally administered, "hc", then random; `hc provision status` leaves them
# out of the MACs the DHCP server ignored.
PROBE_MAC_PREFIX = "02:68:63:"


def discover_packet(xid: int, mac: bytes, options: Mapping[int, bytes] | None = None) -> bytes:
    """A DHCPDISCOVER from ``mac``, with ``options`` (code: value) after the message type."""
    # op=1 (request), htype=1 (Ethernet), hlen=6; flags: broadcast the answer to us.
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000,
                         b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, mac.ljust(16, b"\0"),
                         b"\0" * 64, b"\0" * 128)
    body = bytearray(MAGIC + bytes([53, 1, DISCOVER]))
    for code, value in (options or {}).items():
        body += bytes([code, len(value)]) + value
    return header + bytes(body) + b"\xff"


@dataclass(frozen=True)
class Offer:
    """A DHCPOFFER as a network-booting machine reads it."""

    server: IPv4Address
    address: IPv4Address  # 0.0.0.0 from a proxyDHCP server: the boot offer alone
    boot_file: str  # option 67, else the header's file field
    options: Mapping[int, bytes]

    @property
    def vendor_class(self) -> str:
        return self.options.get(60, b"").decode(errors="replace")


def _options(data: bytes) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    i = 0
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        if i + 1 >= len(data):
            break
        code, length = data[i], data[i + 1]
        found[code] = found.get(code, b"") + data[i + 2:i + 2 + length]  # RFC 3396: concatenate
        i += 2 + length
    return found


def _cstring(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode(errors="replace")


def parse_offer(packet: bytes, xid: int) -> Offer | None:
    """``packet`` as an offer to our ``xid``, or None when it is not one."""
    if len(packet) < 240 or packet[0] != 2 or struct.unpack("!I", packet[4:8])[0] != xid:
        return None
    if packet[236:240] != MAGIC:
        return None
    options = _options(packet[240:])
    if options.get(53) != bytes([OFFER]):
        return None
    server = options.get(54)
    return Offer(server=IPv4Address(server if server and len(server) == 4 else packet[20:24]),
                 address=IPv4Address(packet[16:20]),
                 boot_file=_cstring(options[67]) if 67 in options else _cstring(packet[108:236]),
                 options=options)


def offer_from(packet: bytes, xid: int) -> IPv4Address | None:
    """The offering server's address, if ``packet`` is an offer to our ``xid``."""
    offer = parse_offer(packet, xid)
    return offer.server if offer is not None else None


# Servers check an address is free (dnsmasq and ISC dhcpd ping it) before offering it: their
# first offer to a new MAC comes after about 3 s.
PROBE_TIMEOUT = 6.0


def discover(interface: str, mac: bytes, options: Mapping[int, bytes] | None = None,
             timeout: float = PROBE_TIMEOUT, first_only: bool = False) -> list[Offer]:
    """Broadcast one DHCPDISCOVER from ``mac`` on ``interface``; the offers made to it within
    ``timeout`` (only the first, with ``first_only``)."""
    xid = int.from_bytes(os.urandom(4), "big")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
        sock.bind(("", CLIENT_PORT))
    except OSError as exc:
        sock.close()
        raise HostError(f"cannot probe for DHCP servers on {interface}: {exc.strerror}") from None
    offers: list[Offer] = []
    with sock:
        sock.sendto(discover_packet(xid, mac, options), ("255.255.255.255", SERVER_PORT))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            packet, _ = sock.recvfrom(4096)
            offer = parse_offer(packet, xid)
            if offer is not None:
                offers.append(offer)
                if first_only:
                    break
    return offers


def other_dhcp_server(interface: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """The address of a DHCP server that offers an address on ``interface``, or None."""
    # A locally administered MAC of no machine: a server that offers to anyone answers it.
    mac = bytes.fromhex(PROBE_MAC_PREFIX.replace(":", "")) + os.urandom(3)
    offers = discover(interface, mac, timeout=timeout, first_only=True)
    return str(offers[0].server) if offers else None
