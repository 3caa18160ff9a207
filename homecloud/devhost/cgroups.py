"""Each dev host's own cgroup, so two dev hosts' systemds never manage the same cgroup tree.

With --keep-unit and no systemd on the machine, nspawn puts the guest in `payload` below the
cgroup nspawn itself runs in, and roots the guest's cgroup namespace there. Started from the
machine's root cgroup, every dev host got /payload: a unit of the same name in two dev hosts
(hc-NAME.service) was one cgroup, which the other dev host's processes kept from ever emptying,
so its unit never unloaded. So nspawn starts in /hc-devhost/NAME instead, in each hierarchy the
guest can write: the named systemd one and the unified one of a hybrid setup (nspawn mirrors
the same path in both), or the single cgroup2 tree. The controller hierarchies are mounted
read-only inside, so the guest leaves those alone.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path, PurePosixPath

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = PurePosixPath("/hc-devhost")


def writable_hierarchies(root: Path = CGROUP_ROOT) -> list[Path]:
    """Mount points of the hierarchies the guest's systemd manages: systemd and unified
    (hybrid), systemd (legacy), or the root itself (unified only)."""
    return [path for path in (root / "systemd", root / "unified", root)
            if (path / "cgroup.procs").exists()]


def devhost_cgroup(name: str) -> PurePosixPath:
    return PARENT / name


def _directory(hierarchy: Path, name: str) -> Path:
    return hierarchy / devhost_cgroup(name).relative_to("/")


def enter(name: str, root: Path = CGROUP_ROOT) -> None:
    """Move the calling process into the dev host's cgroup in every writable hierarchy.
    Runs in the child just before it execs nspawn, which then makes its payload below."""
    for hierarchy in writable_hierarchies(root):
        directory = _directory(hierarchy, name)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "cgroup.procs").write_text("0")


def remove(name: str, root: Path = CGROUP_ROOT, wait: float = 0.0) -> None:
    """Remove the dev host's cgroups that are empty (all of them once its guest is gone), so a
    restarted guest does not find its predecessor's cgroups. Killed processes leave their
    cgroup only once fully gone: ``wait`` gives them that many seconds."""
    deadline = time.monotonic() + wait
    while True:
        left = False
        for hierarchy in writable_hierarchies(root):
            top = _directory(hierarchy, name)
            if not top.is_dir():
                continue
            # Deepest first: a cgroup goes only once its children have.
            for directory, _subdirs, _files in os.walk(top, topdown=False):
                # One that still has processes stays (and so do its parents).
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
            left = left or top.is_dir()
        if not left or time.monotonic() >= deadline:
            return
        time.sleep(0.05)
