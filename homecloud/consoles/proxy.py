"""The console proxy (hc-console.service): websockets from the front door joined to VNC
sockets and terminals, all consoles in one asyncio process.

    GET /_hc/console-ws/NAME?token=T   (websocket; X-Remote-User set by nginx after login)

The token is redeemed first (single use, one instance, one user, 60 s); then the first
message is a text frame describing the console (JSON: kind, instance, note), and the rest are
binary frames: the RFB stream of a VNC server, or a terminal's bytes. A terminal also takes
text frames ``{"resize": [cols, rows]}``.

Flow control: each side is read only when the other has taken the last piece (``send`` waits
while the websocket's write buffer is above its limit; the VNC socket and the terminal are
written with drain), so a client that stops reading stops its console, never grows a buffer.
Pings keep idle consoles open through proxies and find dead peers; a closed websocket ends its
console's VNC connection or its terminal's process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import pty
import signal
import socket
import struct
import termios
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, unix_serve
from websockets.exceptions import ConnectionClosed

from homecloud.consoles import SOCKET_PREFIX
from homecloud.consoles.presence import OpenConsoles
from homecloud.consoles.tokens import ASLEEP, SCREEN, ConsoleTarget, ConsoleTokens
from homecloud.errors import HomecloudError

log = logging.getLogger("homecloud.consoles")
CHUNK = 256 << 10  # a read from a VNC server or a terminal; at most twice this is buffered
# Close codes (RFC 6455 4000-4999 are the application's).
REFUSED = 4003
UNAVAILABLE = 4004
TRY_AGAIN = 1013


@dataclass(frozen=True)
class ProxyLimits:
    max_consoles: int = 64  # open at once; more are refused with a message
    write_limit: int = 256 << 10  # bytes buffered toward one client before reading stops
    max_message: int = 1 << 20  # largest message a client may send
    ping_interval: float = 20.0  # below the 60 s after which common proxies drop idle sockets
    ping_timeout: float = 20.0
    idle_exit: float | None = 300.0  # exit after this long with no console (systemd restarts it)


Wake = Callable[[str], ConsoleTarget]  # starts a sleeping instance, says what its console is


class ConsoleProxy:
    def __init__(self, tokens: ConsoleTokens, limits: ProxyLimits, wake: Wake | None = None,
                 presence: OpenConsoles | None = None) -> None:
        self.tokens = tokens
        self.limits = limits
        self.wake = wake
        self.presence = presence or OpenConsoles()
        self.open = 0
        self.last_close = time.monotonic()

    async def handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        url = urlsplit(request.path)
        instance = url.path.removeprefix(SOCKET_PREFIX).strip("/")
        token = parse_qs(url.query).get("token", [""])[0]
        user = request.headers.get("X-Remote-User", "")
        client = request.headers.get("X-Real-IP", "local")
        if self.open >= self.limits.max_consoles:
            log.warning("console of %s for %s refused: %d consoles open", instance, user,
                        self.open)
            await ws.close(TRY_AGAIN, _close_reason(f"too many consoles open ({self.open}): "
                                                    "close one and try again"))
            return
        redeemed = self.tokens.redeem(token, instance, user, time.time())
        if redeemed.target is None:
            log.warning("console of %s refused for user %r from %s: %s", instance, user, client,
                        redeemed.refused)
            await ws.close(REFUSED, _close_reason(f"console refused: {redeemed.refused}; run "
                                                  f"`hc console {instance}` for a new link"))
            return
        self.open += 1
        self.presence.opened(instance)  # an open console keeps an --idle instance awake
        try:
            target: ConsoleTarget | None = redeemed.target
            if target is not None and target.kind == ASLEEP:
                target = await self._woken(ws, instance)
            if target is not None:
                await self._serve(ws, instance, target)
        finally:
            self.presence.closed(instance)
            self.open -= 1
            self.last_close = time.monotonic()

    async def _woken(self, ws: ServerConnection, instance: str) -> ConsoleTarget | None:
        """Start a sleeping instance (the page says so meanwhile); what its console reaches
        once it runs, or None when it could not be woken (the websocket is closed, saying
        why)."""
        await ws.send(json.dumps({"kind": "starting", "instance": instance,
                                  "note": f"starting {instance}…"}))
        log.info("console of %s opened while it sleeps: waking it", instance)
        try:
            if self.wake is None:
                raise HomecloudError("this console proxy cannot wake instances")
            target = await asyncio.get_running_loop().run_in_executor(None, self.wake,
                                                                      instance)
        except HomecloudError as error:
            log.warning("console of %s: could not wake it: %s", instance, error.message)
            await ws.close(UNAVAILABLE, _close_reason(f"{instance} could not be started: "
                                                      f"{error.message}"))
            return None
        if target.kind == ASLEEP:  # the agent says it still sleeps
            await ws.close(UNAVAILABLE, f"{instance} did not start: see `hc logs {instance}`")
            return None
        return target

    async def _serve(self, ws: ServerConnection, instance: str, target: ConsoleTarget) -> None:
        await ws.send(json.dumps({"kind": target.kind, "instance": instance,
                                  "note": target.note}))
        if target.kind == SCREEN:
            await self._screen(ws, instance, target.socket or "")
        else:
            await self._terminal(ws, instance, target.argv)

    async def _screen(self, ws: ServerConnection, instance: str, path: str) -> None:
        try:
            reader, writer = await _open_vnc(path)
        except OSError as error:
            await ws.close(UNAVAILABLE, f"{instance}'s screen is not answering "
                                        f"({error.strerror}): is it running?")
            return

        async def to_client() -> None:
            while data := await reader.read(CHUNK):
                await ws.send(data)

        async def from_client() -> None:
            async for message in ws:
                if isinstance(message, bytes):
                    writer.write(message)
                    await writer.drain()

        try:
            await _first_done(to_client(), from_client())
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await ws.close(1000, f"{instance}'s screen closed")

    async def _terminal(self, ws: ServerConnection, instance: str,
                        argv: tuple[str, ...]) -> None:
        master, slave = pty.openpty()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                preexec_fn=_take_terminal, env={"TERM": "xterm-256color", "LANG": "C.UTF-8",
                                                "PATH": os.environ.get("PATH", "")})
        except OSError as error:
            os.close(master)
            await ws.close(UNAVAILABLE, f"no terminal for {instance}: {error.strerror}")
            return
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        loop = asyncio.get_running_loop()

        async def to_client() -> None:
            while True:
                await _ready(loop.add_reader, loop.remove_reader, master)
                try:
                    data = os.read(master, CHUNK)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: every process on the terminal has gone
                    return
                if not data:
                    return
                await ws.send(data)

        async def from_client() -> None:
            async for message in ws:
                if isinstance(message, bytes):
                    view = memoryview(message)
                    while view:
                        await _ready(loop.add_writer, loop.remove_writer, master)
                        with contextlib.suppress(BlockingIOError):
                            view = view[os.write(master, view):]
                else:
                    _resize(master, message)

        try:
            await _first_done(to_client(), from_client())
        finally:
            loop.remove_reader(master)
            loop.remove_writer(master)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGHUP)
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
            os.close(master)
        await ws.close(1000, f"the terminal of {instance} ended")

    async def idle_exit(self, server_close: asyncio.Future[None]) -> None:
        limit = self.limits.idle_exit
        if limit is None:
            return
        while True:
            await asyncio.sleep(min(limit, 30))
            if self.open == 0 and time.monotonic() - self.last_close >= limit:
                log.info("no console for %g s: exiting until the next one", limit)
                _settle(server_close)
                return


async def _open_vnc(path: str, patience: float = 5.0) -> tuple[asyncio.StreamReader,
                                                            asyncio.StreamWriter]:
    """Connect to a VNC socket. qemu listens with a backlog of one, so consoles opened at the
    same moment find it full (EAGAIN, or EINVAL from some kernels): try again for a while."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return await asyncio.open_unix_connection(path, limit=CHUNK)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EINVAL) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.01)


