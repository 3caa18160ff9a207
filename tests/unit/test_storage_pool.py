"""Choosing a driver from the file system (here: the test machine's, no root needed)."""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path

import pytest

from homecloud.config import PoolConfig
from homecloud.errors import HostError
from homecloud.storage.fsutil import BTRFS_MAGIC, can_reflink, fs_type
from homecloud.storage.pool import detect_driver, driver_class, open_pool
from homecloud.storage.zfs_host import zfs_missing


def plain_dir(tmp_path: Path) -> Path:
    if fs_type(tmp_path) == BTRFS_MAGIC or can_reflink(tmp_path):
        pytest.skip("the temporary directory is on a file system that clones files")
    return tmp_path


def test_zfs_says_why_it_cannot_run(tmp_path: Path) -> None:
    missing = zfs_missing()
    expected = (f"^the zfs driver is not available on this host: {re.escape(missing)}; or set "
                if missing else f"^the pool at {tmp_path} is on .*, not a ZFS file system "
                                "mounted there: run 'zfs create -o mountpoint=")
    with pytest.raises(HostError, match=expected):
        open_pool(PoolConfig(driver="zfs", path=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_missing_pool_directory(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="the pool directory .*/nope does not exist"):
        open_pool(PoolConfig(path=tmp_path / "nope"))
    assert list(tmp_path.iterdir()) == []


def test_auto_falls_back_to_copy_with_a_warning(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    path = plain_dir(tmp_path)
    assert detect_driver(path) == "copy"
    with caplog.at_level(logging.WARNING):
        driver = open_pool(PoolConfig(path=path))
    assert driver.name == "copy" and not driver.fast_fork and driver.root == path
    assert "fork copies all its bytes and will be slow" in caplog.text
    assert list(path.iterdir()) == []  # the reflink probe cleaned up


@pytest.mark.parametrize("driver,message", [
    ("btrfs", "is on .*, not btrfs"),
    ("reflink", "which cannot reflink files"),
])
def test_explicit_driver_must_fit(tmp_path: Path, driver: str, message: str) -> None:
    path = plain_dir(tmp_path)
    with pytest.raises(HostError, match=message):
        open_pool(replace(PoolConfig(), driver=driver, path=path))


def test_explicit_copy_works_anywhere(tmp_path: Path) -> None:
    assert open_pool(PoolConfig(driver="copy", path=tmp_path)).name == "copy"


def test_driver_classes() -> None:
    assert {driver_class(name).name for name in ("btrfs", "reflink", "copy")} == {
        "btrfs", "reflink", "copy"}
    with pytest.raises(HostError, match="unknown pool driver 'nfs'"):
        driver_class("nfs")
