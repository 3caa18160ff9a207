"""The wake listener: takes the connections the firewall sends it for a sleeping instance,
wakes the instance through the agent's API, waits until the guest listens on the port, and
hands each connection on. The firewall then sends new connections straight to the instance;
those already taken stay proxied here until they close."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv6Address

from homecloud.wake.listing import InstanceListing
from homecloud.wake.targets import Address, Target

log = logging.getLogger(__name__)
# linux/netfilter_ipv4.h; IP6T_SO_ORIGINAL_DST (level IPPROTO_IPV6) has the same value.
SO_ORIGINAL_DST = 80
WAKE_TIMEOUT = 120.0  # a guest that does not listen by then: the connection is closed
RETRY = 0.02
CHUNK = 1 << 16


def original_destination(sock: socket.socket) -> tuple[Address, int]:
    """Where the client meant to connect, before our DNAT."""
    if sock.family == socket.AF_INET:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        port, packed = struct.unpack_from("!2xH4s", raw)
        return IPv4Address(packed), port
    raw = sock.getsockopt(socket.IPPROTO_IPV6, SO_ORIGINAL_DST, 28)
    port, packed = struct.unpack_from("!2xH4x16s", raw)
    return IPv6Address(packed), port


class Waker:
    """One wake at a time per instance, shared by every connection waiting for it."""

    def __init__(self, listing: InstanceListing, start: Callable[[str], None]) -> None:
        self.listing = listing
        self._start = start
        self._waking: dict[str, asyncio.Future[None]] = {}
        self.proxied = 0  # connections being handed on
        # Connections in hand by instance, waiting for its wake or proxied: it is busy (a
        # slow boot must not count as idle time).
        self.holding: dict[str, int] = {}
        self.last_activity = time.monotonic()

    async def handle(self, client: socket.socket) -> None:
        self.proxied += 1
        try:
            await self._handle(client)
        except OSError as exc:
            log.info("wake: a connection ended: %s", exc)
        finally:
            self.proxied -= 1
            self.last_activity = time.monotonic()
            client.close()

    async def _handle(self, client: socket.socket) -> None:
        address, port = original_destination(client)
        target = await self.listing.find(address, port)
        if target is None:
            log.info("wake: nothing sleeps at %s port %d; connection closed", address, port)
            return
        self.holding[target.name] = self.holding.get(target.name, 0) + 1
        try:
            await self._wake(target.name)
            guest = await _connect(target, time.monotonic() + WAKE_TIMEOUT)
            with guest:
                await _splice(client, guest)
        finally:
            self.holding[target.name] -= 1
            if not self.holding[target.name]:
                del self.holding[target.name]

    def _wake(self, name: str) -> Awaitable[None]:
        task = self._waking.get(name)
        if task is None or task.done():
            loop = asyncio.get_running_loop()
            task = loop.run_in_executor(None, self._start, name)
            self._waking[name] = task
        return asyncio.shield(task)


async def _connect(target: Target, deadline: float) -> socket.socket:
    """A connection to the guest's port, retried while the guest is not listening yet."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET if target.address.version == 4 else socket.AF_INET6
    while True:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (str(target.address), target.port))
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(RETRY)


async def _splice(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until both sides have finished sending."""
    await asyncio.gather(_copy(a, b), _copy(b, a))


async def _copy(source: socket.socket, sink: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    try:
        while data := await loop.sock_recv(source, CHUNK):
            await loop.sock_sendall(sink, data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:  # one side is gone: end the other direction too
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
