"""Keep the machine's enabled services out of its dev hosts.

A dev host's /etc is an overlay on the machine's live /etc, so every unit enabled there (a
`*.wants/` or `*.requires/` link under /etc/systemd/system) would start in every dev host too: a
database the machine runs fails inside ("degraded"), and any daemon installed on the machine
later would start in each dev host. The dev host hides those links in its overlay's upper layer
with whiteouts, except the few targets homecloud relies on. The units stay installed, so a test
starts libvirtd or nginx on demand; only their enablement is left behind.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePath

MACHINE_UNITS = Path("/etc/systemd/system")
# Targets, not services: what homecloud's own units are ordered against.
ALLOWED_UNITS = frozenset({"machines.target", "remote-fs.target"})
_DEPENDENCY_DIRS = (".wants", ".requires")


def enabled_links(units: Path = MACHINE_UNITS,
                  allowed: frozenset[str] = ALLOWED_UNITS) -> list[PurePath]:
    """The machine's enablement links a dev host leaves off, relative to ``units``."""
    links: list[PurePath] = []
    try:
        directories = sorted(d for d in units.iterdir() if d.name.endswith(_DEPENDENCY_DIRS))
    except FileNotFoundError:
        return links
    for directory in directories:
        if not directory.is_dir() or directory.is_symlink():
            continue
        links.extend(PurePath(directory.name, entry.name) for entry in sorted(directory.iterdir())
                     if entry.name not in allowed)
    return links


def hide_links(upper_units: Path, links: list[PurePath]) -> None:
    """Whiteouts in the overlay's upper layer for ``links``; an entry the dev host already has
    there (a unit enabled inside it) is left as it is."""
    for link in links:
        target = upper_units / link
        if os.path.lexists(target):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))  # overlayfs's whiteout
