"""Block volumes as sparse raw files: the sizes they accept, and making and growing the file.

A raw file is what every hypervisor opens without a format layer, and a sparse one costs the
pool only what the guest has written. The drivers whose datasets are directory trees keep a
dataset's volume in one file, ``VOLUME_FILE``, inside the dataset, so forks, snapshots, renames
and streams carry it like any other file.
"""

from __future__ import annotations

import os
from pathlib import Path

from homecloud.errors import UserError
from homecloud.sizes import format_size, parse_size

VOLUME_FILE = "volume.raw"
# Sizes are whole MiB: every sector size, page size and ZFS volblocksize divides them.
VOLUME_UNIT = 1 << 20
MIN_VOLUME_SIZE = VOLUME_UNIT


def volume_size(size: str | int) -> int:
    """Bytes for a requested volume size ("20G", "512M" or a number of bytes)."""
    value = parse_size(size, "volume size")
    if value < MIN_VOLUME_SIZE:
        raise UserError(f"volume size {size!r} is too small: a volume holds at least "
                        f"{format_size(MIN_VOLUME_SIZE)}")
    if value % VOLUME_UNIT:
        raise UserError(f"volume size {size!r} is not a whole number of MiB: use a size like "
                        "512M or 20G")
    return value


def check_growth(name: str, current: int, requested: int) -> None:
    """Refuse to shrink: the guest's file system would lose whatever lies past the new end."""
    if requested < current:
        raise UserError(f"cannot shrink volume {name!r} from {format_size(current)} to "
                        f"{format_size(requested)}: volumes only grow; make a smaller volume "
                        "and copy the data into it instead")


def make_volume_file(path: Path, size: int) -> None:
    """Create the sparse file ``path`` of ``size`` bytes (it must not exist)."""
    # Kept copy-on-write on btrfs, not NOCOW (chattr +C): NOCOW also turns off data checksums
    # and compression, and every fork or snapshot shares the file's extents, so the first write
    # to each of them is copied anyway. Checksums that catch a corrupt disk image are worth more
    # than in-place writes that forks would undo.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def grow_volume_file(path: Path, size: int) -> None:
    """Extend the file to ``size`` bytes; the new end is a hole until the guest writes it."""
    os.truncate(path, size)
