"""Volume sizes: what create_volume and resize_volume accept and refuse."""

from __future__ import annotations

import pytest

from homecloud.errors import UserError
from homecloud.storage.volumes import MIN_VOLUME_SIZE, check_growth, volume_size


@pytest.mark.parametrize("text,expected", [
    ("20G", 20 << 30), ("512M", 512 << 20), ("1.5G", 3 << 29), ("1M", 1 << 20),
    (64 << 20, 64 << 20), ("2GiB", 2 << 30),
])
def test_volume_sizes(text: str | int, expected: int) -> None:
    assert volume_size(text) == expected


@pytest.mark.parametrize("text,message", [
    ("big", r"^volume size 'big' is not a size: use a number with an optional K, M, G or T"),
    ("0", r"^volume size '0' must be greater than zero$"),
    ("512K", r"^volume size '512K' is too small: a volume holds at least 1\.0M$"),
    (4096, r"^volume size 4096 is too small"),
    ("1000000000", r"^volume size '1000000000' is not a whole number of MiB: use a size like "),
    ("1.0001G", r"is not a whole number of MiB"),
])
def test_bad_volume_sizes(text: str | int, message: str) -> None:
    with pytest.raises(UserError, match=message):
        volume_size(text)


def test_growth_never_shrinks() -> None:
    check_growth("vm", 1 << 30, 1 << 30)
    check_growth("vm", 1 << 30, 2 << 30)
    with pytest.raises(UserError, match=r"^cannot shrink volume 'vm' from 2\.0G to 1\.0G: "
                                        "volumes only grow; make a smaller volume"):
        check_growth("vm", 2 << 30, 1 << 30)
    assert MIN_VOLUME_SIZE == 1 << 20
