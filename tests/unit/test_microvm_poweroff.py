"""The microVM's clean poweroff: how long its guest gets, and qmp.powerdown against a QMP peer
on a real UNIX socket (done when qemu closes the socket as it exits; not done when it still
runs at the deadline)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from homecloud.instances.drivers.microvm import TCG_STOP_FACTOR, guest_stop_timeout
from homecloud.instances.drivers.qmp import powerdown

GREETING = {"QMP": {"version": {}, "capabilities": []}}


@contextmanager
def qemu_peer(path: Path, exits_after: float | None) -> Iterator[list[str]]:
    """A QMP peer at ``path`` that answers the handshake and the power button, then closes
    the connection after ``exits_after`` seconds (None: keeps running); the commands it got."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    commands: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(json.dumps(GREETING).encode() + b"\n")
            reader = conn.makefile("rb")
            for _ in range(2):  # qmp_capabilities, system_powerdown
                commands.append(json.loads(reader.readline())["execute"])
                conn.sendall(b'{"return": {}}\n')
            conn.sendall(b'{"event": "POWERDOWN"}\n')
            stop.wait(exits_after)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield commands
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_powerdown_is_done_when_qemu_exits(tmp_path: Path) -> None:
    path = tmp_path / "qmp.sock"
    with qemu_peer(path, exits_after=0.2) as commands:
        assert powerdown(path, timeout=10) is True
    assert commands == ["qmp_capabilities", "system_powerdown"]


def test_powerdown_is_not_done_when_qemu_still_runs_at_the_deadline(tmp_path: Path) -> None:
    path = tmp_path / "qmp.sock"
    with qemu_peer(path, exits_after=None):
        started = time.monotonic()
        assert powerdown(path, timeout=0.5) is False
        assert time.monotonic() - started < 5


def test_a_tcg_guest_gets_longer_to_power_off() -> None:
    assert guest_stop_timeout(30, kvm=True) == 30
    assert guest_stop_timeout(30, kvm=False) == 30 * TCG_STOP_FACTOR > 30
