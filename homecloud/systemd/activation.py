"""What systemd hands a service it starts: listening sockets (socket activation) and the
notification socket (``Type=notify``). homecloud's own services all start this way."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

LISTEN_FDS_START = 3  # sd_listen_fds(3): the first passed descriptor
_LISTEN_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def inherited_sockets() -> list[tuple[str, socket.socket]]:
    """The listening sockets systemd passed to this process, in order, each with its
    FileDescriptorName= (the socket unit's name by default, so a unit listening on several
    addresses passes several of one name; ``fdN`` when unnamed). Empty when started by hand.
    The variables are removed so that children do not take the sockets for theirs."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(os.environ.get("LISTEN_FDS", "0"))
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    for var in _LISTEN_VARS:
        os.environ.pop(var, None)
    return [(names[i] if i < len(names) and names[i] else f"fd{i}",
             socket.socket(fileno=LISTEN_FDS_START + i)) for i in range(count)]


def unix_listener(path: Path | str, *, mode: int = 0o660, gid: int | None = None,
                  backlog: int = 128) -> socket.socket:
    """Listen on the UNIX socket ``path`` ourselves (a service started without its socket
    unit): a stale socket file is replaced, the file gets ``mode`` (and group ``gid``) before
    anyone can connect."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_socket() or (path.exists() and stat.S_ISSOCK(path.lstat().st_mode)):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~mode)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    if gid is not None:
        os.chown(path, 0, gid)
    sock.listen(backlog)
    return sock


def listener(path: Path | str | None, default: Path | str, **options: int) -> socket.socket:
    """The first socket systemd passed, unless ``path`` asks for another; else one bound at
    ``path`` or ``default``."""
    if path is None:
        passed = inherited_sockets()
        if passed:
            return passed[0][1]
    return unix_listener(path or default, **options)


def notify(**states: object) -> None:
    """sd_notify (READY=1, STATUS=..., STOPPING=1) when systemd is listening for it."""
    with contextlib.suppress(ImportError):  # pystemd is a dependency; tolerate running by hand
        import pystemd.daemon

        pystemd.daemon.notify(False, **states)
