"""The shared libraries a program needs, from ``ldd``'s report (pure)."""

from __future__ import annotations

import re

# "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
_LINE = re.compile(r"^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x[0-9a-f]+\)\s*$")


def ldd_paths(report: str) -> list[str]:
    """The absolute paths of the libraries (and the loader) in ``ldd``'s output; the vDSO and
    "statically linked" have none."""
    paths = []
    for line in report.splitlines():
        found = _LINE.match(line)
        if found:
            paths.append(found.group(1))
    return paths
