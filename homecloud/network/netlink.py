"""An rtnetlink socket (pyroute2), here or in a named network namespace."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from homecloud.errors import HostError
from homecloud.network.namespaces import in_netns

NETLINK_ROUTE = 0


def _route_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)


@contextmanager
def rtnl(netns: str | None = None) -> Iterator[Any]:
    """An open ``IPRoute``; ``netns`` is a name under /run/netns (None: our own namespace).
    In a namespace, the socket is opened by a thread that joined it (namespaces.in_netns):
    pyroute2's own way forks a process each time."""
    from pyroute2 import IPRoute  # imported only when needed: it takes ~0.2 s to import

    try:
        ipr = IPRoute(fileno=in_netns(netns, _route_socket).detach()) if netns else IPRoute()
    except OSError as exc:
        where = f" in netns {netns}" if netns else ""
        raise HostError(f"cannot open netlink{where}: {exc.strerror or exc}") from None
    with ipr:
        yield ipr
