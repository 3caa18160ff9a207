"""Reading /proc/self/mountinfo's text: what is mounted where, and from what. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

# mountinfo writes space, tab, newline and backslash as three-digit octal escapes.
_ESCAPE_RE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str
    source: str  # a device, or for ZFS the file system's name ('tank/homecloud')


def unescape(field: str) -> str:
    return _ESCAPE_RE.sub(lambda match: chr(int(match.group(1), 8)), field)


def parse_mounts(text: str) -> list[Mount]:
    """Every mount, in mount order (a later mount on a point hides the earlier ones)."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(" "), right.split(" ")
        if not sep or len(fields) < 5 or len(tail) < 2:
            continue
        mounts.append(Mount(point=unescape(fields[4]), fstype=tail[0], source=unescape(tail[1])))
    return mounts
