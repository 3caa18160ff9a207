"""The console proxy run for tests: the real process on a socket of its own, a state database
of its own, and real VNC servers (qemu, a paused machine: a screen in a fraction of a second)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection

from homecloud.consoles import SOCKET_PREFIX
from homecloud.consoles.tokens import ConsoleTarget, ConsoleTokens
from homecloud.state.store import Store


def wait_for_socket(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(str(path))
                return
            except OSError:
                pass
            finally:
                probe.close()
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {path}")


@contextmanager
def paused_vnc(directory: Path, name: str = "screen") -> Iterator[Path]:
    """A real VNC server on a UNIX socket: qemu with a VGA card and a paused CPU."""
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        pytest.skip("qemu-system-x86_64 is missing: apt-get install qemu-system-x86")
    path = directory / f"{name}.vnc"
    # connections=: qemu's default allows 32 VNC clients at once.
    argv = [qemu, "-M", "pc", "-S", "-accel", "tcg", "-nodefaults", "-vga", "std", "-m", "32",
            "-vnc", f"unix:{path},connections=100"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_socket(path)
        yield path
    finally:
        process.kill()
        process.wait()


@dataclass
class RunningProxy:
    socket: Path
    log: Path
    process: subprocess.Popen[bytes]
    tokens: ConsoleTokens

    def mint(self, instance: str, target: ConsoleTarget, user: str = "alice",
             seconds: float = 60.0) -> str:
        return self.tokens.mint(instance, user, target, time.time(), seconds)

    def uri(self, instance: str, token: str) -> str:
        return f"ws://door{SOCKET_PREFIX}{instance}?token={token}"

    def log_text(self) -> str:
        return self.log.read_text()

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


@contextmanager
def console_proxy(directory: Path, *extra: str) -> Iterator[RunningProxy]:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "proxy.sock"
    database = directory / "state.db"
    log = directory / "proxy.log"
    store = Store(database)
    tokens = ConsoleTokens(store)
    # No agent here: a sleeping instance's console fails to wake, saying so.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HC_SOCKET": str(directory / "no-agent.sock")}
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "homecloud.consoles", "serve",
                                    "--socket", str(path), "--database", str(database),
                                    "--idle-exit", "0", "--open-dir", str(directory / "open"),
                                    *extra],
                                   stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_socket(path)
        yield RunningProxy(path, log, process, tokens)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        store.close()


async def read_until(ws: ClientConnection, wanted: bytes, timeout: float = 10.0) -> bytes:
    """What a console's websocket sends (binary frames) until ``wanted`` appears in it."""
    seen = b""
    async with asyncio.timeout(timeout):
        while wanted not in seen:
            message = await ws.recv()
            if isinstance(message, bytes):
                seen += message
    return seen
