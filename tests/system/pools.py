"""Real pools for system tests: file systems on loop files (btrfs, XFS with reflink), tmpfs and
plain directories. Plain context managers, usable outside pytest; fixtures in conftest.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from homecloud.storage.btrfs import BtrfsDriver
from homecloud.storage.copy import CopyDriver
from homecloud.storage.reflink import ReflinkDriver


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, mounts)")


def require_tools(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install btrfs-progs xfsprogs)")


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def loop_mount(directory: Path, name: str, size: int, mkfs: Sequence[str],
               fstype: str) -> Iterator[Path]:
    """Make ``directory/name.img`` (sparse), format it with ``mkfs`` and mount it on a loop
    device at ``directory/name``; unmount, detach and delete everything afterwards."""
    image, mountpoint = directory / f"{name}.img", directory / name
    with image.open("wb") as f:
        f.truncate(size)
    device = ""
    mounted = False
    try:
        _run(*mkfs, str(image))
        device = _run("losetup", "--find", "--show", str(image))
        mountpoint.mkdir()
        _run("mount", "-t", fstype, device, str(mountpoint))
        mounted = True
        yield mountpoint
    finally:
        if mounted:
            umount(mountpoint)
        if device:
            subprocess.run(["losetup", "-d", device], check=False)
        with contextlib.suppress(OSError):
            mountpoint.rmdir()
        image.unlink(missing_ok=True)


def umount(mountpoint: Path) -> None:
    if subprocess.run(["umount", str(mountpoint)], check=False).returncode != 0:
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=False)


@contextlib.contextmanager
def btrfs_loop_pool(directory: Path, size: int = 2 << 30, *,
                    mixed: bool = False) -> Iterator[BtrfsDriver]:
    """A btrfs pool. ``mixed`` shares data and metadata space, so a small pool that is full
    refuses snapshots too (the deterministic full pool)."""
    require_root()
    require_tools("mkfs.btrfs", "losetup")
    mkfs = ["mkfs.btrfs", "-q", "-f", *(["--mixed"] if mixed else [])]
    with loop_mount(directory, "btrfs-pool", size, mkfs, "btrfs") as root:
        yield BtrfsDriver(root)


@contextlib.contextmanager
def xfs_loop_pool(directory: Path, size: int = 512 << 20) -> Iterator[ReflinkDriver]:
    """An XFS pool with reflink (XFS needs at least 300 MiB)."""
    require_root()
    require_tools("mkfs.xfs", "losetup")
    mkfs = ["mkfs.xfs", "-q", "-f", "-m", "reflink=1"]
    with loop_mount(directory, "xfs-pool", size, mkfs, "xfs") as root:
        yield ReflinkDriver(root)


@contextlib.contextmanager
def tmpfs_pool(directory: Path, size: int) -> Iterator[CopyDriver]:
    """A copy pool on a tmpfs of ``size`` bytes: small and bounded without a loop device."""
    require_root()
    root = directory / "tmpfs-pool"
    root.mkdir()
    _run("mount", "-t", "tmpfs", "-o", f"size={size}", "hc-test-pool", str(root))
    try:
        yield CopyDriver(root)
    finally:
        umount(root)
        root.rmdir()


@contextlib.contextmanager
def directory_pool(directory: Path) -> Iterator[CopyDriver]:
    """A copy pool in a plain directory of whatever file system holds ``directory``."""
    require_root()  # datasets keep ownership (cp -a, tar --same-owner)
    root = directory / "copy-pool"
    root.mkdir()
    try:
        yield CopyDriver(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
