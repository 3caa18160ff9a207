"""The DNS server's one file: where to listen, whom to forward to and the zone description.
The agent writes it and sends hc-dns SIGHUP; the server re-reads it.

    {"listen": ["10.83.12.1", "fd3c:...::1"], "port": 53,
     "upstreams": null,                       # null: the nameservers of /etc/resolv.conf
     "forward_timeout": 1.5,
     "zone": {"host": "alpha", "domain": "home.arpa", ...}}    # see zone.ZoneDescription
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from homecloud.dns.upstream import Server, parse_server
from homecloud.dns.zone import ZoneDescription
from homecloud.errors import UserError
from homecloud.files import write_if_changed

CONFIG_PATH = Path("/var/lib/homecloud/dns.json")
DEFAULT_FORWARD_TIMEOUT = 1.5


@dataclass(frozen=True)
class DnsConfig:
    zone: ZoneDescription
    listen: tuple[str, ...] = ()
    port: int = 53
    upstreams: tuple[Server, ...] | None = None  # None: the machine's resolvers
    forward_timeout: float = DEFAULT_FORWARD_TIMEOUT

    @property
    def endpoints(self) -> tuple[Server, ...]:
        return tuple((address, self.port) for address in self.listen)

    def to_json(self) -> dict[str, Any]:
        return {
            "listen": list(self.listen), "port": self.port,
            "upstreams": None if self.upstreams is None
            else [f"[{a}]:{p}" if ":" in a else f"{a}:{p}" for a, p in self.upstreams],
            "forward_timeout": self.forward_timeout,
            "zone": self.zone.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DnsConfig:
        try:
            upstreams = data.get("upstreams")
            config = cls(
                zone=ZoneDescription.from_json(data["zone"]),
                listen=tuple(str(ip_address(a)) for a in data.get("listen", ())),
                port=int(data.get("port", 53)),
                upstreams=None if upstreams is None
                else tuple(parse_server(str(u)) for u in upstreams),
                forward_timeout=float(data.get("forward_timeout", DEFAULT_FORWARD_TIMEOUT)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"invalid DNS configuration: {type(exc).__name__}: {exc}") from None
        if not 0 < config.port < 65536:
            raise UserError(f"invalid DNS configuration: port {config.port} is out of range")
        if not 0 < config.forward_timeout <= 30:
            raise UserError("invalid DNS configuration: forward_timeout must be in (0, 30] s")
        return config


def load_config(path: Path = CONFIG_PATH) -> DnsConfig:
    """Read the file; a missing file raises FileNotFoundError, a bad one a one-line UserError."""
    text = path.read_text()
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object")
    return DnsConfig.from_json(data)


def write_config(config: DnsConfig, path: Path = CONFIG_PATH) -> bool:
    """Write the file atomically; True if it changed (then send the server SIGHUP)."""
    return write_if_changed(path, json.dumps(config.to_json(), indent=1, sort_keys=True) + "\n")
