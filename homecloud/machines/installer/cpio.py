"""A directory tree as a "newc" cpio archive, the format the kernel unpacks as an initramfs.

Entries carry mtime 0 and (unless asked to keep owners) root ownership, so the same tree always
gives the same bytes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


def _pad(size: int) -> bytes:
    return b"\0" * (-size % 4)


def _header(name: str, mode: int, size: int, ino: int, nlink: int, uid: int = 0, gid: int = 0,
            rdev: int = 0) -> bytes:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, uid, gid, nlink, 0, size, 0, 0, os.major(rdev), os.minor(rdev),
              len(encoded), 0)
    header = MAGIC + b"".join(b"%08x" % value for value in fields) + encoded
    return header + _pad(len(header))


def write_cpio(root: Path, out: BinaryIO, *, keep_owners: bool = False) -> None:
    """Write every entry below ``root`` (directories before what they hold) to ``out``; with
    ``keep_owners``, each entry's owner and group as they are on disk."""
    ino = 0
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        base = Path(directory)
        entries = ([] if base == root else [base]) + [base / name for name in sorted(files)]
        # Symbolic links to directories are listed among dirs: archive them as links.
        entries += [base / name for name in dirs if (base / name).is_symlink()]
        for path in entries:
            ino += 1
            info = path.lstat()
            name = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                data = os.readlink(path).encode()
            elif stat.S_ISREG(info.st_mode):
                data = path.read_bytes()
            else:
                data = b""
            nlink = 2 if stat.S_ISDIR(info.st_mode) else 1
            owner = (info.st_uid, info.st_gid) if keep_owners else (0, 0)
            out.write(_header(name, info.st_mode, len(data), ino, nlink, *owner, info.st_rdev))
            out.write(data + _pad(len(data)))
    out.write(_header(TRAILER, 0, 0, 0, 1))
