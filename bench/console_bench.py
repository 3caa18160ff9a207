"""Console proxy vs websockify in front of the same VNC server: throughput of full-screen
updates, round trip of a small update, memory per open console.

The VNC server is a minimal RFB server of this file's own (run in a process of its own): it
answers every update request at once with a raw rectangle whose pixels change each time, so
the figures measure the proxies, not the server (qemu answers a paused screen that never
changes slowly). Run as root: /opt/homecloud/venv/bin/python bench/console_bench.py
[--updates 200] [--pings 300] [--consoles 30] [--size 1024x768]. Prints a table; never a
pass/fail."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.asyncio.client import ClientConnection, connect, unix_connect  # noqa: E402

from homecloud.consoles.tokens import SCREEN, ConsoleTarget  # noqa: E402
from tests.system.consoleproxy import console_proxy, wait_for_socket  # noqa: E402

Opener = Callable[[], Awaitable[ClientConnection]]


# Client-to-server messages of RFB 3.8 by type: their fixed length and, for those with a tail,
# the format of the count ending the fixed part and each item's length.
CLIENT_MESSAGES: dict[int, tuple[int, tuple[str, int] | None]] = {
    0: (20, None), 2: (4, (">H", 4)), 3: (10, None), 4: (8, None), 5: (6, None),
    6: (8, (">I", 1))}


async def serve_rfb(path: str, width: int, height: int) -> None:
    """A VNC server on ``path`` (no authentication, 32-bit pixels, raw encoding) that answers
    each FramebufferUpdateRequest at once with the requested area, changed since last time."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await converse(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, KeyError):
            pass  # the client went (or spoke nonsense): this connection ends
        finally:
            writer.close()

    async def converse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"RFB 003.008\n")
        await reader.readexactly(12)
        writer.write(b"\x01\x01")  # one security type: None
        await reader.readexactly(1)
        writer.write(b"\0\0\0\0")
        await reader.readexactly(1)  # shared flag
        name = b"bench"
        writer.write(struct.pack(">HHBBBBHHHBBBxxxI", width, height, 32, 24, 0, 1, 255, 255,
                                 255, 16, 8, 0, len(name)) + name)
        frame = 0
        while True:
            kind = (await reader.readexactly(1))[0]
            length, tail = CLIENT_MESSAGES[kind]
            head = await reader.readexactly(length - 1)
            if tail is not None:
                count_format, item = tail
                count = struct.unpack(count_format,
                                      head[-struct.calcsize(count_format):])[0]
                await reader.readexactly(count * item)
            if kind != 3:
                continue
            _, x, y, w, h = struct.unpack(">BHHHH", head)
            frame = (frame + 1) % 251
            writer.write(struct.pack(">BxHHHHHi", 0, 1, x, y, w, h, 0))
            writer.write(bytes([frame]) * (w * h * 4))
            await writer.drain()

    server = await asyncio.start_unix_server(client, path, backlog=512)
    async with server:
        await server.serve_forever()


