"""Mounts a builder left inside a dataset (debootstrap's /proc and /sys when it is killed).

A dataset cannot be destroyed while something is mounted in it, so these are detached first.
"""

from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path

MNT_DETACH = 2
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def mounts_below(mountinfo: str, root: Path) -> list[Path]:
    """Mount points strictly below ``root`` in a mountinfo text, deepest first."""
    prefix = str(root).rstrip("/") + "/"
    points = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            point = _unescape(fields[4])
            if point.startswith(prefix):
                points.append(Path(point))
    return sorted(set(points), key=lambda p: (-len(p.parts), str(p)))


def unmount_below(root: Path) -> list[Path]:
    """Lazily unmount everything mounted below ``root``; return what was unmounted."""
    with open("/proc/self/mountinfo") as file:
        points = mounts_below(file.read(), root)
    libc = ctypes.CDLL(None, use_errno=True)
    for point in points:
        if libc.umount2(os.fsencode(point), MNT_DETACH) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"cannot unmount {point}: {os.strerror(errno)}")
    return points
