"""Which addresses have a TCP connection open, from the kernel's connection tracking (netlink):
whatever opened it (a browser's websocket, a download, SSH, the wake listener's proxy), in
either direction."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from ipaddress import ip_address

from homecloud.wake.targets import Address

ESTABLISHED = "ESTABLISHED"


def busy_addresses(watched: Iterable[Address]) -> set[Address]:
    """Those of ``watched`` with an established TCP connection (as either end, before or
    after NAT)."""
    from pyroute2 import Conntrack

    wanted = set(watched)
    busy: set[Address] = set()
    for family in (socket.AF_INET, socket.AF_INET6):
        if not any(a.version == (4 if family == socket.AF_INET else 6) for a in wanted):
            continue
        conntrack = Conntrack(nfgen_family=family)
        try:
            for entry in conntrack.dump_entries():
                if entry.protoinfo is None or entry.protoinfo.state_name() != ESTABLISHED:
                    continue
                for tup in (entry.tuple_orig, entry.tuple_reply):
                    for text in (tup.saddr, tup.daddr):
                        if text and ip_address(text) in wanted:
                            busy.add(ip_address(text))
        finally:
            conntrack.close()
    return busy
