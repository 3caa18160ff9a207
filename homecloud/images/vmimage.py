"""What a VM image holds, described by ``vm.json`` at the top of its dataset (pure logic).

Two layouts:

    homecloud  built by `hc image build debian --vm`: the dataset's block volume
               (``volume.raw``) is the root file system itself (ext4, label ``hc-root``, no
               partition table), so identity can be written into a fork without partitions;
               ``boot/vmlinuz`` and ``boot/initrd.img`` boot it directly (microvm, or q35
               without --uefi) with ``cmdline``; ``boot/esp.raw`` is a small GPT disk with an
               EFI system partition (systemd-boot, the same kernel and initrd) for q35 --uefi.
               The guest reports READY on the virtio-serial port ``ready_port`` and runs
               qemu-guest-agent when ``guest_agent`` is true.
    disk       imported (`hc image import NAME disk.qcow2`): ``volume.raw`` is a whole
               bootable disk (partitions, its own bootloader); it boots only as q35, and
               learns its identity through cloud-init.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from homecloud.errors import UserError

METADATA = "vm.json"
VOLUME = "volume.raw"
KERNEL = "boot/vmlinuz"
INITRD = "boot/initrd.img"
ESP = "boot/esp.raw"
ROOT_LABEL = "hc-root"
READY_PORT = "org.homecloud.ready"
LAYOUTS = ("homecloud", "disk")


@dataclass(frozen=True)
class VmImage:
    layout: str  # LAYOUTS
    cmdline: str = ""  # homecloud layout: the kernel command line for direct boot
    ready_port: str | None = None  # virtio-serial port the guest writes READY=1 to
    guest_agent: bool = False  # qemu-guest-agent runs in the guest (hc exec)
    cloud_init: bool = False  # cloud-init runs in the guest (--user-data)
    machines: tuple[str, ...] = ("microvm", "q35")  # what it boots as
    firmware: tuple[str, ...] = ("direct", "uefi")  # direct kernel boot, bios, uefi
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VmImage:
        if data.get("layout") not in LAYOUTS:
            raise UserError(f"vm.json: layout must be one of {', '.join(LAYOUTS)}")
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("machines", "firmware"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def read_vm_image(dataset_path: Path) -> VmImage | None:
    """The VM description of the image whose dataset is at ``dataset_path``; None when the
    image is not a VM image (a container's root tree)."""
    try:
        text = (dataset_path / METADATA).read_text()
    except FileNotFoundError:
        return None
    return VmImage.from_json(json.loads(text))


def write_vm_image(dataset_path: Path, image: VmImage) -> None:
    (dataset_path / METADATA).write_text(json.dumps(image.to_json(), indent=2) + "\n")
