"""dnsmasq's configuration for network boot, rendered from homecloud's settings. Pure.

Two modes:
- proxyDHCP (the default): the LAN's DHCP server keeps handing out addresses; dnsmasq adds
  only the boot offer (``dhcp-range=NET,proxy`` + ``pxe-service``).
- full DHCP: dnsmasq gives addresses too, each known machine its homecloud lease
  (``dhcp-host=MAC,ADDRESS,NAME``), from the user's range otherwise.
In both, a MAC homecloud does not know gets nothing (``dhcp-ignore=tag:!known``). A plain PXE
ROM is sent iPXE over TFTP (undionly.kpxe for BIOS, ipxe.efi for UEFI, by client
architecture, from homecloud's boot directory: boot_files.py); UEFI HTTP boot firmware
(architecture 16, vendor class "HTTPClient") is sent the URL of ipxe.efi on the provisioning
server, with "HTTPClient" as the answer's vendor class, which that firmware insists on; iPXE
itself (DHCP option 175 / user class "iPXE") gets the URL of its boot script there. dnsmasq's
DNS server is off (port=0): homecloud answers DNS itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

from homecloud.errors import UserError

PROXY = "proxy"
FULL = "dhcp"
MODES = (PROXY, FULL)
HTTP_PORT = 8067
DHCP_PORT = 67
TFTP_PORT = 69
# The iPXE binaries as homecloud serves them: TFTP's root, and /boot/ over HTTP.
BOOT_DIR = Path("/var/lib/homecloud/boot")
BOOT_URL_PATH = "boot"
BIOS_LOADER = "undionly.kpxe"
UEFI_LOADER = "ipxe.efi"
# DHCP option 93 (client architecture, RFC 4578 and IANA's registry): 7 and 9 are x86-64 UEFI,
# 6 IA32 UEFI; 16 is x86-64 UEFI HTTP boot.
UEFI_ARCHES = (6, 7, 9)
UEFI_HTTP_ARCH = 16
HTTP_CLIENT = "HTTPClient"
LEASE_TIME = "1h"


@dataclass(frozen=True)
class DhcpRange:
    start: IPv4Address
    end: IPv4Address

    @classmethod
    def parse(cls, text: str, interface: IPv4Interface | None = None) -> DhcpRange:
        """``A-B`` inside ``interface``'s subnet (when given); UserError otherwise."""
        parts = text.split("-")
        try:
            if len(parts) != 2:
                raise ValueError
            start, end = IPv4Address(parts[0].strip()), IPv4Address(parts[1].strip())
        except ValueError:
            raise UserError(f"--dhcp-range {text!r} is invalid: use FIRST-LAST IPv4 addresses, "
                            "like 10.0.0.100-10.0.0.150") from None
        if end < start:
            raise UserError(f"--dhcp-range {text!r}: the last address is before the first")
        if interface is not None:
            net = interface.network
            if start not in net or end not in net:
                raise UserError(f"--dhcp-range {text!r} is not inside the interface's "
                                f"subnet {net}")
            if interface.ip in (start, end) or start < interface.ip < end:
                raise UserError(f"--dhcp-range {text!r} contains the host's own address "
                                f"{interface.ip}")
        return cls(start, end)

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


@dataclass(frozen=True)
class KnownMachine:
    mac: str
    name: str
    address: IPv4Address | None = None  # full DHCP: its homecloud lease


@dataclass(frozen=True)
class ProvisionSettings:
    """What `hc provision enable` chose: the interface, its address, the mode."""

    interface: str
    address: IPv4Interface  # the host's address on it: the server machines talk to
    mode: str = PROXY
    dhcp_range: DhcpRange | None = None  # full DHCP only
    gateway: IPv4Address | None = None  # full DHCP: handed to machines
    dns: tuple[IPv4Address, ...] = ()
    domain: str = ""
    port: int = HTTP_PORT

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"provisioning mode {self.mode!r} is invalid: use {', '.join(MODES)}")
        if (self.mode == FULL) != (self.dhcp_range is not None):
            raise UserError("full DHCP needs --dhcp-range, and only full DHCP takes one")

    @property
    def url(self) -> str:
        return f"http://{self.address.ip}:{self.port}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(address=str(self.address),
                    dhcp_range=str(self.dhcp_range) if self.dhcp_range else None,
                    gateway=str(self.gateway) if self.gateway else None,
                    dns=[str(d) for d in self.dns])
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProvisionSettings:
        return cls(interface=str(data["interface"]), address=IPv4Interface(data["address"]),
                   mode=str(data.get("mode", PROXY)),
                   dhcp_range=(DhcpRange.parse(data["dhcp_range"])
                               if data.get("dhcp_range") else None),
                   gateway=IPv4Address(data["gateway"]) if data.get("gateway") else None,
                   dns=tuple(IPv4Address(d) for d in data.get("dns", ())),
                   domain=str(data.get("domain", "")), port=int(data.get("port", HTTP_PORT)))


