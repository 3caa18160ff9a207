"""Where the provisioning processes find their settings and write dnsmasq's configuration."""

from __future__ import annotations

from pathlib import Path

from homecloud.errors import UserError
from homecloud.machines.dnsmasq_conf import (
    BOOT_DIR,
    DnsmasqConfig,
    KnownMachine,
    ProvisionSettings,
)
from homecloud.machines.records import MachineRecords

DHCP_CONFIG = Path("/run/homecloud/dhcp/dnsmasq.conf")


def current_settings(records: MachineRecords) -> ProvisionSettings:
    data = records.settings()
    if data is None:
        raise UserError("network boot is not enabled: run `hc provision enable`")
    return ProvisionSettings.from_json(data)


def known_machines(records: MachineRecords) -> list[KnownMachine]:
    from ipaddress import IPv4Address

    out = []
    for record in records.all():
        address = record.network.get("address4")
        out.append(KnownMachine(record.spec.mac, record.name,
                                IPv4Address(address) if address else None))
    return out


def render_dhcp_config(records: MachineRecords, boot_dir: Path = BOOT_DIR) -> str:
    return DnsmasqConfig(current_settings(records), known_machines(records), boot_dir).render()


def write_dhcp_config(records: MachineRecords, boot_dir: Path = BOOT_DIR,
                      path: Path = DHCP_CONFIG) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_dhcp_config(records, boot_dir))
    tmp.replace(path)
    return path
