"""Driver detection on real file systems."""

from __future__ import annotations

from dataclasses import replace

import pytest

from homecloud.config import PoolConfig
from homecloud.errors import HostError
from homecloud.storage.btrfs import BtrfsDriver
from homecloud.storage.pool import detect_driver, open_pool
from homecloud.storage.reflink import ReflinkDriver

pytestmark = pytest.mark.system


def test_btrfs_is_detected(btrfs_pool: BtrfsDriver) -> None:
    assert detect_driver(btrfs_pool.root) == "btrfs"
    assert isinstance(open_pool(PoolConfig(path=btrfs_pool.root)), BtrfsDriver)
    assert isinstance(open_pool(PoolConfig(driver="btrfs", path=btrfs_pool.root)), BtrfsDriver)
    assert list(btrfs_pool.root.iterdir()) == []


def test_xfs_with_reflink_is_detected(xfs_pool: ReflinkDriver) -> None:
    config = replace(PoolConfig(), path=xfs_pool.root)
    assert detect_driver(xfs_pool.root) == "reflink"
    assert isinstance(open_pool(config), ReflinkDriver)
    assert isinstance(open_pool(replace(config, driver="reflink")), ReflinkDriver)
    with pytest.raises(HostError, match=r"is on xfs, not btrfs: mount a btrfs file system"):
        open_pool(replace(config, driver="btrfs"))
    assert list(xfs_pool.root.iterdir()) == []
