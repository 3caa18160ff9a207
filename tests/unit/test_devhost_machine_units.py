"""Which of the machine's enablement links a dev host hides, and how."""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePath

import pytest

from homecloud.devhost.machine_units import enabled_links, hide_links


def _machine(tmp_path: Path) -> Path:
    units = tmp_path / "etc"
    for link in ("multi-user.target.wants/postgresql.service",
                 "multi-user.target.wants/machines.target",
                 "sockets.target.requires/x.socket", "timers.target.wants/apt-daily.timer"):
        (units / link).parent.mkdir(parents=True, exist_ok=True)
        (units / link).symlink_to("/lib/systemd/system/" + PurePath(link).name)
    (units / "dbus-org.freedesktop.timesync1.service").symlink_to("/dev/null")  # an alias
    (units / "local.service").write_text("[Service]\n")
    return units


def test_enablement_links_but_the_allowed_ones(tmp_path: Path) -> None:
    assert enabled_links(_machine(tmp_path)) == [
        PurePath("multi-user.target.wants/postgresql.service"),
        PurePath("sockets.target.requires/x.socket"),
        PurePath("timers.target.wants/apt-daily.timer")]
    assert enabled_links(tmp_path / "none") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts (character devices) need root")
def test_hidden_with_whiteouts_keeping_what_the_dev_host_enabled(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    kept = upper / "timers.target.wants/apt-daily.timer"
    kept.parent.mkdir(parents=True)
    kept.symlink_to("/lib/systemd/system/apt-daily.timer")
    hide_links(upper, enabled_links(_machine(tmp_path)))
    hidden = upper / "multi-user.target.wants/postgresql.service"
    mode = hidden.lstat()
    assert stat.S_ISCHR(mode.st_mode) and mode.st_rdev == os.makedev(0, 0)
    assert stat.S_ISCHR((upper / "sockets.target.requires/x.socket").lstat().st_mode)
    assert kept.is_symlink()
    hide_links(upper, enabled_links(_machine(tmp_path / "again")))  # idempotent
