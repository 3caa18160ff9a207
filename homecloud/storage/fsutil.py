"""Small file-system primitives the drivers share: the type of a file system, renames that never
replace, and a probe for reflink support. Linux only."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import tempfile
from pathlib import Path

BTRFS_MAGIC = 0x9123683E
FS_NAMES = {
    BTRFS_MAGIC: "btrfs",
    0x58465342: "xfs",
    0xEF53: "ext4",
    0x01021994: "tmpfs",
    0x2FC12FC1: "zfs",
    0x794C7630: "overlayfs",
    0x6969: "nfs",
    0xF2F52010: "f2fs",
}
FICLONE = 0x40049409  # _IOW(0x94, 9, int)
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
# struct statfs is 120 bytes on 64-bit Linux; f_type (a long) comes first on every architecture.
_STATFS_SIZE = 256


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def fs_type(path: Path) -> int:
    """The statfs f_type magic of the file system holding ``path`` (os.statvfs lacks it)."""
    buf = ctypes.create_string_buffer(_STATFS_SIZE)
    if _libc().statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def fs_name(path: Path) -> str:
    magic = fs_type(path)
    return FS_NAMES.get(magic, f"file system type {magic:#x}")


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _renameat2(src: Path, dst: Path, flags: int) -> None:
    if _libc().renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(src), None, str(dst))


def rename_noreplace(src: Path, dst: Path) -> None:
    """Rename, failing with EEXIST instead of replacing an (empty) directory at ``dst``."""
    _renameat2(src, dst, _RENAME_NOREPLACE)


def exchange(a: Path, b: Path) -> None:
    """Swap two paths atomically: a rollback is never seen half-done."""
    _renameat2(a, b, _RENAME_EXCHANGE)


def can_reflink(directory: Path) -> bool:
    """Whether files in ``directory`` can share extents (FICLONE), tried on two temporary files."""
    with tempfile.TemporaryDirectory(dir=directory, prefix=".hc-reflink-probe-") as tmp:
        src_path, dst_path = Path(tmp) / "src", Path(tmp) / "dst"
        src_path.write_bytes(b"\0" * 4096)
        with src_path.open("rb") as src, dst_path.open("wb") as dst:
            try:
                fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            except OSError as exc:
                if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.EXDEV,
                                 errno.ENOSYS):
                    return False
                raise
    return True
