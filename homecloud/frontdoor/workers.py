"""Which of nginx's worker processes still accept connections, read from /proc. After a reload
nginx starts new workers and tells the old ones to stop accepting; until an old one has closed
its listening sockets it may still take a new connection and answer it with the old
configuration. An old worker keeps serving the requests it has (a long download, a websocket):
only its listening sockets matter."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def listening_inodes(tables: Iterable[str]) -> set[str]:
    """The socket inodes of listening TCP sockets in /proc/net/tcp(6) texts."""
    inodes = set()
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[3] == LISTEN:
                inodes.add(fields[9])
    return inodes


def socket_inodes(links: Iterable[str]) -> set[str]:
    """The inodes of ``socket:[N]`` fd link targets."""
    return {link[len("socket:["):-1] for link in links if link.startswith("socket:[")}


def children(pid: int, proc: Path = Path("/proc")) -> set[int]:
    """``pid``'s child processes."""
    found = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The command name in parentheses may hold spaces: the fields after it are fixed.
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def _fd_links(pid: int, proc: Path) -> list[str]:
    out = []
    try:
        names = os.listdir(proc / str(pid) / "fd")
    except OSError:
        return []  # gone
    for name in names:
        try:
            out.append(os.readlink(proc / str(pid) / "fd" / name))
        except OSError:
            continue
    return out


def accepting(pids: Iterable[int], master: int, proc: Path = Path("/proc")) -> set[int]:
    """Those of ``pids`` alive and holding one of ``master``'s listening TCP sockets."""
    tables = []
    for name in ("tcp", "tcp6"):
        try:
            tables.append((proc / str(master) / "net" / name).read_text())
        except OSError:
            continue
    listening = listening_inodes(tables) & socket_inodes(_fd_links(master, proc))
    return {pid for pid in pids if socket_inodes(_fd_links(pid, proc)) & listening}
