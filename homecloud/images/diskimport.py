"""`hc image import NAME disk.qcow2` (or a raw disk): a whole bootable disk as a VM image.

The disk is checked before anything is created: its header first (homecloud.images.diskformat:
a qcow2 that reads another file is refused before any tool opens it), then
``qemu-img info`` (and ``qemu-img check`` for qcow2) with the format named, never probed. It is
then converted by ``qemu-img convert`` into the block volume of a new partial dataset, sparse,
and described by vm.json (layout "disk": it boots as q35, with UEFI when it has an EFI system
partition). On any failure nothing is left (homecloud.images.publish).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from homecloud.errors import UserError
from homecloud.images.diskformat import (
    PARTITION_TABLE_BYTES,
    DiskFormatError,
    has_efi_partition,
    has_partition_table,
    is_qcow2,
    parse_qcow2_header,
)
from homecloud.images.progress import Progress, ProgressCallback
from homecloud.images.publish import out_of_space, publish_image
from homecloud.images.tools import mentions_full_disk
from homecloud.images.vmimage import VmImage, write_vm_image
from homecloud.storage.base import Dataset, StorageDriver
from homecloud.storage.volumes import VOLUME_UNIT
from homecloud.tools import require_tool, run_tool

QEMU_IMG_PACKAGE = "qemu-utils"
INFO_TIMEOUT = 60.0  # qemu-img info/check read headers and tables, not the data


@dataclass(frozen=True)
class DiskSource:
    path: Path
    format: str  # "qcow2" or "raw"
    size: int  # bytes of the virtual disk


def sniff_disk(source: Path, head: bytes) -> str | None:
    """"qcow2" or "raw" when ``head`` (the file's first bytes) starts a VM disk, else None;
    UserError for a qcow2 that must not be imported."""
    if is_qcow2(head):
        try:
            header = parse_qcow2_header(head)
        except DiskFormatError as exc:
            raise UserError(f"{source} is not a valid qcow2 image (truncated or corrupt): "
                            f"{exc}") from None
        if header.backing_file:
            raise UserError(f"refusing to import {source}: it is a qcow2 image with a backing "
                            "file, which could read other files of this host; flatten it "
                            "first (qemu-img convert -O qcow2 IN OUT on a machine you trust)")
        if header.external_data_file:
            raise UserError(f"refusing to import {source}: it is a qcow2 image with an "
                            "external data file, which could read other files of this host")
        return "qcow2"
    if has_partition_table(head):
        return "raw"
    return None


def _qemu_img(*args: str) -> tuple[bool, str, str]:
    qemu_img = require_tool("qemu-img", QEMU_IMG_PACKAGE)
    result = run_tool([qemu_img, *args], timeout=INFO_TIMEOUT, package=QEMU_IMG_PACKAGE)
    lines = [line.removeprefix("qemu-img: ") for line in result.stderr.strip().splitlines()]
    return result.ok, result.stdout, lines[-1] if lines else f"exit status {result.returncode}"


def inspect_disk(source: Path, disk_format: str) -> DiskSource:
    """Ask qemu-img what the disk is, with its format named; UserError if qemu-img finds it
    corrupt or truncated."""
    bad = f"{source} is not a valid {disk_format} image (truncated or corrupt)"
    ok, out, error = _qemu_img("info", "--output=json", "-f", disk_format, str(source))
    if not ok:
        raise UserError(f"{bad}: {error}")
    info = json.loads(out)
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise UserError(f"refusing to import {source}: it has a backing file")
    if info.get("format-specific", {}).get("data", {}).get("corrupt"):
        raise UserError(f"{bad}: qemu-img marks it corrupt")
    if disk_format == "qcow2":
        _check_qcow2(source, bad)
    return DiskSource(path=source, format=disk_format, size=int(info["virtual-size"]))


def _check_qcow2(source: Path, bad: str) -> None:
    """``qemu-img check``: it walks the tables and finds clusters past the end of a truncated
    file and wrong reference counts; leaked clusters are harmless and allowed."""
    ok, out, error = _qemu_img("check", "--output=json", "-f", "qcow2", str(source))
    if ok:
        return
    try:
        report = json.loads(out)
    except ValueError:
        raise UserError(f"{bad}: {error}") from None
    problems = [f"{report[key]} {what}" for key, what in (
        ("corruptions", "corrupt clusters"), ("check-errors", "unreadable tables"))
        if report.get(key)]
    raise UserError(f"{bad}: qemu-img check finds {' and '.join(problems) or error}")


def volume_bytes(size: int) -> int:
    """The volume for a disk of ``size`` bytes: whole MiB, as pools size volumes."""
    return max(VOLUME_UNIT, -(-size // VOLUME_UNIT) * VOLUME_UNIT)


def _convert(disk: DiskSource, volume: Path) -> None:
    # -n: write into the pool's volume (already made, sparse); --target-is-zero: it reads as
    # zeros, so zeros are skipped and stay holes.
    ok, _, error = _qemu_img("convert", "-n", "--target-is-zero", "-f", disk.format,
                             "-O", "raw", str(disk.path), str(volume))
    if not ok:
        if mentions_full_disk([error]):
            raise out_of_space(f"converting {disk.path}")
        raise UserError(f"{disk.path} is not a valid {disk.format} image (truncated or "
                        f"corrupt): {error}")


def describe_disk(volume: Path) -> VmImage:
    with open(volume, "rb") as file:
        head = file.read(PARTITION_TABLE_BYTES)
    firmware = ("uefi",) if has_efi_partition(head) else ("bios",)
    return VmImage(layout="disk", machines=("q35",), firmware=firmware)


def import_disk(pool: StorageDriver, name: str, disk: DiskSource,
                progress: ProgressCallback) -> Dataset:
    """Publish ``disk`` as the VM image ``images/<name>``."""
    def fill(dataset: Dataset) -> None:
        volume = pool.volume_path(dataset.name)
        progress(Progress("convert", 0, 1, f"converting {disk.path.name} ({disk.format})"))
        _convert(disk, volume)
        write_vm_image(dataset.path, describe_disk(volume))
        progress(Progress("convert", 1, 1, f"imported {disk.path.name}"))

    return publish_image(pool, name, fill, action="import", volume_size=volume_bytes(disk.size))
