"""Opening the pool: pick the driver that fits the file system under the pool path."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from homecloud.config import CONFIG_PATH, PoolConfig
from homecloud.errors import HostError
from homecloud.storage.base import StorageDriver
from homecloud.storage.fsutil import BTRFS_MAGIC, can_reflink, fs_name, fs_type

log = logging.getLogger(__name__)

# Imported on demand: a host without working btrfsutil can still run a reflink or copy pool.
DRIVER_CLASSES = {
    "btrfs": "homecloud.storage.btrfs:BtrfsDriver",
    "reflink": "homecloud.storage.reflink:ReflinkDriver",
    "copy": "homecloud.storage.copy:CopyDriver",
}
AUTO = "auto"


def detect_driver(path: Path) -> str:
    """The best driver for the file system at ``path``: btrfs, else reflink, else copy."""
    if fs_type(path) == BTRFS_MAGIC:
        return "btrfs"
    if can_reflink(path):
        return "reflink"
    return "copy"


def driver_class(name: str) -> type[StorageDriver]:
    if name == "zfs":
        raise HostError("the zfs driver is not available on this host: set pool.driver in "
                        f"{CONFIG_PATH} to auto, btrfs, reflink or copy")
    if name not in DRIVER_CLASSES:
        raise HostError(f"unknown pool driver {name!r}: use auto, btrfs, reflink or copy")
    module_name, class_name = DRIVER_CLASSES[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HostError(f"the {name} driver cannot load ({exc}): reinstall homecloud with its "
                        "dependencies, or set pool.driver to another driver") from exc
    cls: type[StorageDriver] = getattr(module, class_name)
    return cls


def _check_driver_fits(name: str, path: Path) -> None:
    """Refuse a driver the file system cannot carry, naming what is there instead."""
    if name == "btrfs" and fs_type(path) != BTRFS_MAGIC:
        raise HostError(f"the pool at {path} is on {fs_name(path)}, not btrfs: mount a btrfs "
                        "file system there or set pool.driver to auto")
    if name == "reflink" and not can_reflink(path):
        raise HostError(f"the pool at {path} is on {fs_name(path)}, which cannot reflink files: "
                        "use XFS made with reflink=1 (or btrfs), or set pool.driver to auto")


def open_pool(config: PoolConfig) -> StorageDriver:
    """The driver for the pool described by ``config`` (its directory must exist)."""
    path = config.path
    if config.driver == "zfs":
        driver_class("zfs")  # raises: say so before anything else about the path
    if not path.is_dir():
        raise HostError(f"the pool directory {path} does not exist: create it, mount a file "
                        f"system there, or set pool.path in {CONFIG_PATH}")
    if config.driver == AUTO:
        name = detect_driver(path)
        if name == "copy":
            log.warning("the pool at %s is on %s, which cannot clone files cheaply: every fork "
                        "copies all its bytes and will be slow; put the pool on btrfs or XFS "
                        "with reflink=1", path, fs_name(path))
    else:
        name = config.driver
        cls = driver_class(name)  # unknown names fail here, before probing the file system
        _check_driver_fits(name, path)
        return cls(path)
    return driver_class(name)(path)
