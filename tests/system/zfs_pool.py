"""A real ZFS pool for the storage driver tests: a zpool on a sparse file, with the pool's
parent file system mounted at a directory. Where the host cannot run ZFS (no kernel module,
no pyzfs, no zfs command), the test skips with the reason."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pools import require_root

from homecloud.storage.zfs import ZfsDriver
from homecloud.storage.zfs_host import zfs_missing

MIN_SIZE = 128 << 20  # below 64 MiB zpool refuses a vdev; this leaves room for metadata


def require_zfs() -> None:
    require_root()
    missing = zfs_missing()
    if missing is not None:
        pytest.skip(f"zfs: {missing}")


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


@contextlib.contextmanager
def zfs_file_pool(directory: Path, size: int = 2 << 30) -> Iterator[ZfsDriver]:
    """A zpool on ``directory/zfs-pool.img`` whose file system ``<pool>/homecloud`` is mounted
    at ``directory/zfs-pool``; the pool is destroyed and the file deleted afterwards."""
    require_zfs()
    image, root = directory / "zfs-pool.img", directory / "zfs-pool"
    with image.open("wb") as f:
        f.truncate(max(size, MIN_SIZE))
    name = f"hct-{uuid.uuid4().hex[:10]}"
    created = False
    try:
        # No cache file: the test pool must not be imported again at the next boot.
        _run("zpool", "create", "-o", "cachefile=none", "-O", "mountpoint=none", name,
             str(image))
        created = True
        _run("zfs", "create", "-o", f"mountpoint={root}", f"{name}/homecloud")
        yield ZfsDriver(root)
    finally:
        if created:
            subprocess.run(["zpool", "destroy", "-f", name], check=False)
        with contextlib.suppress(OSError):
            root.rmdir()
        image.unlink(missing_ok=True)
