"""The DNS server: UDP and TCP on each listen address, one asyncio loop.

Answers from our zones are computed once and kept as bytes keyed by the query (minus its id),
so a repeated question costs a dict lookup; the cache is dropped whenever the zones change.
Forwarded and recursed questions run as tasks, bounded in number and in time, so a dead
upstream or child host costs SERVFAIL after ``forward_timeout`` and never blocks other queries.
Packets that are not DNS queries are dropped, unparsable queries get FORMERR, and no packet can
raise out of the handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from dnslib import RCODE, DNSRecord

from homecloud.dns import answer as answers
from homecloud.dns.upstream import Server, exchange
from homecloud.dns.zone import Zones

log = logging.getLogger("homecloud.dns")

MAX_QUERY = 4096  # bigger than any sane query (one question, an OPT record): dropped
CACHE_ENTRIES = 20_000  # answers kept; the cache is emptied when full (random names in a flood)
MAX_PENDING = 512  # forwarded/recursed questions in flight; beyond, SERVFAIL at once
MAX_TCP_CLIENTS = 128
TCP_IDLE = 10.0  # seconds a TCP client may stay silent
RECV_BUFFER = 1 << 20  # absorbs bursts
IP_FREEBIND = 15  # <linux/in.h>: bind before the address exists (the bridge comes up later)

Respond = Callable[[bytes], None]


@dataclass
class Resolver:
    """Turns query bytes into reply bytes: the part of the server with no sockets."""

    zones: Zones
    upstreams: Sequence[Server] = ()
    forward_timeout: float = 1.5
    _cache: dict[tuple[bool, bytes], bytes] = field(default_factory=dict)
    _pending: int = 0

    def set_zones(self, zones: Zones) -> None:
        self.zones = zones
        self._cache.clear()

    def resolve(self, data: bytes, tcp: bool) -> bytes | Awaitable[bytes | None] | None:
        """The reply to ``data``: bytes now, an awaitable when another server must be asked,
        or None to stay silent."""
        if len(data) < 12 or len(data) > MAX_QUERY or data[2] & 0x80:
            return None  # not a query (a reply, or noise): never answer, never reflect
        key = (tcp, data[2:])
        cached = self._cache.get(key)
        if cached is not None:
            return data[:2] + cached
        try:
            query = DNSRecord.parse(data)
        except Exception:  # dnslib raises several kinds on garbage
            return answers.bare_reply(data, RCODE.FORMERR)
        outcome = answers.answer(query, self.zones)
        if isinstance(outcome, answers.Reply):
            reply = self._pack(outcome.record, query, tcp)
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
            self._cache[key] = reply[2:]
            return reply
        if isinstance(outcome, answers.Forward):
            return self._ask(query, data, self.upstreams, tcp, relay_authority=True)
        return self._ask(query, data, outcome.servers, tcp, relay_authority=False)

    def _pack(self, record: DNSRecord, query: DNSRecord, tcp: bool) -> bytes:
        return answers.pack(record, answers.TCP_LIMIT if tcp else answers.udp_limit(query))

    async def _ask(self, query: DNSRecord, data: bytes, servers: Sequence[Server], tcp: bool,
                   relay_authority: bool) -> bytes:
        if self._pending >= MAX_PENDING or not servers:
            return self._pack(answers.servfail(query), query, tcp)
        self._pending += 1
        try:
            reply = await exchange(data, servers, tcp=tcp, timeout=self.forward_timeout)
        except Exception:  # a bug must cost one SERVFAIL, not the task
            log.exception("failed to ask %s", servers)
            reply = None
        finally:
            self._pending -= 1
        if reply is None:
            return self._pack(answers.servfail(query), query, tcp)
        if not relay_authority:
            # We answer for the child as a resolver: not authoritative, recursion available.
            reply = reply[:2] + bytes([reply[2] & ~0x04 & 0xFF, reply[3] | 0x80]) + reply[4:]
        return reply


class _UdpEndpoint:
    """One UDP socket read straight from the event loop: each wake-up drains up to BATCH
    datagrams, where asyncio's datagram transport pays a poll per datagram (in
    bench/dns_bench.py this took homecloud from 0.32 to 0.75 of dnsmasq's rate)."""

    BATCH = 64

    def __init__(self, sock: socket.socket, server: DnsServer) -> None:
        self.sock = sock
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        sock = self.sock
        for _ in range(self.BATCH):
            try:
                # One byte more than any query may have: a bigger datagram reads as too long.
                data, addr = sock.recvfrom(MAX_QUERY + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error queued on the socket: nothing to answer
                continue
            self.server.deliver(data, partial(self._send, addr))

    def _send(self, addr: Any, reply: bytes) -> None:
        with contextlib.suppress(OSError):  # a full buffer drops the reply, as UDP may
            self.sock.sendto(reply, addr)

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


def _socket(address: str, port: int, kind: socket.SocketKind) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_DGRAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
        sock.bind((address, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class _Endpoint:
    udp: _UdpEndpoint
    tcp: asyncio.Server

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


class DnsServer:
    """The listening side: endpoints come and go with the configuration."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self._endpoints: dict[Server, _Endpoint] = {}
        self._tcp_clients = 0
        self._tasks: set[asyncio.Future[None]] = set()

    @property
    def endpoints(self) -> list[Server]:
        return list(self._endpoints)

    async def listen(self, endpoints: Sequence[Server]) -> None:
        """Listen on exactly ``endpoints`` ((address, port) pairs), UDP and TCP; an address that
        cannot be bound is logged and skipped, the others still serve."""
        wanted = set(endpoints)
        for endpoint in [e for e in self._endpoints if e not in wanted]:
            self._endpoints.pop(endpoint).close()
        for endpoint in endpoints:
            if endpoint in self._endpoints:
                continue
            udp_sock = tcp_sock = None
            try:
                udp_sock = _socket(*endpoint, socket.SOCK_DGRAM)
                tcp_sock = _socket(*endpoint, socket.SOCK_STREAM)
                tcp = await asyncio.start_server(self._serve_tcp, sock=tcp_sock,
                                                 backlog=MAX_TCP_CLIENTS)
                udp = _UdpEndpoint(udp_sock, self)
            except OSError as exc:
                for sock in (udp_sock, tcp_sock):
                    if sock is not None:
                        sock.close()
                log.error("cannot listen on %s port %d: %s", *endpoint, exc.strerror or exc)
                continue
            self._endpoints[endpoint] = _Endpoint(udp, tcp)
            log.info("listening on %s port %d (UDP and TCP)", *endpoint)

    async def close(self) -> None:
        await self.listen(())

    def _resolve(self, data: bytes, tcp: bool) -> bytes | Awaitable[bytes | None] | None:
        try:
            return self.resolver.resolve(data, tcp)
        except Exception:  # a bug must cost one SERVFAIL, not the server
            log.exception("failed to answer a query")
            return answers.bare_reply(data, RCODE.SERVFAIL)

    def deliver(self, data: bytes, respond: Respond) -> None:
        """Answer a UDP query through ``respond``: at once, or as a task when another server
        must be asked."""
        result = self._resolve(data, tcp=False)
        if result is None:
            return
        if isinstance(result, bytes):
            respond(result)
            return

        async def later(pending: Awaitable[bytes | None]) -> None:
            reply = await pending
            if reply is not None:
                respond(reply)

        task = asyncio.ensure_future(later(result))
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        """Queries on one TCP connection, one after the other, until it goes idle or sends
        something that is not a query."""
        if self._tcp_clients >= MAX_TCP_CLIENTS:
            writer.close()
            return
        self._tcp_clients += 1
        try:
            while True:
                (size,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2),
                                                                     TCP_IDLE))
                if size > MAX_QUERY:
                    break
                data = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE)
                result = self._resolve(data, tcp=True)
                reply = result if result is None or isinstance(result, bytes) else await result
                if reply is None:
                    break
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._tcp_clients -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
