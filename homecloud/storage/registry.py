"""The storage drivers homecloud knows, in the order ``auto`` prefers them.

Each entry names the driver's class (imported only when chosen: a host without a working
btrfsutil still runs a reflink or copy pool) and a probe that says whether the file system at
the pool path can carry the driver, and if not, what is there and what to do. A new driver is
a module plus one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from homecloud.classpath import load_class
from homecloud.config import CONFIG_PATH
from homecloud.errors import HostError
from homecloud.storage.base import StorageDriver
from homecloud.storage.fsutil import BTRFS_MAGIC, can_reflink, fs_name, fs_type
from homecloud.storage.zfs_host import zfs_missing, zfs_unfit


@dataclass(frozen=True)
class Fit:
    ok: bool
    reason: str = ""  # when not ok: one line naming what is there and what to do


FITS = Fit(True)


@dataclass(frozen=True)
class DriverEntry:
    name: str
    # "module:Class"; None for a driver homecloud names but does not ship yet.
    target: str | None
    probe: Callable[[Path], Fit]
    # Why the driver cannot run on this host at all (its kernel module or library is missing),
    # or None; asked without importing the driver.
    missing: Callable[[], str | None] = lambda: None

    def unavailable(self) -> str | None:
        if self.target is None:
            return "homecloud has no such driver yet"
        return self.missing()

    def load(self) -> type[StorageDriver]:
        reason = self.unavailable()
        if reason is not None or self.target is None:
            raise HostError(f"the {self.name} driver is not available on this host: {reason}; "
                            f"or set pool.driver in {CONFIG_PATH} to {driver_choices()}")
        return load_class(self.target, StorageDriver, f"the {self.name} driver",
                          "a storage driver", ": reinstall homecloud with its dependencies, or "
                          "set pool.driver to another driver")


def on_btrfs(path: Path) -> Fit:
    if fs_type(path) == BTRFS_MAGIC:
        return FITS
    return Fit(False, f"the pool at {path} is on {fs_name(path)}, not btrfs: mount a btrfs "
                      "file system there or set pool.driver to auto")


def clones_files(path: Path) -> Fit:
    if can_reflink(path):
        return FITS
    return Fit(False, f"the pool at {path} is on {fs_name(path)}, which cannot reflink files: "
                      "use XFS made with reflink=1 (or btrfs), or set pool.driver to auto")


def on_zfs(path: Path) -> Fit:
    reason = zfs_unfit(path)
    return FITS if reason is None else Fit(False, reason)


def anywhere(path: Path) -> Fit:
    return FITS


# Preference order for ``auto``: the first whose probe fits wins.
DRIVERS: tuple[DriverEntry, ...] = (
    DriverEntry("btrfs", "homecloud.storage.btrfs:BtrfsDriver", on_btrfs),
    DriverEntry("zfs", "homecloud.storage.zfs:ZfsDriver", on_zfs, zfs_missing),
    DriverEntry("reflink", "homecloud.storage.reflink:ReflinkDriver", clones_files),
    DriverEntry("copy", "homecloud.storage.copy:CopyDriver", anywhere),
)


def available() -> list[DriverEntry]:
    """The drivers that can run on this host, in order of preference."""
    return [entry for entry in DRIVERS if entry.unavailable() is None]


def driver_choices() -> str:
    """'auto, btrfs, reflink or copy': what pool.driver may be set to here."""
    names = ["auto", *(entry.name for entry in available())]
    return f"{', '.join(names[:-1])} or {names[-1]}"


def driver_entry(name: str) -> DriverEntry:
    for entry in DRIVERS:
        if entry.name == name:
            return entry
    raise HostError(f"unknown pool driver {name!r}: use {driver_choices()}")
