"""Handing the zone to hc-dns: its file, written with a serial that only grows, and a check that
the server serves it.

The agent writes, then signals the server (SIGHUP, through systemd); ``wait_served`` asks the
server for its SOA until it carries the new serial, so a name is answerable when `hc run`
returns.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from homecloud.dns.config import CONFIG_PATH, DnsConfig, load_config, write_config
from homecloud.errors import HomecloudError


def _unserialed(config: DnsConfig) -> DnsConfig:
    return replace(config, zone=replace(config.zone, serial=0))


class ZoneFile:
    """hc-dns's configuration file, as the agent keeps it."""

    def __init__(self, path: Path = CONFIG_PATH, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock

    def current(self) -> DnsConfig | None:
        try:
            return load_config(self.path)
        except (FileNotFoundError, HomecloudError):  # none yet, or one we replace anyway
            return None

    def write(self, config: DnsConfig) -> DnsConfig | None:
        """Write ``config`` unless the file already says the same; then its serial is the
        old one plus one, or the time if larger (a serial must grow even when the file was
        lost). Returns what was written, or None if nothing changed."""
        old = self.current()
        if old is not None and _unserialed(old) == _unserialed(config):
            return None
        serial = max(old.zone.serial + 1 if old else 1, int(self._clock()))
        written = replace(config, zone=replace(config.zone, serial=serial))
        write_config(written, self.path)
        return written


def served_serial(address: str, port: int, origin: str, timeout: float = 0.2) -> int | None:
    """The SOA serial the server at address:port gives for ``origin``; None if no answer."""
    from dnslib import QTYPE, DNSRecord

    question = DNSRecord.question(origin, "SOA")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(question.pack(), (address, port))
            while True:
                data = sock.recv(4096)
                reply = DNSRecord.parse(data)
                if reply.header.id == question.header.id:
                    break
        except (OSError, ValueError):
            return None
        except Exception:  # dnslib's parse errors
            return None
    soa = [rr for rr in reply.rr if rr.rtype == QTYPE.SOA]
    return int(soa[0].rdata.times[0]) if soa else None


def wait_served(config: DnsConfig, timeout: float = 2.0) -> bool:
    """Wait until the server answers with ``config``'s serial (or a later one) on its first
    listening address; False if it did not within ``timeout`` seconds."""
    if not config.listen:
        return False
    address, origin = config.listen[0], config.zone.origin
    deadline = time.monotonic() + timeout
    pause = 0.002
    while True:
        serial = served_serial(address, config.port, origin)
        if serial is not None and serial >= config.zone.serial:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
