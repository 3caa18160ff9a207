"""What this host offers the zfs driver: the kernel module, libzfs_core for Python (pyzfs), the
zfs command, and the ZFS file system mounted at the pool path. Importing this module needs none
of them, so the registry can ask on any host why the driver cannot run."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

from homecloud.storage.fsutil import fs_name
from homecloud.storage.zfs_layout import dataset_mounted_at

ZFS_MODULE = Path("/sys/module/zfs")
# Debian's python3-pyzfs installs here; homecloud's venv does not see the system's packages.
DIST_PACKAGES = Path("/usr/lib/python3/dist-packages")
PYZFS = "libzfs_core"
CONTRIB = "from Debian's contrib section"


@functools.cache
def load_pyzfs() -> ModuleType | None:
    """pyzfs's ``libzfs_core`` module, or None when it is not installed or cannot load."""
    try:
        return importlib.import_module(PYZFS)
    except ImportError:
        pass
    package = DIST_PACKAGES / PYZFS
    spec = importlib.util.spec_from_file_location(
        PYZFS, package / "__init__.py", submodule_search_locations=[str(package)])
    if spec is None or spec.loader is None or not (package / "__init__.py").is_file():
        return None
    # Only this package is taken from the system; what it imports (cffi) comes from the venv.
    module = importlib.util.module_from_spec(spec)
    sys.modules[PYZFS] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[PYZFS]
        return None
    return module


def zfs_missing() -> str | None:
    """Why the zfs driver cannot run on this host at all, or None if it can."""
    if not ZFS_MODULE.is_dir():
        return (f"the zfs kernel module is not loaded (install zfs-dkms {CONTRIB} and run "
                "'modprobe zfs')")
    if load_pyzfs() is None:
        return f"python3-pyzfs is not installed (apt-get install python3-pyzfs, {CONTRIB})"
    if shutil.which("zfs") is None:
        return f"the zfs command is not installed (apt-get install zfsutils-linux, {CONTRIB})"
    return None


def read_mountinfo() -> str:
    try:
        return Path("/proc/self/mountinfo").read_text()
    except OSError:
        return ""


def mounted_dataset(path: Path) -> str | None:
    """The ZFS file system mounted at ``path``, if one is."""
    return dataset_mounted_at(read_mountinfo(), str(path))


def zfs_unfit(path: Path) -> str | None:
    """Why the pool at ``path`` cannot be a zfs pool (one line saying what to do), or None."""
    missing = zfs_missing()
    if missing is not None:
        return f"the zfs driver cannot run on this host: {missing}"
    if mounted_dataset(path) is None:
        return (f"the pool at {path} is on {fs_name(path)}, not a ZFS file system mounted "
                f"there: run 'zfs create -o mountpoint={path} POOL/homecloud' or set "
                "pool.driver to auto")
    return None
