"""The driver registry: names, preference order, probes and what it says about each driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from homecloud.config import PoolConfig
from homecloud.errors import HostError
from homecloud.storage.base import Capabilities
from homecloud.storage.fsutil import BTRFS_MAGIC, can_reflink, fs_type
from homecloud.storage.pool import driver_class, open_pool
from homecloud.storage.registry import (
    DRIVERS,
    DriverEntry,
    anywhere,
    available,
    driver_choices,
    driver_entry,
)
from homecloud.storage.zfs_host import zfs_missing


def test_preference_order_and_choices() -> None:
    assert [entry.name for entry in DRIVERS] == ["btrfs", "zfs", "reflink", "copy"]
    # zfs runs only where its kernel module, pyzfs and the zfs command are.
    here = ["btrfs", *([] if zfs_missing() else ["zfs"]), "reflink", "copy"]
    assert [entry.name for entry in available()] == here
    assert driver_choices() == f"auto, {', '.join(here[:-1])} or copy"


def test_every_available_driver_declares_its_capabilities() -> None:
    for entry in available():
        cls = entry.load()
        assert cls.name == entry.name
        assert isinstance(cls.capabilities, Capabilities)
    assert driver_class("btrfs").capabilities.incremental_send
    assert not driver_class("copy").capabilities.fast_fork
    assert driver_class("reflink").capabilities.fast_fork
    assert all(entry.load().capabilities.block_volumes for entry in available())
    assert driver_class("copy").capabilities.as_dict() == {
        "fast_fork": False, "send_receive": True, "incremental_send": False,
        "block_volumes": True, "enforced_readonly": False}


def test_unknown_and_unavailable_drivers() -> None:
    choices = driver_choices()
    with pytest.raises(HostError, match=rf"^unknown pool driver 'lvm': use {choices}$"):
        driver_entry("lvm")
    lacking = DriverEntry("lvm", "homecloud.storage.copy:CopyDriver", anywhere,
                          lambda: "the dm-thin kernel module is not loaded")
    assert lacking.unavailable() == "the dm-thin kernel module is not loaded"
    with pytest.raises(HostError, match=r"^the lvm driver is not available on this host: the "
                                        r"dm-thin kernel module is not loaded; or set "
                                        rf"pool\.driver in .* to {choices}$"):
        lacking.load()
    unshipped = DriverEntry("lvm", None, anywhere)
    with pytest.raises(HostError, match="^the lvm driver is not available on this host: "
                                        "homecloud has no such driver yet; or set pool.driver"):
        unshipped.load()


def test_a_driver_that_cannot_load_says_so() -> None:
    entry = DriverEntry("broken", "homecloud.storage.no_such_module:Driver", anywhere)
    with pytest.raises(HostError, match=r"^the broken driver cannot load \(No module named "):
        entry.load()


def test_probes_name_what_is_there(tmp_path: Path) -> None:
    assert driver_entry("copy").probe(tmp_path).ok
    btrfs = driver_entry("btrfs").probe(tmp_path)
    assert btrfs.ok == (fs_type(tmp_path) == BTRFS_MAGIC)
    if not btrfs.ok:
        assert btrfs.reason.startswith(f"the pool at {tmp_path} is on ")
        assert btrfs.reason.endswith(", not btrfs: mount a btrfs file system there or set "
                                     "pool.driver to auto")
    reflink = driver_entry("reflink").probe(tmp_path)
    assert reflink.ok == can_reflink(tmp_path)
    if not reflink.ok:
        assert "which cannot reflink files: use XFS made with reflink=1" in reflink.reason
    assert list(tmp_path.iterdir()) == []  # probes leave nothing behind


def test_a_named_driver_is_checked_before_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(HostError, match=r"^unknown pool driver 'lvm': use auto, btrfs"):
        open_pool(PoolConfig(driver="lvm", path=missing))
    with pytest.raises(HostError, match=r"^the pool directory .*/nope does not exist"):
        open_pool(PoolConfig(driver="copy", path=missing))
    assert not missing.exists()
