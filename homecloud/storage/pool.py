"""Opening the pool: pick the driver that fits the file system under the pool path."""

from __future__ import annotations

import logging
from pathlib import Path

from homecloud.config import CONFIG_PATH, PoolConfig
from homecloud.errors import HostError
from homecloud.storage.base import StorageDriver
from homecloud.storage.fsutil import fs_name
from homecloud.storage.registry import available, driver_entry

log = logging.getLogger(__name__)

AUTO = "auto"


def detect_driver(path: Path) -> str:
    """The best driver for the file system at ``path``: the first, in order of preference,
    whose probe fits."""
    for entry in available():
        if entry.probe(path).ok:
            return entry.name
    raise HostError(f"no storage driver can use the pool at {path} ({fs_name(path)}): put the "
                    "pool on btrfs, or on XFS with reflink=1")


def driver_class(name: str) -> type[StorageDriver]:
    return driver_entry(name).load()


def open_pool(config: PoolConfig) -> StorageDriver:
    """The driver for the pool described by ``config`` (its directory must exist)."""
    path = config.path
    # A driver named in the config that is unknown, or cannot run or load here, is said before
    # anything about the path.
    cls = None if config.driver == AUTO else driver_class(config.driver)
    if not path.is_dir():
        raise HostError(f"the pool directory {path} does not exist: create it, mount a file "
                        f"system there, or set pool.path in {CONFIG_PATH}")
    if cls is None:
        cls = driver_class(detect_driver(path))
        if not cls.capabilities.fast_fork:
            log.warning("the pool at %s is on %s, which cannot clone files cheaply: every fork "
                        "copies all its bytes and will be slow; put the pool on btrfs or XFS "
                        "with reflink=1", path, fs_name(path))
        return cls(path)
    fit = driver_entry(config.driver).probe(path)
    if not fit.ok:
        raise HostError(fit.reason)
    return cls(path)
