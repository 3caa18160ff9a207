"""The embedded pool's decisions and unit, without systemd or root."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from homecloud.config import PoolConfig
from homecloud.errors import HostError
from homecloud.storage import embedded
from homecloud.storage.embedded import (
    BTRFS_MAGIC,
    BTRFS_MAGIC_OFFSET,
    classify_image,
    needs_embedded_pool,
    parse_mountinfo,
    pool_mount_unit,
    prepare_image,
)

DEFAULT = PoolConfig()


@pytest.mark.parametrize("config,mounted,fstype,needed", [
    (DEFAULT, False, "ext4", True),
    (DEFAULT, False, "tmpfs", True),
    (DEFAULT, False, "xfs", True),
    (DEFAULT, True, "ext4", False),  # the user mounted a pool there
    (DEFAULT, False, "btrfs", False),  # the state dir is on btrfs: the pool is a directory
    (replace(DEFAULT, embedded=False), False, "ext4", False),
    (replace(DEFAULT, driver="btrfs"), False, "ext4", True),
    (replace(DEFAULT, driver="reflink"), False, "xfs", False),
    (replace(DEFAULT, driver="copy"), False, "ext4", False),
    (replace(DEFAULT, driver="zfs"), False, "ext4", False),
])
def test_needs_embedded_pool(config: PoolConfig, mounted: bool, fstype: str,
                             needed: bool) -> None:
    assert needs_embedded_pool(config, mounted=mounted, fstype=fstype) is needed


def _superblock() -> bytearray:
    head = bytearray(1 << 20)
    head[BTRFS_MAGIC_OFFSET:BTRFS_MAGIC_OFFSET + 8] = BTRFS_MAGIC
    return head


def test_classify_image() -> None:
    assert classify_image(bytes(1 << 20)) == "blank"
    assert classify_image(b"") == "blank"
    assert classify_image(bytes(_superblock())) == "btrfs"
    foreign = bytearray(1 << 20)
    foreign[0x438:0x43A] = b"\x53\xef"  # an ext4 superblock magic
    assert classify_image(bytes(foreign)) == "other"


MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
35 22 0:30 / /tmp rw,nosuid shared:2 - tmpfs tmpfs rw
40 22 7:0 / /var/lib/homecloud/pool rw,relatime shared:20 - btrfs /dev/loop0 rw,space_cache=v2
41 22 7:1 / /mnt/my\\040pool rw,relatime shared:21 - xfs /dev/loop1 rw
42 35 0:31 / /tmp rw shared:3 - overlay overlay rw
"""


def test_parse_mountinfo() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert mounts["/var/lib/homecloud/pool"] == "btrfs"
    assert mounts["/mnt/my pool"] == "xfs"
    assert mounts["/tmp"] == "overlay"  # the later mount hides the earlier one
    assert mounts["/"] == "ext4"


def test_pool_mount_unit() -> None:
    config = replace(DEFAULT, path=Path("/var/lib/hc-embedded-test/pool"),
                     image_file=Path("/var/lib/hc-embedded-test/pool.img"))
    name, text = pool_mount_unit(config)
    assert name == "var-lib-hc\\x2dembedded\\x2dtest-pool.mount"
    assert text.splitlines()[1:] == [
        "[Unit]",
        "Description=homecloud embedded storage pool",
        "Before=hcd.service",
        "",
        "[Mount]",
        "What=/var/lib/hc-embedded-test/pool.img",
        "Where=/var/lib/hc-embedded-test/pool",
        "Type=btrfs",
        "Options=loop",
        "",
        "[Install]",
        "WantedBy=local-fs.target",
    ]


def test_prepare_image_refuses_a_file_holding_data(tmp_path: Path) -> None:
    image = tmp_path / "pool.img"
    image.write_bytes(b"precious" * 1000)
    with pytest.raises(HostError, match="exists and holds data that is not a btrfs file system"):
        prepare_image(image, 1 << 30)
    assert image.read_bytes() == b"precious" * 1000


def test_prepare_image_keeps_a_formatted_file(tmp_path: Path) -> None:
    image = tmp_path / "pool.img"
    image.write_bytes(bytes(_superblock()) + b"data")
    assert prepare_image(image, 1 << 30) is False
    assert image.stat().st_size == (1 << 20) + 4  # neither formatted nor resized


def test_write_unit_only_when_changed(tmp_path: Path) -> None:
    unit = tmp_path / "x.mount"
    assert embedded.write_unit(unit, "a\n") is True
    assert embedded.write_unit(unit, "a\n") is False
    assert embedded.write_unit(unit, "b\n") is True
    assert unit.read_text() == "b\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.mount"]
