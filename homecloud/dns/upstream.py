"""Asking other DNS servers: the machine's resolvers (for names outside our zones) and child
hosts (for names delegated to them), with a short deadline so a dead server costs the client a
quick SERVFAIL, not a hang."""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
from collections.abc import Sequence
from ipaddress import ip_address
from pathlib import Path

from homecloud.errors import UserError

RESOLV_CONF = Path("/etc/resolv.conf")
DNS_PORT = 53
Server = tuple[str, int]  # (address, port)
MAX_MESSAGE = 65535


def parse_server(text: str) -> Server:
    """``1.2.3.4``, ``1.2.3.4:5353``, ``::1`` or ``[::1]:5353``."""
    text = text.strip()
    host, port = text, DNS_PORT
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise UserError(f"DNS server {text!r} is invalid: use ADDRESS or [ADDRESS]:PORT")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
        if not number.isdigit():
            raise UserError(f"DNS server {text!r} is invalid: use ADDRESS or ADDRESS:PORT")
        port = int(number)
    try:
        address = ip_address(host)  # IPv6 may carry a scope: fe80::1%eth0
    except ValueError:
        raise UserError(f"DNS server {text!r} is not an IP address") from None
    if not 0 < port < 65536:
        raise UserError(f"DNS server {text!r}: port {port} is out of range")
    return (str(address), port)


def parse_resolv_conf(text: str) -> list[Server]:
    """The ``nameserver`` lines of a resolv.conf, in order; unreadable ones are skipped."""
    servers = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                servers.append(parse_server(fields[1]))
            except UserError:
                continue
    return servers


def system_upstreams(exclude: Sequence[Server] = (), path: Path = RESOLV_CONF) -> list[Server]:
    """The machine's resolvers, minus ``exclude`` (ourselves: asking ourselves would loop)."""
    try:
        text = path.read_text()
    except OSError:
        return []
    return [s for s in parse_resolv_conf(text) if s not in exclude]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _is_reply_to(data: bytes, query_id: bytes) -> bool:
    return len(data) >= 12 and data[:2] == query_id and bool(data[2] & 0x80)


async def _ask_udp(server: Server, packet: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    sock = socket.socket(_family(server[0]), socket.SOCK_DGRAM)
    sock.setblocking(False)
    with sock:
        # Connected: the kernel drops datagrams from anyone else, and a closed port comes back
        # as ECONNREFUSED at once instead of a timeout.
        await loop.sock_connect(sock, server)
        await loop.sock_sendall(sock, packet)
        while True:
            data = await loop.sock_recv(sock, MAX_MESSAGE)
            if _is_reply_to(data, packet[:2]):
                return data


async def _ask_tcp(server: Server, packet: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*server)
    try:
        writer.write(struct.pack("!H", len(packet)) + packet)
        await writer.drain()
        while True:
            (size,) = struct.unpack("!H", await reader.readexactly(2))
            data = await reader.readexactly(size)
            if _is_reply_to(data, packet[:2]):
                return data
    finally:
        writer.close()


async def exchange(query: bytes, servers: Sequence[Server], *, tcp: bool = False,
                   timeout: float = 1.5) -> bytes | None:
    """Ask ``servers`` in turn, sharing ``timeout`` seconds among them, and return the first
    reply (with the id of ``query``), or None when none answered in time."""
    if len(query) < 12 or not servers:
        return None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    share = timeout / len(servers)
    ask = _ask_tcp if tcp else _ask_udp
    for server in servers:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        # A fresh random id per attempt: an off-path guess must match id and source port.
        packet = secrets.token_bytes(2) + query[2:]
        try:
            reply = await asyncio.wait_for(ask(server, packet), min(share, remaining))
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            continue
        return query[:2] + reply[2:]
    return None