class Rfb:
    """Just enough of an RFB client: handshake, raw full-screen and 1x1 updates."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.buffer = b""

    async def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            message = await self.ws.recv()
            if isinstance(message, bytes):
                self.buffer += message
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    async def handshake(self) -> tuple[int, int]:
        await self.read(12)
        await self.ws.send(b"RFB 003.008\n")
        await self.read((await self.read(1))[0])
        await self.ws.send(b"\x01")
        await self.read(4)
        await self.ws.send(b"\x01")
        width, height = struct.unpack(">HH", await self.read(4))
        await self.read(16)
        await self.read(struct.unpack(">I", await self.read(4))[0])
        # 32-bit pixels, raw encoding only: every update is width*height*4 bytes.
        await self.ws.send(struct.pack(">BxxxBBBBHHHBBBxxx", 0, 32, 24, 0, 1, 255, 255, 255,
                                       16, 8, 0))
        await self.ws.send(struct.pack(">BxHi", 2, 1, 0))
        return width, height

    async def update(self, width: int, height: int) -> int:
        await self.ws.send(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
        _, _, rects = struct.unpack(">BBH", await self.read(4))
        size = 0
        for _ in range(rects):
            _, _, w, h, _ = struct.unpack(">HHHHi", await self.read(12))
            size += len(await self.read(w * h * 4))
        return size


async def measure(open_ws: Opener, updates: int, pings: int) -> tuple[float, float]:
    async with await open_ws() as ws:
        rfb = Rfb(ws)
        width, height = await rfb.handshake()
        start = time.perf_counter()
        total = sum([await rfb.update(width, height) for _ in range(updates)])
        throughput = total / (time.perf_counter() - start) / 1e6
        rtts = []
        for _ in range(pings):
            t0 = time.perf_counter()
            await rfb.update(1, 1)
            rtts.append((time.perf_counter() - t0) * 1e3)
    return throughput, statistics.median(rtts)


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def tree(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid] + [p for child in out.split() for p in tree(int(child))]


async def memory_per_console(open_ws: Opener, pid: int, count: int) -> float:
    before = rss_kib(tree(pid))
    sockets = [await open_ws() for _ in range(count)]
    for ws in sockets:
        await Rfb(ws).handshake()
    await asyncio.sleep(0.5)
    after = rss_kib(tree(pid))
    for ws in sockets:
        await ws.close()
    return (after - before) / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--pings", type=int, default=300)
    parser.add_argument("--consoles", type=int, default=30)
    parser.add_argument("--size", default="1024x768", help="the screen (WIDTHxHEIGHT)")
    parser.add_argument("--serve-rfb", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    if args.serve_rfb:
        asyncio.run(serve_rfb(args.serve_rfb, width, height))
        return 0
    with tempfile.TemporaryDirectory() as scratch, \
            rfb_server(Path(scratch), width, height) as vnc, \
            console_proxy(Path(scratch) / "proxy", "--max-consoles", "1000") as proxy:
        port = free_port()
        ws_proxy = subprocess.Popen(["websockify", f"--unix-target={vnc}", f"127.0.0.1:{port}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port)

            async def ours() -> ClientConnection:
                token = proxy.mint("bench", ConsoleTarget(SCREEN, socket=str(vnc)))
                return await unix_connect(str(proxy.socket), proxy.uri("bench", token),
                                          additional_headers={"X-Remote-User": "alice"},
                                          max_size=None)

            async def theirs() -> ClientConnection:
                return await connect(f"ws://127.0.0.1:{port}/", max_size=None,
                                     subprotocols=["binary"])  # type: ignore[list-item]

            async def ours_skipping_hello() -> ClientConnection:
                ws = await ours()
                await ws.recv()  # the proxy's description of the console
                return ws

            rows = []
            for name, opener, pid in (("hc-console", ours_skipping_hello, proxy.process.pid),
                                      ("websockify", theirs, ws_proxy.pid)):
                mbps, rtt = asyncio.run(measure(opener, args.updates, args.pings))
                memory = asyncio.run(memory_per_console(opener, pid, args.consoles))
                rows.append((name, mbps, rtt, memory))
        finally:
            ws_proxy.terminate()
            ws_proxy.wait()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
          f"{os.getloadavg()[0]:.2f}; screen {width}x{height}x32 bit "
          f"({width * height * 4 / 1e6:.1f}"
          f" MB an update), {args.updates} updates, {args.pings} round trips, "
          f"{args.consoles} consoles\n")
    print("| proxy | full-screen updates (MB/s) | 1x1 update round trip p50 (ms) | "
          "memory per open console (KiB) |")
    print("|---|---|---|---|")
    for name, mbps, rtt, memory in rows:
        print(f"| {name} | {mbps:.1f} | {rtt:.3f} | {memory:.0f} |")
    ours_row, theirs_row = rows
    print(f"\nthroughput ratio hc-console / websockify: {ours_row[1] / theirs_row[1]:.2f}; "
          f"latency ratio: {ours_row[2] / theirs_row[2]:.2f}")
    return 0


@contextmanager
def rfb_server(directory: Path, width: int, height: int) -> Iterator[Path]:
    path = directory / "screen.vnc"
    server = subprocess.Popen([sys.executable, __file__, "--serve-rfb", str(path),
                               "--size", f"{width}x{height}"])
    try:
        wait_for_socket(path)
        yield path
    finally:
        server.terminate()
        server.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"websockify never listened on {port}")


if __name__ == "__main__":

    sys.exit(main())
