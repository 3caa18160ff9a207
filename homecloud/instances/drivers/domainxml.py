"""The libvirt domain XML of a q35 VM, and what homecloud reads back from a running domain's
XML (pure logic: no I/O).

    q35 PC          direct kernel boot (homecloud's own images) or firmware: SeaBIOS, or OVMF
                    with NVRAM of the VM's own kept in its dataset
    disks           the forked volume (virtio), then the image's EFI system partition (--uefi on
                    homecloud's own images), the cloud-init seed (virtio, read-only), the CD-ROM
    TPM 2.0         swtpm, its state kept by libvirt per domain UUID
    NIC             virtio on the tap homecloud made (type='ethernet', managed='no')
    channels        org.homecloud.ready (READY from the guest) and qemu-guest-agent; libvirt
                    chooses the socket paths, read back with ``channel_path``
    VNC             on a UNIX socket libvirt chooses (``vnc_socket``)
    serial          a pty (`hc console`), logged to a file in the VM's dataset (`hc logs`)

The domain's UUID is the instance's machine-id, so everything libvirt keeps by UUID (the TPM
state) can be found and removed from the instance record alone.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from homecloud.images.vmimage import READY_PORT
from homecloud.instances.drivers.qemu import GUEST_AGENT_PORT

DOMAIN_PREFIX = "hc-"
METADATA_NS = "https://homecloud.invalid/xmlns/vm/1"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
OVMF_PACKAGE = "ovmf"


def domain_name(instance: str) -> str:
    """The libvirt domain of instance NAME is hc-NAME, like its unit."""
    return f"{DOMAIN_PREFIX}{instance}"


def domain_uuid(machine_id: str) -> str:
    return str(uuid.UUID(hex=machine_id))


def slice_partition(slice_name: str) -> str:
    """libvirt's resource partition for a systemd slice: hc.slice -> /hc, a-b.slice -> /a/b."""
    stem = slice_name.removesuffix(".slice")
    return "/" + stem.replace("-", "/")


@dataclass(frozen=True)
class Disk:
    path: Path
    device: str = "disk"  # disk | cdrom
    readonly: bool = False
    boot_order: int | None = None

    @property
    def bus(self) -> str:
        # q35 has no IDE: a CD-ROM sits on SATA; disks are virtio.
        return "sata" if self.device == "cdrom" else "virtio"


@dataclass(frozen=True)
class DirectBoot:
    kernel: Path
    initrd: Path | None
    cmdline: str


@dataclass(frozen=True)
class DomainConfig:
    instance: str
    machine_id: str
    kvm: bool  # domain type kvm when the host's KVM runs a vCPU, else qemu (TCG)
    vcpus: int
    memory_mib: int
    disks: tuple[Disk, ...]
    direct: DirectBoot | None = None  # None: boot through firmware from the disks
    uefi: bool = False
    nvram: Path | None = None  # with uefi: the VM's own copy of OVMF's variables
    tpm: bool = False
    tap: str | None = None  # None: no NIC (--network none)
    mac: str = ""
    serial_log: Path | None = None
    partition: str | None = None  # libvirt resource partition (the host's slice)
    ready_channel: bool = True
    agent_channel: bool = True

    @property
    def name(self) -> str:
        return domain_name(self.instance)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def _os(domain: ET.Element, config: DomainConfig) -> None:
    os_el = _sub(domain, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="q35")
    if config.uefi:
        _sub(os_el, "loader", str(OVMF_CODE), readonly="yes", type="pflash")
        nvram = _sub(os_el, "nvram", template=str(OVMF_VARS))
        if config.nvram is not None:
            nvram.text = str(config.nvram)
    if config.direct is not None:
        _sub(os_el, "kernel", str(config.direct.kernel))
        if config.direct.initrd is not None:
            _sub(os_el, "initrd", str(config.direct.initrd))
        _sub(os_el, "cmdline", config.direct.cmdline)


def _disk(devices: ET.Element, disk: Disk, target: str) -> None:
    element = _sub(devices, "disk", type="file", device=disk.device)
    _sub(element, "driver", name="qemu", type="raw",
         **({} if disk.device == "cdrom" else {"discard": "unmap"}))
    _sub(element, "source", file=str(disk.path))
    _sub(element, "target", dev=target, bus=disk.bus)
    if disk.readonly or disk.device == "cdrom":
        _sub(element, "readonly")
    if disk.boot_order is not None:
        _sub(element, "boot", order=str(disk.boot_order))


