"""hostsetup's file work, in a scratch tree (the systemctl part runs in the dev host tests)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from homecloud import ownunits
from homecloud.config import parse_config
from homecloud.host import setup as hostsetup
from homecloud.host.setup import (
    Layout,
    config_text,
    install_units,
    put_on_path,
    raise_inotify_limits,
    write_config,
)
from homecloud.resources import shipped_dir
from homecloud.sizes import parse_size

UNITS = shipped_dir("units")


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(units_src=UNITS, bindir=Path("/opt/homecloud/venv/bin"),
                  unit_dir=tmp_path / "systemd", config_path=tmp_path / "homecloud/config.yaml",
                  path_dir=tmp_path / "usr-local-bin", profile_snippet=tmp_path / "profile.sh")


def test_units_point_at_the_venv_and_install_once(layout: Layout) -> None:
    assert install_units(layout) == ["hcd.socket", "hcd.service", "hc-dns.service",
                                     "hc-frontdoor.service", "hc-frontdoor-auth.socket",
                                     "hc-frontdoor-auth.service", "hcd-door.socket",
                                     "hc-wake.socket", "hc-wake.service",
                                     "hc-console.socket", "hc-console.service",
                                     "hc-provision.service", "hc-dhcp.service"]
    service = (layout.unit_dir / "hcd.service").read_text()
    assert "ExecStart=/opt/homecloud/venv/bin/hcd" in service and "@BINDIR@" not in service
    assert install_units(layout) == []


def test_every_shipped_unit_is_installed_or_a_template() -> None:
    shipped = {path.name for path in UNITS.iterdir()}
    templates = {name for name in shipped if "@." in name}  # written per use (policy timers)
    assert shipped - templates == set(ownunits.UNITS)


def test_units_missing_from_the_checkout(layout: Layout, tmp_path: Path) -> None:
    broken = Layout(units_src=tmp_path / "nowhere", bindir=layout.bindir,
                    unit_dir=layout.unit_dir)
    with pytest.raises(hostsetup.HostError, match="hcd.socket is missing"):
        install_units(broken)
    assert not layout.unit_dir.exists()


@pytest.mark.parametrize("size", [None, "8G"])
def test_config_is_valid_and_written_only_once(layout: Layout, size: str | None) -> None:
    assert write_config(layout.config_path, size)
    config = parse_config(yaml.safe_load(layout.config_path.read_text()))
    assert config.pool.size == (parse_size(size) if size else parse_config(None).pool.size)
    layout.config_path.write_text("# mine\n")
    assert not write_config(layout.config_path, "1G")
    assert layout.config_path.read_text() == "# mine\n"


def test_config_text_keeps_the_size_as_typed() -> None:
    assert "  size: 8G\n" in config_text("8G")


def test_hc_goes_on_path_by_links_where_writable(layout: Layout) -> None:
    layout.path_dir.mkdir()
    assert "linked" in put_on_path(layout)
    assert (layout.path_dir / "hc").readlink() == layout.bindir / "hc"
    assert (layout.path_dir / "hcd").readlink() == layout.bindir / "hcd"
    assert not layout.profile_snippet.exists()


def test_hc_goes_on_path_by_profile_elsewhere(layout: Layout) -> None:
    assert "added to PATH" in put_on_path(layout)  # path_dir does not exist: not writable
    snippet = layout.profile_snippet.read_text()
    assert 'PATH="$PATH:/opt/homecloud/venv/bin"' in snippet
    put_on_path(layout)
    assert layout.profile_snippet.read_text() == snippet


def test_bad_pool_size_is_refused_before_anything(capsys: pytest.CaptureFixture[str]) -> None:
    assert hostsetup.main(["--pool-size", "lots"]) == 1
    err = capsys.readouterr().err
    assert err == "hostsetup: --pool-size 'lots' is not a size: use a number with an optional " \
                  "K, M, G or T suffix, like 512M\n"


def test_inotify_limits_are_kept_at_boot_and_raised_now(layout: Layout, tmp_path: Path) -> None:
    inotify = tmp_path / "proc-sys/fs/inotify"
    inotify.mkdir(parents=True)
    (inotify / "max_user_instances").write_text("128\n")
    (inotify / "max_user_watches").write_text("192536\n")
    scratch = replace(layout, proc_sys=tmp_path / "proc-sys", sysctl_dropin=tmp_path / "60.conf")
    dropin = ("fs.inotify.max_user_instances=8192, fs.inotify.max_user_watches=192536")
    assert raise_inotify_limits(scratch) == [
        f"installed {scratch.sysctl_dropin} ({dropin})",
        "raised fs.inotify.max_user_instances from 128 to 8192"]
    assert "fs.inotify.max_user_instances = 8192\n" in scratch.sysctl_dropin.read_text()
    assert (inotify / "max_user_instances").read_text() == "8192\n"
    assert raise_inotify_limits(scratch) == []
