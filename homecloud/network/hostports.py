"""Whether a host port is free: a real bind of the wildcard address, as a listener would."""

from __future__ import annotations

import errno
import socket

from homecloud.errors import Conflict
from homecloud.network.ports import PortMapping


def _bindable(family: socket.AddressFamily, kind: socket.SocketKind, port: int) -> bool:
    """Whether a socket could bind the wildcard address on ``port``: False if someone has it."""
    try:
        sock = socket.socket(family, kind)
    except OSError:  # no IPv6 on this host: nothing can be listening there
        return True
    with sock:
        if kind == socket.SOCK_STREAM:  # TIME_WAIT leftovers are not a listener
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            if exc.errno == errno.EADDRNOTAVAIL:  # IPv6 disabled: nothing listens there
                return True
            raise
    return True


def check_host_port_free(mapping: PortMapping) -> None:
    """Refuse a host port a program on the host listens on: the published port would hide it."""
    kind = socket.SOCK_STREAM if mapping.protocol == "tcp" else socket.SOCK_DGRAM
    for family in (socket.AF_INET, socket.AF_INET6):
        if not _bindable(family, kind, mapping.host_port):
            raise Conflict(f"-p {mapping}: host port {mapping.host_port}/{mapping.protocol} is "
                           "already in use on this host; choose another host port")
