"""Pool fixtures for system tests (see pools.py). Each test gets a fresh pool."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pools import btrfs_loop_pool, directory_pool, tmpfs_pool, xfs_loop_pool
from zfs_pool import zfs_file_pool

from homecloud.storage.base import StorageDriver
from homecloud.storage.btrfs import BtrfsDriver
from homecloud.storage.reflink import ReflinkDriver

TINY = 128 << 20


@pytest.fixture
def btrfs_pool(tmp_path: Path) -> Iterator[BtrfsDriver]:
    """A 2 GiB (sparse) btrfs pool on a loop file."""
    with btrfs_loop_pool(tmp_path) as driver:
        yield driver


@pytest.fixture
def tiny_btrfs_pool(tmp_path: Path) -> Iterator[BtrfsDriver]:
    """A 128 MiB btrfs pool (mixed block groups) for full-pool tests."""
    with btrfs_loop_pool(tmp_path, TINY, mixed=True) as driver:
        yield driver


@pytest.fixture
def xfs_pool(tmp_path: Path) -> Iterator[ReflinkDriver]:
    """A 512 MiB XFS pool made with reflink=1."""
    with xfs_loop_pool(tmp_path) as driver:
        yield driver


@pytest.fixture(params=["btrfs", "reflink", "copy", "zfs"])
def pool(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageDriver]:
    """Each driver in turn, on the file system it is made for (zfs skips, saying why, where
    the host cannot run it)."""
    if request.param == "btrfs":
        yield request.getfixturevalue("btrfs_pool")
    elif request.param == "reflink":
        yield request.getfixturevalue("xfs_pool")
    elif request.param == "zfs":
        with zfs_file_pool(tmp_path) as driver:
            yield driver
    else:
        with directory_pool(tmp_path) as driver:
            yield driver


@pytest.fixture(params=["btrfs", "reflink", "copy", "zfs"])
def tiny_pool(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageDriver]:
    """Each driver on a small pool that tests can fill: XFS cannot be smaller than 300 MiB."""
    if request.param == "btrfs":
        yield request.getfixturevalue("tiny_btrfs_pool")
    elif request.param == "reflink":
        with xfs_loop_pool(tmp_path, 300 << 20) as driver:
            yield driver
    elif request.param == "zfs":
        with zfs_file_pool(tmp_path, TINY) as driver:
            yield driver
    else:
        with tmpfs_pool(tmp_path, TINY) as driver:
            yield driver
