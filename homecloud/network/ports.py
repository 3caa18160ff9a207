"""Published ports (`hc run -p HOST:GUEST[/udp]`): parsing and the checks made before any rule
is written: range, form, duplicates, ports published by another instance or used on the host."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from homecloud.errors import Conflict, UserError

PROTOCOLS = ("tcp", "udp")
PORT_RANGE = (1, 65535)
_MAPPING_RE = re.compile(r"(\d{1,5}):(\d{1,5})(?:/([a-z]+))?")


@dataclass(frozen=True, order=True)
class PortMapping:
    host_port: int
    guest_port: int
    protocol: str = "tcp"

    def __str__(self) -> str:
        return f"{self.host_port}:{self.guest_port}/{self.protocol}"

    @property
    def host_key(self) -> tuple[int, str]:
        """What must be unique on the host: one host port per protocol."""
        return (self.host_port, self.protocol)

    def to_json(self) -> dict[str, Any]:
        return {"host_port": self.host_port, "guest_port": self.guest_port,
                "protocol": self.protocol}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PortMapping:
        return cls(int(data["host_port"]), int(data["guest_port"]),
                   str(data.get("protocol", "tcp")))


def _check_port(port: int, text: str) -> None:
    low, high = PORT_RANGE
    if not low <= port <= high:
        raise UserError(f"-p {text}: port {port} is out of range ({low}-{high})")


def parse_port_mapping(text: str) -> PortMapping:
    """``HOST:GUEST`` or ``HOST:GUEST/udp`` as typed after ``-p``."""
    match = _MAPPING_RE.fullmatch(text.strip())
    shown = repr(text) if text.isprintable() else ascii(text)
    if not match:
        raise UserError(f"-p {shown} is invalid: use HOST:GUEST or HOST:GUEST/udp, like 8080:80")
    host, guest, protocol = int(match[1]), int(match[2]), match[3] or "tcp"
    if protocol not in PROTOCOLS:
        raise UserError(f"-p {shown}: protocol {protocol!r} is not supported (use tcp or udp)")
    _check_port(host, text)
    _check_port(guest, text)
    return PortMapping(host, guest, protocol)


def check_unique(mappings: Iterable[PortMapping]) -> None:
    """Refuse the same host port (and protocol) given twice."""
    seen: set[tuple[int, str]] = set()
    for mapping in mappings:
        if mapping.host_key in seen:
            raise UserError(f"-p {mapping}: host port {mapping.host_port}/{mapping.protocol} "
                            "is given twice")
        seen.add(mapping.host_key)


def check_not_published(instance: str, mappings: Iterable[PortMapping],
                        published: Mapping[str, Iterable[PortMapping]]) -> None:
    """Refuse a host port another instance already publishes (``published``: by instance)."""
    owners = {m.host_key: name for name, ms in published.items() if name != instance
              for m in ms}
    for mapping in mappings:
        owner = owners.get(mapping.host_key)
        if owner is not None:
            raise Conflict(f"-p {mapping}: host port {mapping.host_port}/{mapping.protocol} is "
                           f"already published by instance {owner}; choose another host port")
