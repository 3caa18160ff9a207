"""The records a zone description serves, as plain rows: what `hc dns ls` shows."""

from __future__ import annotations

from typing import Any

from dnslib import QTYPE, RR

from homecloud.dns.zone import ZoneDescription, build_zones


def _row(zone: str, rr: RR) -> dict[str, Any]:
    return {"zone": zone, "name": str(rr.rname).rstrip("."), "type": QTYPE.get(rr.rtype),
            "ttl": rr.ttl, "data": str(rr.rdata).rstrip(".")}


def zone_records(description: ZoneDescription) -> list[dict[str, Any]]:
    """Every record of every zone the host serves (delegations as their NS and glue), the
    forward zone first, then the reverse zones."""
    rows: list[dict[str, Any]] = []
    zones = build_zones(description)
    for zone in sorted(zones.zones, key=lambda z: (z.apex != zones.origin, len(z.apex))):
        apex = ".".join(part.decode() for part in zone.apex)
        for records in zone.records.values():
            for rrs in records.values():
                rows.extend(_row(apex, rr) for rr in rrs)
        for delegation in zone.delegations.values():
            rows.extend(_row(apex, rr) for rr in (*delegation.ns, *delegation.glue))
    return rows
