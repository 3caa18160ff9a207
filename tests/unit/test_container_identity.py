"""The container driver's pure parts: nspawn command lines and identity files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from homecloud.errors import UserError
from homecloud.instances.drivers.nspawn import nspawn_argv
from homecloud.instances.rootfs import (
    GuestNetwork,
    boots_systemd,
    hosts_file,
    read_file_in_root,
    resolv_conf,
    write_file_in_root,
    write_identity,
)
from homecloud.instances.spec import Bind, InstanceSpec

ROOT = Path("/pool/instances/web")


def test_boot_argv() -> None:
    spec = InstanceSpec("web", "debian", env={"A": "1"},
                        binds=[Bind("/srv", "/srv"), Bind("/etc/x", "/x", True)])
    argv = nspawn_argv(spec, ROOT, "ab" * 16)
    assert argv[0] == "systemd-nspawn"
    for arg in ("--keep-unit", "--machine=web", f"--directory={ROOT}", f"--uuid={'ab' * 16}",
                "--private-users=pick", "--private-users-ownership=auto", "--private-network",
                "--link-journal=no", "--boot", "--notify-ready=yes", "--setenv=A=1",
                "--bind=/srv:/srv", "--bind-ro=/etc/x:/x", "--register=yes"):
        assert arg in argv
    assert "--" not in argv


def test_command_argv_ends_with_the_command() -> None:
    argv = nspawn_argv(InstanceSpec("job", "busybox", command=["sh", "-c", "echo hi"]), ROOT,
                       "0" * 32, register=False)
    assert argv[-4:] == ["--", "sh", "-c", "echo hi"]
    assert "--boot" not in argv and "--as-pid2" in argv and "--register=no" in argv


def test_networked_argv_leaves_the_network_to_systemd() -> None:
    argv = nspawn_argv(InstanceSpec("web", "debian"), ROOT, "ab" * 16, networked=True)
    assert "--private-network" not in argv and "--resolv-conf=off" in argv
    assert not any(arg.startswith(("--network", "--port")) for arg in argv)


NETWORK = GuestNetwork(addresses=("10.9.8.2", "fd00::2"), nameservers=("10.9.8.1", "fd00::1"),
                       search="alpha.home.arpa")


def test_resolv_conf_and_hosts_with_a_network() -> None:
    assert resolv_conf(NETWORK).splitlines()[1:] == [
        "nameserver 10.9.8.1", "nameserver fd00::1", "search alpha.home.arpa"]
    old = "127.0.0.1\tlocalhost\n127.0.1.1\tweb\n10.9.8.2\told.name\n::1\tlocalhost\n"
    assert hosts_file(old, "web", NETWORK.addresses, "web.alpha.home.arpa") == (
        "127.0.0.1\tlocalhost\n10.9.8.2\tweb.alpha.home.arpa\tweb\n"
        "fd00::2\tweb.alpha.home.arpa\tweb\n::1\tlocalhost\n")


def test_identity_with_a_network(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "etc/resolv.conf").symlink_to("/run/systemd/resolve/stub-resolv.conf")
    write_identity(root, InstanceSpec("web", "debian"), "c" * 32, NETWORK)
    assert not (root / "etc/resolv.conf").is_symlink()  # replaced, never followed
    assert "search alpha.home.arpa" in (root / "etc/resolv.conf").read_text()
    assert "10.9.8.2\tweb.alpha.home.arpa\tweb" in (root / "etc/hosts").read_text()


def test_hosts_file() -> None:
    assert hosts_file("", "web") == "127.0.0.1\tlocalhost\n127.0.1.1\tweb\n"
    old = "127.0.0.1\tlocalhost\n127.0.1.1\told\n::1\tlocalhost\n"
    assert hosts_file(old, "web") == "127.0.0.1\tlocalhost\n127.0.1.1\tweb\n::1\tlocalhost\n"


def make_root(tmp_path: Path, init: bool = True) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "lib/systemd").mkdir(parents=True)
    (root / "sbin").mkdir()
    (root / "usr").mkdir()
    if init:
        (root / "lib/systemd/systemd").write_text("")
        (root / "sbin/init").symlink_to("/lib/systemd/systemd")  # absolute: inside the guest
    return root


def test_identity_written(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
    write_identity(root, InstanceSpec("web", "debian"), "c" * 32)
    assert (root / "etc/hostname").read_text() == "web\n"
    assert (root / "etc/machine-id").read_text() == "c" * 32 + "\n"
    assert "127.0.1.1\tweb" in (root / "etc/hosts").read_text()
    assert sorted(p.name for p in (root / "etc").iterdir()) == ["hostname", "hosts",
                                                                "machine-id"]


def test_identity_refuses_an_image_without_init_when_booting(tmp_path: Path) -> None:
    root = make_root(tmp_path, init=False)
    with pytest.raises(UserError, match="cannot boot: it has no systemd init"):
        write_identity(root, InstanceSpec("web", "busybox"), "c" * 32)
    assert not (root / "etc/hostname").exists()
    write_identity(root, InstanceSpec("web", "busybox", command=["true"]), "c" * 32)


def test_only_a_systemd_init_can_boot(tmp_path: Path) -> None:
    """busybox's init never tells nspawn it is ready: refused at once, not after a timeout."""
    root = make_root(tmp_path, init=False)
    (root / "bin").mkdir()
    (root / "bin/busybox").write_text("")
    (root / "sbin/init").symlink_to("/bin/busybox")
    assert not boots_systemd(root)
    (root / "sbin/init").unlink()
    (root / "usr/lib/systemd").mkdir(parents=True)
    (root / "usr/lib/systemd/systemd").write_text("")
    (root / "sbin/init").symlink_to("../usr/lib/systemd/systemd")
    assert boots_systemd(root)
    (root / "usr/lib/systemd/systemd").unlink()
    assert not boots_systemd(root)  # a dangling /sbin/init boots nothing


def test_identity_refuses_a_tree_without_usr(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    with pytest.raises(UserError, match="no /usr directory"):
        write_identity(root, InstanceSpec("web", "x", command=["true"]), "c" * 32)


def test_symlinks_in_the_image_are_replaced_not_followed(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    outside = tmp_path / "outside"
    outside.write_text("precious")
    (root / "etc/hostname").symlink_to(outside)
    write_file_in_root(root, "etc/hostname", "web\n")
    assert outside.read_text() == "precious"
    assert not (root / "etc/hostname").is_symlink()
    (root / "etc/hosts").symlink_to(outside)
    assert read_file_in_root(root, "etc/hosts") == ""


def test_symlinked_etc_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", root / "etc")
    with pytest.raises(UserError, match="/etc as a symlink"):
        write_file_in_root(root, "etc/hostname", "web\n")
    assert not (tmp_path / "elsewhere/hostname").exists()
