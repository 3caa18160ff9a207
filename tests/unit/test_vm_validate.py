"""What `hc run --vm` refuses before anything is made (the VM driver and the microvm machine;
a pool stand-in answers which images exist, nothing is made)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import cast

import pytest

from homecloud.errors import HostError, UserError
from homecloud.images.vmimage import VmImage, write_vm_image
from homecloud.instances.drivers.base import DriverHost
from homecloud.instances.drivers.vm import VmDriver
from homecloud.instances.spec import InstanceSpec


class Pool:
    """Datasets as directories under ``root`` (only what validation asks)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def exists(self, name: str) -> bool:
        return (self.root / name).is_dir()

    def path(self, name: str) -> Path:
        return self.root / name


def driver(tmp_path: Path) -> VmDriver:
    pool = Pool(tmp_path)
    for name, image in (("debian-vm", VmImage(layout="homecloud", cmdline="console=ttyS0")),
                        ("imported", VmImage(layout="disk", machines=("q35",),
                                             firmware=("bios",)))):
        (tmp_path / "images" / name).mkdir(parents=True, exist_ok=True)
        write_vm_image(tmp_path / "images" / name, image)
    (tmp_path / "images/debian/usr").mkdir(parents=True, exist_ok=True)  # a container image
    return VmDriver(cast(DriverHost, DriverHost(
        pool=pool, images=None, systemd=None, network=None, slice="hc.slice",  # type: ignore
        start_timeout=90, stop_timeout=30, register=False)))


def vm(**changes: object) -> InstanceSpec:
    return InstanceSpec(name="vm1", image=str(changes.pop("image", "debian-vm")), kind="vm",
                        **changes)  # type: ignore[arg-type]


needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                reason="needs qemu-system-x86 installed")


@needs_qemu
def test_a_good_microvm_spec_passes(tmp_path: Path) -> None:
    driver(tmp_path).validate(vm(cpus=1, memory=256 << 20, disk=4 << 30))
    driver(tmp_path).validate(vm(image="not-there"))  # the manager says NotFound


@pytest.mark.parametrize("changes,message", [
    ({"memory": 64 << 20}, r"^--memory 64M is too small: a VM's kernel needs at least 128M$"),
    ({"machine": "pc"}, r"^--machine 'pc' is not known: use microvm or q35$"),
    ({"uefi": True}, r"^--uefi needs a full PC: add --machine q35 \(microvm has no firmware, "
                     r"TPM or CD-ROM\)$"),
    ({"tpm": True, "cdrom": "/x.iso"}, r"^--tpm, --cdrom need a full PC"),
    ({"command": ["true"]}, r"^a VM boots; it does not run a command"),
])
def test_what_a_microvm_refuses_in_one_line(tmp_path: Path, changes: dict[str, object],
                                           message: str) -> None:
    with pytest.raises(UserError, match=message):
        driver(tmp_path).validate(vm(**changes))


@needs_qemu
def test_an_imported_disk_has_no_kernel_for_microvm(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^image 'imported' has no kernel to boot directly "
                                        r"\(an imported disk boots its own\): run it with "
                                        r"--machine q35$"):
        driver(tmp_path).validate(vm(image="imported"))


def test_a_container_image_is_not_a_vm_image(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^image 'debian' is not a VM image"):
        driver(tmp_path).validate(vm(image="debian"))


def test_a_host_without_qemu_names_the_package(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HostError, match=r"qemu-system-x86_64 is not installed on this host: "
                                        r"apt-get install qemu-system-x86") as caught:
        driver(tmp_path).validate(vm())
    assert caught.value.exit_code == 3
