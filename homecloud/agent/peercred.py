"""Who is on the other end of a UNIX socket, and may they use the API?

File modes on the socket are the first gate; this is the second: the kernel's record of the
connecting process (SO_PEERCRED) is checked against root and the homecloud group, including the
process's supplementary groups, so a socket made world-writable by mistake still refuses strangers.
"""

from __future__ import annotations

import grp
import socket
import struct
from dataclasses import dataclass

_UCRED = struct.Struct("3i")


@dataclass(frozen=True)
class PeerCredentials:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


def supplementary_groups(pid: int) -> set[int]:
    """The peer process's supplementary groups, from /proc (empty if it has gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except OSError:
        pass
    return set()


def group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def is_permitted(peer: PeerCredentials, allowed_gid: int | None) -> bool:
    if peer.uid == 0:
        return True
    if allowed_gid is None:
        return False
    return peer.gid == allowed_gid or allowed_gid in supplementary_groups(peer.pid)
