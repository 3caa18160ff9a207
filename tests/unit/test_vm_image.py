"""VM images, pure parts: disk headers and partition tables, the guest's files, the ESP layout,
the VM recipe's options and the image listing's column. No root, no tools."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import pytest

from homecloud.cli.images import boots_as
from homecloud.errors import HostError, UserError
from homecloud.images.diskformat import (
    ESP_GUID,
    PARTITION_TABLE_BYTES,
    DiskFormatError,
    has_efi_partition,
    has_partition_table,
    parse_qcow2_header,
)
from homecloud.images.diskimport import describe_disk, sniff_disk, volume_bytes
from homecloud.images.recipes import build_image, default_image_name, get_recipe
from homecloud.images.recipes.debian_vm import boot_files, loader_files
from homecloud.images.vmdisk import ESP_MIN_SIZE, MIB, _directories, esp_size, sfdisk_script
from homecloud.images.vmguest import CMDLINE, FILES, READY_DEVICE_UNIT, READY_UNIT
from homecloud.images.vmimage import READY_PORT, VmImage

# -- qcow2 headers ----------------------------------------------------------------------------


def qcow2_header(version: int = 3, backing: tuple[int, int] = (0, 0), incompatible: int = 0,
                 size: int = 1 << 30) -> bytes:
    head = struct.pack(">4sIQIIQ", b"QFI\xfb", version, backing[0], backing[1], 16, size)
    head = head.ljust(72, b"\0")
    if version == 3:
        head += struct.pack(">QQQII", incompatible, 0, 0, 4, 104)
    return head.ljust(512, b"\0")


def test_qcow2_header_facts() -> None:
    header = parse_qcow2_header(qcow2_header(size=5 << 30))
    assert (header.version, header.backing_file, header.external_data_file, header.size) == (
        3, False, False, 5 << 30)
    assert parse_qcow2_header(qcow2_header(backing=(512, 9))).backing_file
    assert parse_qcow2_header(qcow2_header(version=2, backing=(512, 9))).backing_file
    assert parse_qcow2_header(qcow2_header(incompatible=4)).external_data_file
    assert not parse_qcow2_header(qcow2_header(incompatible=1)).external_data_file  # dirty bit


@pytest.mark.parametrize("head, message", [
    (qcow2_header()[:40], "header is truncated"),
    (qcow2_header()[:80], "header is truncated"),
    (qcow2_header(version=4), "version 4 is not supported"),
    (b"\0" * 512, "not a qcow2 image"),
])
def test_bad_qcow2_headers(head: bytes, message: str) -> None:
    with pytest.raises(DiskFormatError, match=message):
        parse_qcow2_header(head)


@pytest.mark.parametrize("head, message", [
    (qcow2_header(backing=(512, 20)), r"^refusing to import /d\.qcow2: it is a qcow2 image "
                                      r"with a backing file, which could read other files"),
    (qcow2_header(incompatible=4), "with an external data file"),
    (qcow2_header()[:50], r"^/d\.qcow2 is not a valid qcow2 image \(truncated or corrupt\): "
                          "the qcow2 header is truncated$"),
])
def test_sniff_refuses_qcow2_that_reads_other_files(head: bytes, message: str) -> None:
    with pytest.raises(UserError, match=message):
        sniff_disk(Path("/d.qcow2"), head)


# -- partition tables -------------------------------------------------------------------------


def mbr(*types: int) -> bytearray:
    disk = bytearray(PARTITION_TABLE_BYTES)
    for index, kind in enumerate(types):
        disk[446 + 16 * index + 4] = kind
    disk[510:512] = b"\x55\xaa"
    return disk


def gpt(*type_guids: uuid.UUID) -> bytearray:
    disk = mbr(0xEE)
    disk[512:520] = b"EFI PART"
    struct.pack_into("<QII", disk, 512 + 72, 2, 128, 128)
    for index, guid in enumerate(type_guids):
        disk[1024 + 128 * index:1024 + 128 * index + 16] = guid.bytes_le
    return disk


BIOS_BOOT = uuid.UUID("21686148-6449-6e6f-744e-656564454649")
LINUX_FS = uuid.UUID("0fc63daf-8483-4772-8e79-3d69e47d7de4")


def test_partition_tables() -> None:
    assert sniff_disk(Path("/d.raw"), bytes(gpt(LINUX_FS))) == "raw"
    assert sniff_disk(Path("/d.raw"), bytes(mbr(0x83))) == "raw"
    assert sniff_disk(Path("/d.qcow2"), qcow2_header()) == "qcow2"
    assert not has_partition_table(bytes(mbr()))  # a signature but no partition
    assert not has_partition_table(b"not a disk\n" * 100)
    assert sniff_disk(Path("/notes.txt"), b"not a disk\n" * 100) is None
    assert sniff_disk(Path("/empty"), b"") is None


def test_efi_system_partition_decides_the_firmware(tmp_path: Path) -> None:
    assert has_efi_partition(bytes(gpt(BIOS_BOOT, LINUX_FS, ESP_GUID)))
    assert not has_efi_partition(bytes(gpt(BIOS_BOOT, LINUX_FS)))
    assert has_efi_partition(bytes(mbr(0x83, 0xEF)))
    assert not has_efi_partition(bytes(mbr(0x83)))
    disk = tmp_path / "disk.raw"
    disk.write_bytes(bytes(gpt(ESP_GUID)))
    assert describe_disk(disk) == VmImage(layout="disk", machines=("q35",), firmware=("uefi",))
    disk.write_bytes(bytes(mbr(0x83)))
    assert describe_disk(disk).firmware == ("bios",)


def test_a_gpt_whose_entries_lie_past_what_was_read_is_not_an_esp() -> None:
    disk = gpt(ESP_GUID)
    struct.pack_into("<Q", disk, 512 + 72, 1 << 40)  # entries far away
    assert not has_efi_partition(bytes(disk))


def test_volume_bytes_are_whole_mib() -> None:
    assert volume_bytes(1) == MIB
    assert volume_bytes(2 << 30) == 2 << 30
    assert volume_bytes((2 << 30) + 1) == (2 << 30) + MIB


# -- the guest and its disks ------------------------------------------------------------------


def test_guest_files() -> None:
    assert READY_DEVICE_UNIT == r"dev-virtio\x2dports-org.homecloud.ready.device"
    ready = FILES[f"etc/systemd/system/{READY_UNIT}"]
    assert f"After=multi-user.target {READY_DEVICE_UNIT}" in ready
    assert f"echo READY=1 > /dev/virtio-ports/{READY_PORT}" in ready
    rule = FILES["etc/udev/rules.d/70-homecloud-ready.rules"]
    assert f'ATTR{{name}}=="{READY_PORT}"' in rule and READY_UNIT in rule
    assert FILES["etc/fstab"].startswith("LABEL=hc-root / ext4 ")
    assert "x-systemd.growfs" in FILES["etc/fstab"]
    assert CMDLINE.split() == ["root=LABEL=hc-root", "rw", "console=ttyS0", "panic=-1"]


def test_esp_layout(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.write_bytes(b"x" * 1000)
    assert esp_size({"a": small}) == ESP_MIN_SIZE
    big = tmp_path / "big"
    with open(big, "wb") as file:
        file.truncate(100 * MIB + 1)
    assert esp_size({"a": big}) == 117 * MIB  # the content, 16 MiB slack, whole MiB
    assert sfdisk_script(64 * MIB) == (
        'label: gpt\nstart=2048, size=131072, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, '
        'name="EFI system partition"\n')
    assert _directories({"EFI/BOOT/BOOTX64.EFI": small, "loader/entries/a.conf": small,
                         "vmlinuz": small}) == ["EFI", "loader", "EFI/BOOT", "loader/entries"]


# -- recipe options, names, listing -----------------------------------------------------------


@pytest.mark.parametrize("recipe, options, message", [
    ("busybox", {"vm": True}, "^recipe busybox makes no VM images; VM images come from: debian$"),
    ("nope", {"vm": True}, "^unknown recipe 'nope'"),
    ("debian", {"cloud_init": True}, "^--cloud-init needs --vm$"),
    ("busybox", {"cloud_init": True}, "^recipe busybox takes no --cloud-init$"),
])
def test_bad_vm_requests_fail_before_touching_the_pool(recipe: str, options: dict[str, bool],
                                                       message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_image(None, "x", recipe, **options)  # type: ignore[arg-type]


def test_vm_recipe_and_names() -> None:
    assert get_recipe("debian", vm=True).takes == {"release", "mirror", "cloud_init"}
    assert get_recipe("debian", vm=True).volume_size == 2 << 30
    assert get_recipe("debian").volume_size is None
    assert default_image_name("debian", True) == "debian-vm"
    assert default_image_name("debian", False) == "debian"


def test_boots_as_column() -> None:
    assert boots_as({"vm": False, "machines": []}) == "container"
    assert boots_as({}) == "container"  # an older agent
    assert boots_as({"vm": True, "machines": ["microvm", "q35"]}) == "vm:microvm,q35"
    assert boots_as({"vm": True, "machines": ["q35"]}) == "vm:q35"


def test_boot_files_and_loader_entry(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="the image has no /vmlinuz: the kernel package did not "
                                        "install"):
        boot_files(tmp_path)
    (tmp_path / "boot").mkdir()
    (tmp_path / "vmlinuz").symlink_to("boot/vmlinuz-6.1.0-1-cloud-amd64")
    (tmp_path / "initrd.img").symlink_to("/boot/initrd.img-6.1.0-1-cloud-amd64")  # absolute
    assert boot_files(tmp_path) == (tmp_path / "boot/vmlinuz-6.1.0-1-cloud-amd64",
                                    tmp_path / "boot/initrd.img-6.1.0-1-cloud-amd64")
    files = loader_files(tmp_path / "esp", CMDLINE)
    assert sorted(files) == ["loader/entries/homecloud.conf", "loader/loader.conf"]
    assert files["loader/loader.conf"].read_text() == "default homecloud.conf\ntimeout 0\n"
    assert files["loader/entries/homecloud.conf"].read_text() == (
        f"title homecloud\nlinux /vmlinuz\ninitrd /initrd.img\noptions {CMDLINE}\n")
