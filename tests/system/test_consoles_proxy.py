"""The console proxy against real VNC servers and real terminals, through a real websocket
client: the token rules, the RFB handshake, terminals, many consoles, a client that stops
reading."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from homecloud.consoles.presence import instances_with_open_consoles
from homecloud.consoles.tokens import ASLEEP, SCREEN, TERMINAL, ConsoleTarget
from tests.system.consoleproxy import RunningProxy, console_proxy, paused_vnc, read_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (qemu, ptys as root)")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("consoles")


@pytest.fixture(scope="module")
def vnc(workdir: Path) -> Iterator[Path]:
    with paused_vnc(workdir) as path:
        yield path


@pytest.fixture(scope="module")
def proxy(workdir: Path) -> Iterator[RunningProxy]:
    with console_proxy(workdir / "proxy") as running:
        yield running


def connect(proxy: RunningProxy, instance: str, token: str,
            user: str = "alice") -> unix_connect:
    return unix_connect(str(proxy.socket), proxy.uri(instance, token),
                        additional_headers={"X-Remote-User": user, "X-Real-IP": "192.0.2.7"},
                        max_size=None)


async def refusal(proxy: RunningProxy, instance: str, token: str, user: str = "alice") -> str:
    async with connect(proxy, instance, token, user) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    return f"{closed.value.rcvd.code} {closed.value.rcvd.reason}"


async def rfb_handshake(ws: ClientConnection) -> tuple[int, int]:
    """Version, security None, ClientInit; the framebuffer's size from ServerInit."""
    hello = json.loads(await ws.recv())
    assert hello["kind"] == SCREEN
    buffer = b""

    async def read(n: int) -> bytes:
        nonlocal buffer
        while len(buffer) < n:
            buffer += await ws.recv()
        data, buffer = buffer[:n], buffer[n:]
        return data

    assert await read(12) == b"RFB 003.008\n"
    await ws.send(b"RFB 003.008\n")
    count = (await read(1))[0]
    types = await read(count)
    assert 1 in types, types  # None: the socket's file mode is the VNC server's access control
    await ws.send(bytes([1]))
    assert await read(4) == b"\0\0\0\0"
    await ws.send(bytes([1]))  # shared
    width, height = struct.unpack(">HH", await read(4))
    return width, height


def test_screen_through_the_proxy(proxy: RunningProxy, vnc: Path) -> None:
    token = proxy.mint("vm2", ConsoleTarget(SCREEN, socket=str(vnc)))

    async def run() -> tuple[int, int]:
        async with connect(proxy, "vm2", token) as ws:
            return await rfb_handshake(ws)

    width, height = asyncio.run(run())
    assert width > 0 and height > 0


def test_reused_token_is_refused_and_logged(proxy: RunningProxy, vnc: Path) -> None:
    token = proxy.mint("vm2", ConsoleTarget(SCREEN, socket=str(vnc)))

    async def run() -> str:
        async with connect(proxy, "vm2", token) as ws:
            await rfb_handshake(ws)
        return await refusal(proxy, "vm2", token)

    assert asyncio.run(run()) == ("4003 console refused: unknown or already used token; run "
                                  "`hc console vm2` for a new link")
    assert "console of vm2 refused for user 'alice' from 192.0.2.7: unknown or already used " \
           "token" in proxy.log_text()


@pytest.mark.parametrize(("minted", "opened", "user", "why"), [
    ("vm2", "vm2", "alice", "expired token"),
    ("vm1", "vm2", "alice", "token is for another instance (vm1)"),
    ("vm2", "vm2", "bob", "token is for another user"),
])
def test_bad_tokens_are_refused(proxy: RunningProxy, vnc: Path, minted: str, opened: str,
                                user: str, why: str) -> None:
    seconds = -1.0 if why == "expired token" else 60.0
    token = proxy.mint(minted, ConsoleTarget(SCREEN, socket=str(vnc)), seconds=seconds)
    assert asyncio.run(refusal(proxy, opened, token, user)).startswith(
        f"4003 console refused: {why};")
    assert f"refused for user {user!r} from 192.0.2.7: {why}" in proxy.log_text()
    # Refused once, used up: not even its own instance and user open it now.
    assert "already used" in asyncio.run(refusal(proxy, minted, token, "alice"))


