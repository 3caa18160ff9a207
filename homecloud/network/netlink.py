"""An rtnetlink socket (pyroute2), here or in a named network namespace."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from homecloud.errors import HostError


@contextmanager
def rtnl(netns: str | None = None) -> Iterator[Any]:
    """An open ``IPRoute``; ``netns`` is a name under /run/netns (None: our own namespace)."""
    from pyroute2 import IPRoute  # imported only when needed: it takes ~0.2 s to import

    try:
        # flags=0: never create the namespace, it must exist.
        ipr = IPRoute(netns=netns, flags=0) if netns else IPRoute()
    except OSError as exc:
        where = f" in netns {netns}" if netns else ""
        raise HostError(f"cannot open netlink{where}: {exc.strerror or exc}") from None
    with ipr:
        yield ipr
