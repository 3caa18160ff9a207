"""The host commands systemd runs for a microVM, as ``python -m
homecloud.instances.drivers.vmctl VERB SOCKET ...``:

    powerdown SOCKET SECONDS   the unit's ExecStop: a clean guest poweroff (QMP power button),
                               waiting for qemu to exit; systemd kills what is left after it
    exec SOCKET NAME -- CMD    `hc exec`: CMD through the guest agent, its output and exit
                               status as if it ran here (stdin is passed when it is not a
                               terminal)
    console SOCKET NAME        `hc console --text`: this terminal on the guest's text console;
                               Ctrl-] detaches
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import termios
import tty
from collections.abc import Iterator, Sequence
from pathlib import Path

from homecloud.errors import HomecloudError
from homecloud.instances.drivers.qmp import AgentCommands, guest_agent, guest_exec, powerdown

DETACH = b"\x1d"  # Ctrl-]


def run_powerdown(socket_path: Path, timeout: float) -> int:
    try:
        done = powerdown(socket_path, timeout)
    except (OSError, HomecloudError) as exc:
        print(f"powerdown: {exc}", file=sys.stderr)  # qemu is gone already, or deaf
        return 0
    if not done:
        print(f"the guest did not power off within {timeout:g}s", file=sys.stderr)
    return 0


def run_exec(socket_path: Path, name: str, argv: Sequence[str]) -> int:
    with guest_agent(socket_path, name) as channel:
        return exec_through(channel, argv)


def exec_through(channel: AgentCommands, argv: Sequence[str]) -> int:
    """Run ``argv`` through a guest agent as if it ran here: stdin passed when it is not a
    terminal, the output written out, the exit status returned."""
    stdin = None if os.isatty(0) else sys.stdin.buffer.read()
    result = guest_exec(channel, argv, stdin)
    sys.stdout.buffer.write(result.stdout)
    sys.stdout.buffer.flush()
    sys.stderr.buffer.write(result.stderr)
    sys.stderr.buffer.flush()
    return result.status


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    # TCSANOW, not setraw's default TCSAFLUSH: keys typed while connecting (a browser's
    # console sends them as soon as its page opens) must reach the guest, not be discarded.
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run_console(socket_path: Path, name: str) -> int:
    console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        console.connect(str(socket_path))
    except OSError as exc:
        print(f"VM {name} is not running ({exc.strerror or exc})", file=sys.stderr)
        return 1
    print(f"connected to {name}'s console; Ctrl-] detaches (press Enter for a prompt)",
          file=sys.stderr)
    with console, _raw_terminal(0):
        watched = [0, console.fileno()]
        while True:
            ready, _, _ = select.select(watched, [], [])
            if console.fileno() in ready:
                data = console.recv(65536)
                if not data:
                    break  # the VM stopped
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 4096)
                if not data or DETACH in data:
                    console.sendall(data.split(DETACH)[0])
                    break
                console.sendall(data)
    print(f"\r\ndetached from {name}'s console", file=sys.stderr)
    return 0


def main(argv: Sequence[str]) -> int:
    verb, socket_path, *rest = argv
    try:
        if verb == "powerdown":
            return run_powerdown(Path(socket_path), float(rest[0]))
        if verb == "exec":
            name, separator, *command = rest
            assert separator == "--"
            return run_exec(Path(socket_path), name, command)
        if verb == "console":
            return run_console(Path(socket_path), rest[0])
    except HomecloudError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    print(f"unknown verb {verb}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
