"""The libvirt domain XML of q35 VMs, and what is read back from a running domain's XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from homecloud.instances.drivers.domainxml import (
    OVMF_CODE,
    OVMF_VARS,
    DirectBoot,
    Disk,
    DomainConfig,
    channel_path,
    domain_xml,
    instance_of,
    slice_partition,
    vnc_socket,
)

MACHINE_ID = "0123456789abcdef0123456789abcdef"
DATASET = Path("/pool/instances/vm2")


def config(**changes: object) -> DomainConfig:
    base: dict[str, object] = dict(
        instance="vm2", machine_id=MACHINE_ID, kvm=False, vcpus=2, memory_mib=512,
        disks=(Disk(DATASET / "volume.raw"),),
        direct=DirectBoot(DATASET / "boot/vmlinuz", DATASET / "boot/initrd.img",
                          "root=LABEL=hc-root console=ttyS0"),
        tap="hct0123", mac="02:aa:bb:cc:dd:ee", serial_log=DATASET / "console.log",
        partition="/hc")
    base.update(changes)
    return DomainConfig(**base)  # type: ignore[arg-type]


def parse(cfg: DomainConfig) -> ET.Element:
    return ET.fromstring(domain_xml(cfg))


def test_direct_boot_of_homecloud_images_under_tcg() -> None:
    dom = parse(config())
    assert dom.get("type") == "qemu"  # TCG: this host's KVM runs no vCPU
    assert dom.findtext("name") == "hc-vm2"
    assert dom.findtext("uuid") == "01234567-89ab-cdef-0123-456789abcdef"
    assert dom.find("memory").text == "512" and dom.find("memory").get("unit") == "MiB"
    assert dom.findtext("vcpu") == "2"
    assert dom.find("os/type").get("machine") == "q35"
    assert dom.findtext("os/kernel") == str(DATASET / "boot/vmlinuz")
    assert dom.findtext("os/initrd") == str(DATASET / "boot/initrd.img")
    assert dom.findtext("os/cmdline") == "root=LABEL=hc-root console=ttyS0"
    assert dom.find("os/loader") is None and dom.find("os/nvram") is None
    assert dom.find("features/acpi") is not None
    assert dom.findtext("resource/partition") == "/hc"
    assert dom.find("cpu") is None
    assert dom.find("devices/tpm") is None


def test_kvm_passes_the_host_cpu_through() -> None:
    dom = parse(config(kvm=True))
    assert dom.get("type") == "kvm"
    assert dom.find("cpu").get("mode") == "host-passthrough"


def test_the_nic_is_the_tap_homecloud_made() -> None:
    nic = parse(config()).find("devices/interface")
    assert nic.get("type") == "ethernet"
    assert nic.find("target").attrib == {"dev": "hct0123", "managed": "no"}
    assert nic.find("mac").get("address") == "02:aa:bb:cc:dd:ee"
    assert nic.find("model").get("type") == "virtio"
    assert parse(config(tap=None)).find("devices/interface") is None


def test_uefi_keeps_nvram_of_its_own_and_tpm_is_swtpm() -> None:
    dom = parse(config(direct=None, uefi=True, nvram=DATASET / "nvram.fd", tpm=True,
                       disks=(Disk(DATASET / "volume.raw"),
                              Disk(DATASET / "boot/esp.raw", boot_order=1))))
    loader = dom.find("os/loader")
    assert loader.text == str(OVMF_CODE) and loader.get("type") == "pflash"
    nvram = dom.find("os/nvram")
    assert nvram.text == str(DATASET / "nvram.fd") and nvram.get("template") == str(OVMF_VARS)
    assert dom.find("os/kernel") is None
    tpm = dom.find("devices/tpm")
    assert tpm.get("model") == "tpm-crb"
    assert tpm.find("backend").attrib == {"type": "emulator", "version": "2.0"}
    disks = dom.findall("devices/disk")
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb"]
    assert disks[0].find("boot") is None
    assert disks[1].find("boot").get("order") == "1"


def test_disks_seed_and_cdrom() -> None:
    dom = parse(config(direct=None, disks=(
        Disk(DATASET / "volume.raw", boot_order=1), Disk(DATASET / "seed.img", readonly=True),
        Disk(Path("/srv/installer.iso"), device="cdrom", boot_order=2))))
    disks = dom.findall("devices/disk")
    assert [(d.get("device"), d.find("target").get("dev"), d.find("target").get("bus"))
            for d in disks] == [("disk", "vda", "virtio"), ("disk", "vdb", "virtio"),
                                ("cdrom", "sda", "sata")]
    assert [d.find("source").get("file") for d in disks] == [
        str(DATASET / "volume.raw"), str(DATASET / "seed.img"), "/srv/installer.iso"]
    assert disks[0].find("readonly") is None
    assert disks[1].find("readonly") is not None and disks[2].find("readonly") is not None
    assert [d.find("boot").get("order") if d.find("boot") is not None else None
            for d in disks] == ["1", None, "2"]


def test_console_vnc_and_channels() -> None:
    dom = parse(config())
    serial = dom.find("devices/serial")
    assert serial.get("type") == "pty"
    assert serial.find("log").attrib == {"file": str(DATASET / "console.log"), "append": "on"}
    assert dom.find("devices/graphics/listen").get("type") == "socket"
    names = [c.find("target").get("name") for c in dom.findall("devices/channel")]
    assert names == ["org.homecloud.ready", "org.qemu.guest_agent.0"]
    plain = parse(config(ready_channel=False, agent_channel=False))
    assert plain.findall("devices/channel") == []


def test_qemu_runs_as_root_without_relabelling_the_pool() -> None:
    label = parse(config()).find("seclabel")
    assert label.attrib == {"type": "static", "model": "dac", "relabel": "no"}
    assert label.findtext("label") == "+0:+0"


# What libvirt 9.0 answers for a running domain (trimmed).
CHANNELS = "/var/lib/libvirt/qemu/channel/target/domain-3-hc-vm2"
LIVE = f"""<domain type='qemu' id='3'>
  <name>hc-vm2</name>
  <metadata><hc:instance xmlns:hc="https://homecloud.invalid/xmlns/vm/1" name="vm2"/></metadata>
  <devices>
    <channel type='unix'>
      <source mode='bind' path='{CHANNELS}/org.homecloud.ready'/>
      <target type='virtio' name='org.homecloud.ready' state='disconnected'/>
    </channel>
    <channel type='unix'>
      <source mode='bind' path='{CHANNELS}/org.qemu.guest_agent.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0' state='connected'/>
    </channel>
    <graphics type='vnc' socket='/var/lib/libvirt/qemu/domain-3-hc-vm2/vnc.sock'>
      <listen type='socket' socket='/var/lib/libvirt/qemu/domain-3-hc-vm2/vnc.sock'/>
    </graphics>
  </devices>
</domain>"""


def test_socket_paths_are_read_from_the_live_xml() -> None:
    base = "/var/lib/libvirt/qemu/channel/target/domain-3-hc-vm2/"
    assert channel_path(LIVE, "org.homecloud.ready") == Path(base + "org.homecloud.ready")
    assert channel_path(LIVE, "org.qemu.guest_agent.0") == Path(base + "org.qemu.guest_agent.0")
    assert channel_path(LIVE, "other") is None
    assert vnc_socket(LIVE) == Path("/var/lib/libvirt/qemu/domain-3-hc-vm2/vnc.sock")
    assert vnc_socket("<domain><devices/></domain>") is None


def test_homecloud_domains_carry_their_instance_name() -> None:
    assert instance_of(LIVE) == "vm2"
    assert instance_of(domain_xml(config())) == "vm2"
    assert instance_of("<domain><name>other</name></domain>") is None


def test_slice_becomes_a_resource_partition() -> None:
    assert slice_partition("hc.slice") == "/hc"
    assert slice_partition("hc-vms.slice") == "/hc/vms"