@dataclass(frozen=True)
class DnsmasqConfig:
    settings: ProvisionSettings
    machines: Sequence[KnownMachine] = ()
    tftp_root: Path = BOOT_DIR

    def render(self) -> str:
        s = self.settings
        script = f"{s.url}/boot.ipxe?mac=${{netX/mac}}"
        efi_url = f"{s.url}/{BOOT_URL_PATH}/{UEFI_LOADER}"
        lines = [
            "# Rendered by homecloud (hc provision); changes here are overwritten.",
            "port=0",
            f"interface={s.interface}",
            "bind-dynamic",
            "log-dhcp",
            # Known machines have fixed addresses; a range address may change after a restart.
            "leasefile-ro",
            "enable-tftp",
            f"tftp-root={self.tftp_root}",
            # MACs homecloud does not know get no answer at all.
            "dhcp-ignore=tag:!known",
            "dhcp-match=set:ipxe,175",
            "dhcp-userclass=set:ipxe,iPXE",
            *(f"dhcp-match=set:efi,option:client-arch,{arch}" for arch in UEFI_ARCHES),
            f"dhcp-match=set:efihttp,option:client-arch,{UEFI_HTTP_ARCH}",
            # HTTP boot firmware takes only an answer whose vendor class is its own.
            f"dhcp-option-force=tag:efihttp,option:vendor-class,{HTTP_CLIENT}",
        ]
        for machine in sorted(self.machines, key=lambda m: m.mac):
            _check_host_field(machine.name)
            if s.mode == FULL and machine.address is not None:
                lines.append(f"dhcp-host={machine.mac},{machine.address},{machine.name}")
            else:
                lines.append(f"dhcp-host={machine.mac},set:machine")
        if s.mode == PROXY:
            lines += [
                f"dhcp-range={s.address.network.network_address},proxy",
                # HTTP boot firmware asks as "HTTPClient": a PXE client to the proxy too.
                f"dhcp-pxe-vendor=PXEClient,{HTTP_CLIENT}",
                "pxe-prompt=homecloud,0",
                f'pxe-service=tag:!ipxe,x86PC,"homecloud",{BIOS_LOADER}',
                f'pxe-service=tag:!ipxe,x86-64_EFI,"homecloud",{UEFI_LOADER}',
                # HTTP boot firmware does no PXE boot server discovery: the boot file name
                # must be in the proxy's offer itself.
                f"dhcp-boot=tag:!ipxe,tag:efihttp,{efi_url}",
                f'pxe-service=tag:ipxe,x86PC,"homecloud",{script}',
                f'pxe-service=tag:ipxe,x86-64_EFI,"homecloud",{script}',
            ]
        else:
            assert s.dhcp_range is not None
            lines += [
                f"dhcp-range={s.dhcp_range.start},{s.dhcp_range.end},{s.address.netmask},"
                f"{LEASE_TIME}",
                "dhcp-authoritative",
                f"dhcp-option=option:router,{s.gateway or s.address.ip}",
            ]
            if s.dns:
                lines.append(f"dhcp-option=option:dns-server,{','.join(map(str, s.dns))}")
            if s.domain:
                lines.append(f"dhcp-option=option:domain-name,{s.domain}")
            lines += [
                f"dhcp-boot=tag:ipxe,{script}",
                f"dhcp-boot=tag:!ipxe,tag:efihttp,{efi_url}",
                f"dhcp-boot=tag:!ipxe,tag:efi,{UEFI_LOADER}",
                f"dhcp-boot=tag:!ipxe,tag:!efi,tag:!efihttp,{BIOS_LOADER}",
            ]
        return "\n".join(lines) + "\n"


def _check_host_field(name: str) -> None:
    # Names are validated instance names already; a comma or newline here would change the
    # meaning of the line, so refuse it rather than render it.
    if not name or any(c in name for c in ",\n\r= "):
        raise ValueError(f"machine name {name!r} cannot go into a dhcp-host line")