def _close_reason(text: str) -> str:
    """A close frame's reason holds at most 123 bytes (RFC 6455 5.5)."""
    data = text.encode()
    return text if len(data) <= 123 else data[:120].decode(errors="ignore") + "…"


def _take_terminal() -> None:
    """In the child, after setsid: make its terminal the controlling one (job control, ^C)."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _resize(master: int, message: str) -> None:
    try:
        cols, rows = json.loads(message)["resize"]
        size = struct.pack("HHHH", int(rows), int(cols), 0, 0)
    except (ValueError, KeyError, TypeError, struct.error):
        return  # not a resize: nothing else is said in text
    fcntl.ioctl(master, termios.TIOCSWINSZ, size)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _ready(add: object, remove: object, fd: int) -> None:
    """Wait until ``fd`` is readable (add_reader) or writable (add_writer)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    add(fd, _settle, done)  # type: ignore[operator]
    try:
        await done
    finally:
        remove(fd)  # type: ignore[operator]


async def _first_done(*jobs: Awaitable[None]) -> None:
    """Run both directions; when one ends (its side closed), stop the other."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = task.exception()
            if error is not None and not isinstance(error, (ConnectionClosed, OSError)):
                raise error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def serve(listener: socket.socket, tokens: ConsoleTokens, limits: ProxyLimits,
                ready: object = None, wake: Wake | None = None,
                presence: OpenConsoles | None = None) -> None:
    proxy = ConsoleProxy(tokens, limits, wake, presence)
    async with unix_serve(proxy.handle, sock=listener, ping_interval=limits.ping_interval,
                          ping_timeout=limits.ping_timeout, max_size=limits.max_message,
                          max_queue=4, write_limit=limits.write_limit,
                          compression=None, server_header=None):
        if callable(ready):
            ready()
        stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        watcher = asyncio.ensure_future(proxy.idle_exit(stop))
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, _settle, stop)
        try:
            await stop
        finally:
            watcher.cancel()
