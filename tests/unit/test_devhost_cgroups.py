"""Which cgroup hierarchies a dev host gets its own cgroup in, on each cgroup layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from homecloud.devhost.cgroups import writable_hierarchies


def hierarchy(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "cgroup.procs").write_text("")
    return path


@pytest.mark.parametrize(("layout", "expected"), [
    # Hybrid (this machine): controllers, the named systemd one and cgroup2 under a tmpfs.
    (("cpu", "memory", "systemd", "unified"), ("systemd", "unified")),
    (("cpu", "memory", "systemd"), ("systemd",)),  # legacy
])
def test_the_hierarchies_the_guests_systemd_writes(tmp_path: Path, layout: tuple[str, ...],
                                                   expected: tuple[str, ...]) -> None:
    for name in layout:
        hierarchy(tmp_path / name)
    assert writable_hierarchies(tmp_path) == [tmp_path / name for name in expected]


def test_unified_only_is_the_root_itself(tmp_path: Path) -> None:
    root = hierarchy(tmp_path / "cgroup")
    (root / "system.slice").mkdir()
    assert writable_hierarchies(root) == [root]
