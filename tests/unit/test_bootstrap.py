"""bootstrap's pure helpers: which Debian packages are missing, when to reinstall, PATH links."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from homecloud.host import bootstrap
from homecloud.host.bootstrap import (
    BootstrapError,
    install_stamp,
    installed_from_dpkg,
    link_command,
    missing_packages,
    needs_install,
    pytest_paths,
    venv_home,
)

DPKG = (
    "btrfs-progs\tinstall ok installed\n"
    "gcc\tdeinstall ok config-files\n"
    "zstd:amd64\tinstall ok installed\n"
    "xfsprogs\tinstall ok unpacked\n"
)


def test_installed_from_dpkg() -> None:
    assert installed_from_dpkg(DPKG) == {"btrfs-progs", "zstd"}
    assert installed_from_dpkg("") == set()


def test_missing_packages_keeps_the_wanted_order() -> None:
    wanted = ["zstd", "gcc", "btrfs-progs", "xfsprogs", "dbus"]
    assert missing_packages(wanted, installed_from_dpkg(DPKG)) == ["gcc", "xfsprogs", "dbus"]
    assert missing_packages(wanted, set(wanted)) == []


def test_the_package_list_has_what_dev_hosts_and_builds_need() -> None:
    for package in ("systemd-container", "python3-venv", "libsystemd-dev", "libbtrfsutil-dev",
                    "util-linux", "btrfs-progs", "debootstrap"):
        assert package in bootstrap.DEBIAN_PACKAGES
    assert len(set(bootstrap.DEBIAN_PACKAGES)) == len(bootstrap.DEBIAN_PACKAGES)


def test_stamp_decides_when_to_reinstall() -> None:
    pyproject = b"[project]\nname = 'homecloud'\n"
    stamp = install_stamp(Path("/src/hc"), pyproject)
    text = json.dumps(stamp)
    assert not needs_install(text, stamp)
    assert needs_install(None, stamp)
    assert needs_install("not json", stamp)
    assert needs_install(text, install_stamp(Path("/src/hc"), b"[project]\nname = 'other'\n"))
    assert needs_install(text, install_stamp(Path("/elsewhere"), pyproject))


def test_venv_home(tmp_path: Path) -> None:
    assert venv_home(tmp_path) is None
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    assert venv_home(tmp_path) == "/usr/bin"


def test_link_command(tmp_path: Path) -> None:
    target = tmp_path / "venv" / "bin" / "hc-devhost"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    link = link_command(bindir, target)
    assert link == bindir / "hc-devhost" and link.readlink() == target
    assert link_command(bindir, target) == link  # again: nothing changes
    other = tmp_path / "other" / "hc-devhost"
    assert link_command(bindir, other) == link and link.readlink() == other
    assert link_command(tmp_path / "missing", target) is None


def test_link_command_leaves_foreign_files_alone(tmp_path: Path) -> None:
    (tmp_path / "hc").write_text("#!/bin/sh\n")
    with pytest.raises(BootstrapError, match="is not homecloud's"):
        link_command(tmp_path, Path("/opt/homecloud/venv/bin/hc"))
    assert (tmp_path / "hc").read_text() == "#!/bin/sh\n"


def test_first_steps_are_hc_commands() -> None:
    assert bootstrap.FIRST_STEPS
    for step in bootstrap.FIRST_STEPS:
        assert step.argv[0] == "hc"


def test_bootstrap_imports_only_the_standard_library() -> None:
    # It runs on Debian's python before anything else is installed.
    source = Path(bootstrap.__file__).read_text()
    imports = {line.split()[1].split(".")[0] for line in source.splitlines()
               if line.startswith(("import ", "from "))}
    assert imports <= {"__future__", "argparse", "hashlib", "json", "os", "shutil", "subprocess",
                       "sys", "collections", "dataclasses", "pathlib"}


def test_pytest_runs_the_tests_unless_told_which(tmp_path: Path) -> None:
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    (tmp_path / "tests" / "unit" / "test_x.py").write_text("")
    everything = [str(tmp_path / "tests")]
    assert pytest_paths([], tmp_path) == everything
    assert pytest_paths(["-k", "devhost", "-x"], tmp_path) == everything
    assert pytest_paths(["tests/unit/test_x.py::test_one", "-q"], tmp_path) == []