def test_forged_token_is_refused(proxy: RunningProxy) -> None:
    assert "unknown or already used token" in asyncio.run(refusal(proxy, "vm2", "forged" * 7))
    assert "unknown or already used token" in asyncio.run(refusal(proxy, "vm2", ""))


def test_screen_that_is_gone(proxy: RunningProxy, workdir: Path) -> None:
    token = proxy.mint("vm3", ConsoleTarget(SCREEN, socket=str(workdir / "none.vnc")))

    async def run() -> str:
        async with connect(proxy, "vm3", token) as ws:
            assert json.loads(await ws.recv())["kind"] == SCREEN
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None
        return f"{closed.value.rcvd.code} {closed.value.rcvd.reason}"

    assert asyncio.run(run()) == ("4004 vm3's screen is not answering (No such file or "
                                  "directory): is it running?")


def still_listed(directory: str, instance: str, patience: float = 5.0) -> bool:
    """Whether ``instance`` is still listed as having a console open after ``patience`` (the
    proxy finishes a console just after the client has seen it close)."""
    deadline = time.monotonic() + patience
    while instance in instances_with_open_consoles(directory):
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)
    return False


def test_open_consoles_are_listed_for_the_idle_check(proxy: RunningProxy, vnc: Path) -> None:
    opened = str(proxy.socket.parent / "open")
    tokens = [proxy.mint("vm5", ConsoleTarget(SCREEN, socket=str(vnc))) for _ in range(2)]

    async def run() -> None:
        async with connect(proxy, "vm5", tokens[0]) as first:
            await rfb_handshake(first)
            async with connect(proxy, "vm5", tokens[1]) as second:
                await rfb_handshake(second)
                assert "vm5" in instances_with_open_consoles(opened)
            await asyncio.sleep(0.3)  # one of two closed: still open
            assert "vm5" in instances_with_open_consoles(opened)

    asyncio.run(run())
    assert not still_listed(opened, "vm5")


def test_a_listing_left_by_a_killed_proxy_keeps_nothing_awake(workdir: Path) -> None:
    listing = workdir / "stale-open"
    listing.mkdir()
    (listing / "vm6").write_text("999999999")  # no such process
    assert instances_with_open_consoles(str(listing)) == set()
    (listing / "vm6").write_text(str(os.getpid()))
    assert instances_with_open_consoles(str(listing)) == {"vm6"}


def test_sleeping_instance_that_cannot_be_woken(proxy: RunningProxy) -> None:
    """The page first hears that the instance is starting; with no agent to start it, the
    console closes saying why."""
    token = proxy.mint("vm7", ConsoleTarget(ASLEEP))

    async def run() -> tuple[dict[str, str], str]:
        async with connect(proxy, "vm7", token) as ws:
            hello = json.loads(await ws.recv())
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None
        return hello, f"{closed.value.rcvd.code} {closed.value.rcvd.reason}"

    hello, reason = asyncio.run(run())
    assert hello == {"kind": "starting", "instance": "vm7", "note": "starting vm7…"}
    assert reason.startswith("4004 vm7 could not be started: the homecloud agent is not "
                             "running"), reason
    assert len(reason.encode()) <= 5 + 123
    assert "console of vm7: could not wake it" in proxy.log_text()
    assert not still_listed(str(proxy.socket.parent / "open"), "vm7")


def test_terminal(proxy: RunningProxy, workdir: Path) -> None:
    pidfile = workdir / "shell.pid"
    token = proxy.mint("web", ConsoleTarget(
        TERMINAL, argv=("/bin/sh", "-c", f"echo $$ > {pidfile}; exec /bin/sh -i")))

    async def run() -> None:
        async with connect(proxy, "web", token) as ws:
            hello = json.loads(await ws.recv())
            assert hello == {"kind": TERMINAL, "instance": "web", "note": ""}
            await ws.send(json.dumps({"resize": [101, 33]}))
            await ws.send(b"echo ANSWER=$((6*7)); stty size; tty\n")
            seen = await read_until(ws, b"33 101")
            assert b"ANSWER=42" in seen
            await read_until(ws, b"/dev/pts/")

    asyncio.run(run())
    # The tab closed: the shell is gone.
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()


