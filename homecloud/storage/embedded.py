"""The embedded default pool: a btrfs file system in a sparse file, mounted at boot by systemd.

A host whose state directory is not on btrfs, and that has nothing mounted at the pool path,
still gets copy-on-write forks: the agent makes ``pool.image_file`` (sparse, ``pool.size``),
formats it once, and has systemd mount it through a .mount unit, so it is there after every
reboot before hcd starts. A file that already holds a file system is never formatted again.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from homecloud.config import CONFIG_PATH, PoolConfig
from homecloud.errors import HostError
from homecloud.files import write_if_changed
from homecloud.storage.fsutil import fs_name, nearest_existing
from homecloud.storage.mountinfo import parse_mounts
from homecloud.storage.mountunit import mount_unit_name, render_mount_unit
from homecloud.tools import run_tool

log = logging.getLogger(__name__)

UNIT_DIR = Path("/etc/systemd/system")
MOUNTINFO = Path("/proc/self/mountinfo")
MOUNT_TIMEOUT = 30.0
POOL_FSTYPE = "btrfs"
POOL_LABEL = "homecloud"
AGENT_UNIT = "hcd.service"
# The primary btrfs superblock is at 64 KiB; its magic 64 bytes into it.
BTRFS_MAGIC_OFFSET = 0x10000 + 0x40
BTRFS_MAGIC = b"_BHRfS_M"
# Read this much of an existing image to tell blank from formatted from foreign.
IMAGE_HEAD = 1 << 20


# -- pure decisions -------------------------------------------------------------------------------
def needs_embedded_pool(config: PoolConfig, *, mounted: bool, fstype: str) -> bool:
    """Whether to make/mount the embedded pool. ``mounted``: something is mounted at the pool
    path; ``fstype``: the file system holding the pool path (or its closest existing parent)."""
    if not config.embedded or config.driver not in ("auto", "btrfs"):
        return False  # the user chose a pool of their own
    if mounted:
        return False
    return fstype != POOL_FSTYPE  # on btrfs already: the pool is a plain directory there


def classify_image(head: bytes) -> str:
    """'btrfs' (formatted), 'blank' (all zeros: safe to format) or 'other' (holds data)."""
    if head[BTRFS_MAGIC_OFFSET:BTRFS_MAGIC_OFFSET + len(BTRFS_MAGIC)] == BTRFS_MAGIC:
        return "btrfs"
    if head.count(0) == len(head):
        return "blank"
    return "other"


def parse_mountinfo(text: str) -> dict[str, str]:
    """Mount point -> file system type, the last mount on each point winning."""
    return {mount.point: mount.fstype for mount in parse_mounts(text)}


def pool_mount_unit(config: PoolConfig) -> tuple[str, str]:
    """The name and text of the .mount unit for the embedded pool."""
    text = render_mount_unit(what=config.image_file, where=config.path, fstype=POOL_FSTYPE,
                             options="loop", description="homecloud embedded storage pool",
                             before=(AGENT_UNIT,))
    return mount_unit_name(config.path), text


# -- side effects ---------------------------------------------------------------------------------
def read_mounts() -> dict[str, str]:
    return parse_mountinfo(MOUNTINFO.read_text())


def prepare_image(image: Path, size: int) -> bool:
    """Make ``image`` a btrfs file system of ``size`` bytes (sparse) unless it is one already.
    Returns whether it was formatted now. Refuses a file holding anything but btrfs or zeros."""
    image.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        os.close(fd)
    with image.open("rb") as f:
        kind = classify_image(f.read(IMAGE_HEAD))
    if kind == "btrfs":
        return False
    if kind == "other":
        raise HostError(f"{image} exists and holds data that is not a btrfs file system: move it "
                        f"away or set pool.image_file in {CONFIG_PATH} (homecloud never formats "
                        "a file that holds data)")
    if image.stat().st_size < size:
        os.truncate(image, size)  # blank: a fresh file, or one a crash left before formatting
    result = run_tool(["mkfs.btrfs", "-q", "-L", POOL_LABEL, str(image)], package="btrfs-progs")
    if not result.ok:
        raise HostError(f"could not format the embedded pool {image}: "
                        f"{result.stderr.strip() or result.stdout.strip()}")
    log.info("formatted the embedded pool %s (%d bytes, sparse)", image, size)
    return True


def write_unit(path: Path, text: str) -> bool:
    """Write a unit file if its text changed; return whether it did."""
    return write_if_changed(path, text)


def start_mount_unit(unit: str, bus: Any = None, timeout: float = MOUNT_TIMEOUT) -> None:
    """Reload systemd, enable ``unit`` for boot, start it and wait until it is active, over
    D-Bus."""
    from pystemd.dbusexc import DBusBaseError
    from pystemd.systemd1 import Manager, Unit

    try:
        manager = Manager(bus=bus)
        manager.load()
        manager.Manager.Reload()
        manager.Manager.EnableUnitFiles([unit.encode()], False, True)
        manager.Manager.StartUnit(unit.encode(), b"replace")
        mount = Unit(unit.encode(), bus=bus)
        mount.load()
        deadline = time.monotonic() + timeout
        # The job ends when the mount is in place; a mount seen in mountinfo alone may still
        # be "activating" for systemd.
        while (state := mount.Unit.ActiveState) != b"active":
            if state == b"failed" or time.monotonic() > deadline:
                raise HostError(f"the embedded pool did not mount ({unit} is "
                                f"{state.decode()}): see journalctl -u {unit}")
            time.sleep(0.05)
    except DBusBaseError as exc:
        raise HostError(f"could not mount the embedded pool with systemd ({unit}): {exc}; "
                        "homecloud needs systemd as PID 1 and root") from exc


def check_mounted(where: Path, unit: str) -> None:
    fstype = read_mounts().get(str(where))
    if fstype != POOL_FSTYPE:
        found = f"{fstype} is mounted there" if fstype else "nothing is mounted there"
        raise HostError(f"the embedded pool is not mounted at {where} although {unit} is "
                        f"active ({found}): see journalctl -u {unit}")


def ensure_embedded_pool(config: PoolConfig, bus: Any = None, *, unit_dir: Path = UNIT_DIR,
                         timeout: float = MOUNT_TIMEOUT) -> None:
    """Make sure the pool at ``config.path`` exists, making the embedded pool when needed.
    Idempotent: the agent calls it at every start. ``bus``: a pystemd bus (default: system)."""
    if not config.embedded:
        return
    config.path.mkdir(parents=True, exist_ok=True)
    mounted = str(config.path) in read_mounts()
    if not needs_embedded_pool(config, mounted=mounted,
                               fstype=fs_name(nearest_existing(config.path))):
        return
    prepare_image(config.image_file, config.size)
    unit, text = pool_mount_unit(config)
    write_unit(unit_dir / unit, text)
    start_mount_unit(unit, bus, timeout)
    check_mounted(config.path, unit)