def _targets(disks: tuple[Disk, ...]) -> list[str]:
    """vda, vdb, ... for virtio disks; sda, ... for CD-ROMs."""
    counts = {"virtio": 0, "sata": 0}
    names = []
    for disk in disks:
        prefix = "vd" if disk.bus == "virtio" else "sd"
        names.append(prefix + chr(ord("a") + counts[disk.bus]))
        counts[disk.bus] += 1
    return names


def _channel(devices: ET.Element, name: str) -> None:
    channel = _sub(devices, "channel", type="unix")
    _sub(channel, "source", mode="bind")  # libvirt chooses the path
    _sub(channel, "target", type="virtio", name=name)


def domain_xml(config: DomainConfig) -> str:
    domain = ET.Element("domain", type="kvm" if config.kvm else "qemu")
    _sub(domain, "name", config.name)
    _sub(domain, "uuid", domain_uuid(config.machine_id))
    _sub(domain, "title", f"homecloud VM {config.instance}")
    metadata = _sub(domain, "metadata")
    ET.SubElement(metadata, f"{{{METADATA_NS}}}instance", {"name": config.instance})
    _sub(domain, "memory", str(config.memory_mib), unit="MiB")
    _sub(domain, "vcpu", str(config.vcpus))
    if config.partition:
        _sub(_sub(domain, "resource"), "partition", config.partition)
    _os(domain, config)
    features = _sub(domain, "features")
    _sub(features, "acpi")  # without it, a guest's poweroff only halts
    _sub(features, "apic")
    if config.kvm:
        _sub(domain, "cpu", mode="host-passthrough")
    _sub(domain, "clock", offset="utc")
    _sub(domain, "on_poweroff", "destroy")
    _sub(domain, "on_reboot", "restart")
    _sub(domain, "on_crash", "destroy")
    # The disk, NVRAM and seed live in the pool, which only root may enter: qemu runs as root,
    # as it does for homecloud's microVMs, and libvirt leaves the files' owners alone.
    seclabel = _sub(domain, "seclabel", type="static", model="dac", relabel="no")
    _sub(seclabel, "label", "+0:+0")

    devices = _sub(domain, "devices")
    for disk, target in zip(config.disks, _targets(config.disks), strict=True):
        _disk(devices, disk, target)
    if config.tap is not None:
        nic = _sub(devices, "interface", type="ethernet")
        _sub(nic, "mac", address=config.mac)
        _sub(nic, "target", dev=config.tap, managed="no")
        _sub(nic, "model", type="virtio")
    serial = _sub(devices, "serial", type="pty")
    if config.serial_log is not None:
        _sub(serial, "log", file=str(config.serial_log), append="on")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    if config.ready_channel:
        _channel(devices, READY_PORT)
    if config.agent_channel:
        _channel(devices, GUEST_AGENT_PORT)
    graphics = _sub(devices, "graphics", type="vnc")
    _sub(graphics, "listen", type="socket")  # libvirt chooses the path: vnc_socket()
    _sub(devices, "input", type="tablet", bus="usb")
    if config.tpm:
        tpm = _sub(devices, "tpm", model="tpm-crb")
        _sub(tpm, "backend", type="emulator", version="2.0")
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    _sub(devices, "memballoon", model="none")
    return ET.tostring(domain, encoding="unicode")


# -- reading a running domain's XML ---------------------------------------------------------------

def channel_path(xml: str, name: str) -> Path | None:
    """The host socket of the virtio channel ``name``."""
    for channel in ET.fromstring(xml).iterfind("devices/channel"):
        target = channel.find("target")
        source = channel.find("source")
        if target is not None and target.get("name") == name and source is not None:
            path = source.get("path")
            return Path(path) if path else None
    return None


def vnc_socket(xml: str) -> Path | None:
    """The UNIX socket the domain's VNC server listens on."""
    for graphics in ET.fromstring(xml).iterfind("devices/graphics"):
        if graphics.get("type") != "vnc":
            continue
        path = graphics.get("socket")
        for listen in graphics.iterfind("listen"):
            path = path or listen.get("socket")
        if path:
            return Path(path)
    return None


def instance_of(xml: str) -> str | None:
    """The homecloud instance a domain belongs to (its metadata), None for other domains."""
    element = ET.fromstring(xml).find(f"metadata/{{{METADATA_NS}}}instance")
    return None if element is None else element.get("name")