def test_terminal_whose_command_ends(proxy: RunningProxy) -> None:
    token = proxy.mint("web", ConsoleTarget(TERMINAL, argv=("/bin/echo", "bye")))

    async def run() -> str:
        async with connect(proxy, "web", token) as ws:
            await ws.recv()
            await read_until(ws, b"bye")
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.recv()
        assert closed.value.rcvd is not None
        return closed.value.rcvd.reason

    assert asyncio.run(run()) == "the terminal of web ended"


def test_fifty_consoles_at_once(proxy: RunningProxy, workdir: Path) -> None:
    with contextlib.ExitStack() as servers:
        # Ten consoles on each of five VNC servers: qemu drops clients beyond a few that
        # connect at the same moment, a limit of its own, not the proxy's.
        screens = [servers.enter_context(paused_vnc(workdir, f"fifty{n}")) for n in range(5)]
        tokens = [proxy.mint(f"vm{i}", ConsoleTarget(SCREEN, socket=str(screens[i % 5])))
                  for i in range(50)]

        async def run() -> list[tuple[int, int]]:
            async with contextlib.AsyncExitStack() as stack:
                consoles = await asyncio.gather(*(stack.enter_async_context(
                    connect(proxy, f"vm{i}", tokens[i])) for i in range(50)))
                sizes = await asyncio.gather(*(rfb_handshake(ws) for ws in consoles))
                await asyncio.sleep(0.5)
                assert all(ws.state is State.OPEN for ws in consoles)
                return list(sizes)

        sizes = asyncio.run(run())
    assert len(sizes) == 50 and len(set(sizes)) == 1 and sizes[0][0] > 0


def test_excess_consoles_are_refused(workdir: Path, vnc: Path) -> None:
    with console_proxy(workdir / "small", "--max-consoles", "2") as small:
        tokens = [small.mint("vm", ConsoleTarget(SCREEN, socket=str(vnc))) for _ in range(3)]

        async def run() -> str:
            async with connect(small, "vm", tokens[0]) as first, \
                    connect(small, "vm", tokens[1]) as second:
                await rfb_handshake(first)
                await rfb_handshake(second)
                reason = await refusal(small, "vm", tokens[2])
            # Two closed (the proxy notices within moments): the third token was not spent by
            # the refusal.
            async with asyncio.timeout(10):
                while True:
                    async with connect(small, "vm", tokens[2]) as third:
                        try:
                            await rfb_handshake(third)
                            break
                        except ConnectionClosed as closed:
                            assert closed.rcvd is not None and closed.rcvd.code == 1013
                    await asyncio.sleep(0.05)
            return reason

        assert asyncio.run(run()) == ("1013 too many consoles open (2): close one and try "
                                      "again")


class Flood:
    """A server on a UNIX socket that writes as fast as its client takes, counting bytes."""

    def __init__(self, path: Path) -> None:
        self.sent = 0
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        self.listener.listen(1)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        chunk = b"\xa5" * 65536
        try:
            while True:
                self.sent += conn.send(chunk)
        except OSError:
            pass


def test_a_client_that_stops_reading(proxy: RunningProxy, workdir: Path) -> None:
    flood = Flood(workdir / "flood.sock")
    token = proxy.mint("vm9", ConsoleTarget(SCREEN, socket=str(workdir / "flood.sock")))
    before = proxy.rss_kib()

    async def run() -> tuple[int, int]:
        # Our side reads nothing once connected: the kernel's buffers fill, then the proxy's
        # write limit, then the proxy stops reading the server.
        raw = socket.socket(socket.AF_UNIX)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        raw.connect(str(proxy.socket))
        async with unix_connect(sock=raw, uri=proxy.uri("vm9", token),
                                additional_headers={"X-Remote-User": "alice"},
                                max_size=None, max_queue=1) as ws:
            await ws.recv()
            ws.transport.pause_reading()
            await asyncio.sleep(3)
            first = flood.sent
            await asyncio.sleep(2)
            return first, flood.sent

    first, later = asyncio.run(run())
    assert first > 0
    assert later == first, "the proxy kept reading from a console nobody reads"
    assert first < 16 << 20, f"{first} bytes buffered for a client that reads nothing"
    assert proxy.rss_kib() - before < 16 << 10
