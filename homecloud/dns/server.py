"""The DNS server: UDP and TCP on each listen address, one asyncio loop, doing what the
resolver (resolver.py) decides for each packet.

Forwarded and recursed questions run as tasks, bounded in number and in time, so a dead
upstream or child host costs SERVFAIL after ``forward_timeout`` and never blocks other queries.
A TCP client may hold a few connections (tcp_clients.py), stay silent between messages for
``TCP_IDLE`` seconds, and must send a whole message within ``TCP_MESSAGE`` seconds of its first
byte. No packet can raise out of the handlers, and none is logged: an unexpected error costs
SERVFAIL and is counted, logged at a bounded rate (errorlog.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from dnslib import RCODE

from homecloud.dns import answer as answers
from homecloud.dns.errorlog import RateLimitedLog
from homecloud.dns.resolver import MAX_QUERY, Ask, Decision, Resolver
from homecloud.dns.tcp_clients import Connection, TcpClients, client_of
from homecloud.dns.upstream import Server, exchange

log = logging.getLogger("homecloud.dns")

MAX_PENDING = 512  # forwarded/recursed questions in flight; beyond, SERVFAIL at once
TCP_BACKLOG = 128
TCP_IDLE = 10.0  # seconds a TCP client may stay silent between messages
TCP_MESSAGE = 2.0  # seconds for the rest of a message once it began, and to take a reply
RECV_BUFFER = 1 << 20  # absorbs bursts
IP_FREEBIND = 15  # <linux/in.h>: bind before the address exists (the bridge comes up later)

Respond = Callable[[bytes], None]


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
        self.errors = RateLimitedLog(log, "answering queries", schedule=_call_later)
        self._endpoints: dict[Server, _Endpoint] = {}
        self._tcp = TcpClients()
        self._pending = 0
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
                                                 backlog=TCP_BACKLOG)
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
        self.errors.flush()

    def _decide(self, data: bytes, tcp: bool) -> Decision:
        try:
            return self.resolver.resolve(data, tcp)
        except Exception as exc:  # a bug must cost one SERVFAIL, not the server
            self.errors.record(exc)
            return answers.bare_reply(data, RCODE.SERVFAIL)

    async def _ask(self, ask: Ask, tcp: bool) -> bytes:
        """Perform ``ask``: its servers' reply, relayed, or its failure."""
        if self._pending >= MAX_PENDING:
            return ask.failure
        self._pending += 1
        try:
            reply = await exchange(ask.query, ask.servers, tcp=tcp, timeout=ask.timeout)
        except Exception as exc:  # a bug must cost one SERVFAIL, not the task
            self.errors.record(exc)
            reply = None
        finally:
            self._pending -= 1
        return ask.failure if reply is None else ask.relay(reply)

    def deliver(self, data: bytes, respond: Respond) -> None:
        """Answer a UDP query through ``respond``: at once, or as a task when another server
        must be asked."""
        decision = self._decide(data, tcp=False)
        if decision is None:
            return
        if isinstance(decision, bytes):
            respond(decision)
            return

        async def later(ask: Ask) -> None:
            respond(await self._ask(ask, tcp=False))

        task = asyncio.ensure_future(later(decision))
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        """Queries on one TCP connection, one after the other, until it goes idle, is slow to
        send a message or take a reply, or sends something that is not a query."""
        loop = asyncio.get_running_loop()
        peer = writer.get_extra_info("peername")
        connection = Connection(client_of(str(peer[0])) if peer else "", writer.transport.abort,
                                idle_since=loop.time())
        if not self._tcp.admit(connection):
            writer.transport.abort()
            return
        try:
            while True:
                connection.idle(loop.time())
                first = await asyncio.wait_for(reader.readexactly(1), TCP_IDLE)
                connection.busy()
                data = await asyncio.wait_for(_read_message(reader, first), TCP_MESSAGE)
                decision = None if data is None else self._decide(data, tcp=True)
                if isinstance(decision, Ask):
                    decision = await self._ask(decision, tcp=True)
                if decision is None:
                    break
                writer.write(struct.pack("!H", len(decision)) + decision)
                await asyncio.wait_for(writer.drain(), TCP_MESSAGE)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._tcp.release(connection)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), TCP_MESSAGE)
            except Exception:  # a peer that takes nothing more: drop what is left
                writer.transport.abort()


async def _read_message(reader: asyncio.StreamReader, first: bytes) -> bytes | None:
    """The rest of a length-prefixed message whose first byte was ``first``; None when it
    says it is bigger than any query."""
    (size,) = struct.unpack("!H", first + await reader.readexactly(1))
    if size > MAX_QUERY:
        return None
    return await reader.readexactly(size)


def _call_later(delay: float, callback: Callable[[], None]) -> object:
    return asyncio.get_running_loop().call_later(delay, callback)
