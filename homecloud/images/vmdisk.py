"""Disk images for VMs, made without mounting anything (no loop devices, no privileges beyond
writing files): an ext4 file system from a directory tree, and a GPT disk holding one EFI
system partition with the given files."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from homecloud.errors import HostError
from homecloud.images.publish import out_of_space
from homecloud.images.tools import mentions_full_disk
from homecloud.tools import run_tool

MIB = 1 << 20
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ESP_START = MIB  # the partition starts at 1 MiB (sector 2048), as partitioning tools align it
GPT_TAIL = MIB  # room left at the end for the backup GPT
ESP_MIN_SIZE = 64 * MIB
ESP_SLACK = 16 * MIB  # FAT's own tables and room for a kernel update


def _check(result_ok: bool, what: str, lines: Sequence[str]) -> None:
    if result_ok:
        return
    if mentions_full_disk(lines):
        raise out_of_space(what)
    raise HostError(f"{what} failed: {lines[0] if lines else 'no message'}")


def _run(argv: Sequence[str], what: str, package: str, input: str | None = None,
         env: dict[str, str] | None = None) -> None:
    result = run_tool(argv, input=input, package=package, env=env)
    _check(result.ok, what, (result.stderr + result.stdout).strip().splitlines())


def make_ext4(volume: Path, tree: Path, label: str) -> None:
    """Write an ext4 file system holding ``tree`` onto ``volume`` (a sparse file or a block
    device, whose size it fills), labelled ``label``."""
    # -d copies owners, modes, links, device nodes and xattrs; -E nodiscard keeps a sparse
    # file sparse; -F because a file is not a block device.
    _run(["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(tree), "-E", "nodiscard",
          str(volume)], f"mkfs.ext4 on {volume}", "e2fsprogs")


def esp_size(files: Mapping[str, Path]) -> int:
    """Bytes of a partition that holds ``files``, in whole MiB."""
    content = sum(source.stat().st_size for source in files.values())
    size = max(ESP_MIN_SIZE, content + ESP_SLACK)
    return -(-size // MIB) * MIB


def sfdisk_script(partition_size: int) -> str:
    return (f"label: gpt\nstart={ESP_START // 512}, size={partition_size // 512}, "
            f"type={ESP_TYPE}, name=\"EFI system partition\"\n")


def _directories(files: Mapping[str, Path]) -> list[str]:
    """Every directory the files need, parents first."""
    wanted: set[str] = set()
    for target in files:
        for parent in PurePosixPath(target).parents:
            if str(parent) not in (".", "/"):
                wanted.add(str(parent))
    return sorted(wanted, key=lambda path: (path.count("/"), path))


def make_esp_disk(disk: Path, files: Mapping[str, Path]) -> None:
    """Write a GPT disk image ``disk`` (it must not exist) with one FAT EFI system partition
    holding ``files`` (path on the partition -> file on this host)."""
    part = esp_size(files)
    fd = os.open(disk, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, ESP_START + part + GPT_TAIL)
    finally:
        os.close(fd)
    _run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(disk)],
         f"partitioning {disk}", "fdisk", input=sfdisk_script(part))
    # mkfs.vfat and mtools reach the partition at its offset inside the disk file.
    _run(["mkfs.vfat", "--offset", str(ESP_START // 512), "-n", "ESP", str(disk),
          str(part // 1024)], f"mkfs.vfat on {disk}", "dosfstools")
    image = ["-i", f"{disk}@@{ESP_START}"]
    # A disk image has no floppy geometry for mtools to check.
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    for directory in _directories(files):
        _run(["mmd", *image, f"::/{directory}"], f"making {directory} on {disk}", "mtools",
             env=env)
    for target, source in files.items():
        _run(["mcopy", *image, str(source), f"::/{target}"],
             f"copying {target} to {disk}", "mtools", env=env)
