"""Dataset and snapshot names as the tree drivers see them (no file system needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from homecloud.errors import UserError
from homecloud.storage.copy import CopyDriver
from homecloud.storage.tree import ancestors, check_snapshot_name, split_name


@pytest.mark.parametrize("name,parts", [
    ("debian", ["debian"]),
    ("images/debian", ["images", "debian"]),
    ("a/b/c", ["a", "b", "c"]),
    (".partial-debian", [".partial-debian"]),
    ("images/.partial", ["images", ".partial"]),
    ("x_y-z.1", ["x_y-z.1"]),
])
def test_good_dataset_names(name: str, parts: list[str]) -> None:
    assert split_name(name) == parts


@pytest.mark.parametrize("name", ["", "/", "/etc", "a/", "a//b", "..", ".", "a/../b", "a/./b",
                                  "../x", "x y", "a\nb", "a\x00b", "é", "x" * 129])
def test_bad_dataset_names(name: str) -> None:
    with pytest.raises(UserError, match="invalid dataset name"):
        split_name(name)


@pytest.mark.parametrize("name", [".snapshots", ".snapshots/x", ".meta", ".work/a"])
def test_reserved_names(name: str) -> None:
    with pytest.raises(UserError, match="is reserved for the pool's own bookkeeping"):
        split_name(name)


def test_reserved_only_at_the_top() -> None:
    assert split_name("images/.snapshots") == ["images", ".snapshots"]


@pytest.mark.parametrize("snapshot", ["s1", "2024-01-01T00.00", "daily_1", ".x"])
def test_good_snapshot_names(snapshot: str) -> None:
    assert check_snapshot_name(snapshot) == snapshot


@pytest.mark.parametrize("snapshot", ["", "a/b", "..", ".", "/s", "s p", "s@t"])
def test_bad_snapshot_names(snapshot: str) -> None:
    with pytest.raises(UserError, match=f"invalid snapshot name {snapshot!r}"):
        check_snapshot_name(snapshot)


def test_ancestors() -> None:
    assert list(ancestors("a")) == []
    assert list(ancestors("a/b/c")) == ["a", "a/b"]


def test_paths_stay_in_the_pool() -> None:
    driver = CopyDriver(Path("/pool"))
    assert driver.path("images/debian") == Path("/pool/images/debian")
    assert driver.snapshot_path("images/debian", "s1") == Path("/pool/.snapshots/images/debian/s1")
    with pytest.raises(UserError):
        driver.path("../etc")
    with pytest.raises(UserError):
        driver.snapshot_path("a", "../../etc")
