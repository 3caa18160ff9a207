"""A VM's identity: the files rendered (pure), and written into a real ext4 volume with
debugfs, without mounting (needs e2fsprogs, no root)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from homecloud.errors import HomecloudError
from homecloud.instances.rootfs import GuestNetwork
from homecloud.instances.vm_identity import (
    AUTHORIZED_KEYS,
    NETWORK_FILE,
    VmNetwork,
    identity_files,
    network_file,
    read_guest_file,
    write_guest_files,
)

NETWORK = VmNetwork(
    mac="02:11:22:33:44:55", addresses=("10.7.0.5/24", "fd12:3456:789a:1::5/64"),
    gateways=("10.7.0.1", "fd12:3456:789a:1::1"),
    guest=GuestNetwork(addresses=("10.7.0.5", "fd12:3456:789a:1::5"),
                       nameservers=("10.7.0.1", "fd12:3456:789a:1::1"),
                       search="alpha.home.arpa"))
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests user@laptop"


def test_network_file_matches_the_nic_and_sets_everything_static() -> None:
    text = network_file(NETWORK)
    assert "[Match]\nMACAddress=02:11:22:33:44:55\n" in text
    for line in ("Address=10.7.0.5/24", "Address=fd12:3456:789a:1::5/64",
                 "Gateway=10.7.0.1", "Gateway=fd12:3456:789a:1::1", "DNS=10.7.0.1",
                 "Domains=alpha.home.arpa", "IPv6AcceptRA=no"):
        assert line in text.splitlines()


def test_files_without_network_or_keys() -> None:
    files = {f.path: f for f in identity_files("vm1", "ab" * 16, "", None, ())}
    assert set(files) == {"etc/hostname", "etc/machine-id", "etc/hosts"}
    assert files["etc/machine-id"].mode == 0o444
    assert "127.0.1.1\tvm1" in files["etc/hosts"].text


def test_keys_are_one_per_line_and_private() -> None:
    files = {f.path: f for f in identity_files("vm1", "ab" * 16, "", NETWORK,
                                               (KEY + "\n", KEY.replace("user", "other")))}
    assert files[AUTHORIZED_KEYS].text.count("\n") == 2
    assert files[AUTHORIZED_KEYS].mode == 0o600
    assert "10.7.0.5\tvm1.alpha.home.arpa\tvm1" in files["etc/hosts"].text


needs_e2fsprogs = pytest.mark.skipif(
    shutil.which("debugfs") is None or shutil.which("mkfs.ext4") is None,
    reason="needs e2fsprogs (debugfs, mkfs.ext4)")


def make_volume(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "root").mkdir()
    (tree / "etc/hosts").write_text("127.0.0.1\tlocalhost\n")
    (tree / "etc/resolv.conf").symlink_to("/run/systemd/resolve/stub-resolv.conf")
    volume = tmp_path / "volume.raw"
    with volume.open("wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), "-L", "hc-root", str(volume)],
                   check=True)
    return volume


def stat(volume: Path, path: str) -> str:
    return subprocess.run(["debugfs", "-R", f"stat /{path}", str(volume)], check=True,
                          capture_output=True, text=True).stdout


@needs_e2fsprogs
def test_written_into_the_volume_without_mounting(tmp_path: Path) -> None:
    volume = make_volume(tmp_path)
    files = identity_files("vm1", "ab" * 16, read_guest_file(volume, "etc/hosts"), NETWORK,
                           (KEY,))
    write_guest_files(volume, files)
    write_guest_files(volume, files)  # again: the same result (a retried step)
    assert read_guest_file(volume, "etc/hostname") == "vm1\n"
    assert read_guest_file(volume, "etc/machine-id") == "ab" * 16 + "\n"
    assert read_guest_file(volume, NETWORK_FILE) == network_file(NETWORK)
    assert read_guest_file(volume, AUTHORIZED_KEYS) == KEY + "\n"
    hosts = read_guest_file(volume, "etc/hosts")
    assert hosts.startswith("127.0.0.1\tlocalhost\n") and "vm1.alpha.home.arpa" in hosts
    # The image's link is replaced by a file, not written through.
    assert "Type: regular" in stat(volume, "etc/resolv.conf")
    assert "nameserver 10.7.0.1" in read_guest_file(volume, "etc/resolv.conf")
    assert "Mode:  0700" in stat(volume, "root/.ssh")
    assert "Mode:  0600" in stat(volume, AUTHORIZED_KEYS)
    assert "User:     0" in stat(volume, AUTHORIZED_KEYS)
    assert "Mode:  0444" in stat(volume, "etc/machine-id")


@needs_e2fsprogs
def test_a_volume_that_is_not_ext4_is_refused_and_left_alone(tmp_path: Path) -> None:
    volume = tmp_path / "volume.raw"
    volume.write_bytes(b"\0" * (1 << 20))
    with pytest.raises(HomecloudError, match="cannot write the VM's identity into its disk"):
        write_guest_files(volume, identity_files("vm1", "ab" * 16, "", None, ()))
    assert volume.read_bytes() == b"\0" * (1 << 20)
    assert read_guest_file(volume, "etc/hosts") == ""
