"""Dev host pieces that are pure: names, the nspawn command line, parsing /proc and losetup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from homecloud.devhost.lifecycle import check_venv
from homecloud.devhost.procs import mounts_under, parse_losetup_json
from homecloud.devhost.spec import DevHostPaths, DevHostSpec, nspawn_argv, validate_devhost_name
from homecloud.errors import HostError, UserError

SPEC = DevHostSpec(name="dev1", checkout=Path("/src/homecloud"), venv=Path("/opt/homecloud/venv"),
                   loop_devices=("/dev/loop-control", "/dev/loop0", "/dev/loop1"),
                   address="198.18.1.2", address6="fd68:6364:6576::102")
PATHS = DevHostPaths(Path("/var/tmp/hc-devhost/dev1"))


@pytest.mark.parametrize("name", ["homecloud", "hct-1234", "hct-1234-b", "Dev.1"])
def test_good_names(name: str) -> None:
    assert validate_devhost_name(name) == name


@pytest.mark.parametrize(("name", "message"), [
    ("", "must not be empty"),
    ("no_underscore", "it becomes a host name"),
    ("-dash", "invalid"),
    ("dot.", "it becomes a host name"),
    ("../etc", "must not contain '..'"),
    ("a/b", "invalid"),
    ("x" * 64, "too long"),
])
def test_bad_names(name: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        validate_devhost_name(name)


def test_nspawn_command_line() -> None:
    argv = nspawn_argv(SPEC, PATHS)
    assert argv[0] == "systemd-nspawn"
    for option in ("--directory=/", "--volatile=yes", "--register=no", "--keep-unit",
                   "--machine=dev1", "--boot", "--kill-signal=SIGRTMIN+4",
                   "--overlay=/etc:/var/tmp/hc-devhost/dev1/etc-upper:/etc",
                   "--bind=/var/tmp/hc-devhost/dev1/state:/var/lib/homecloud",
                   "--bind=/var/cache/homecloud", "--bind=/src/homecloud",
                   "--bind=/opt/homecloud/venv", "--bind=/dev/loop-control",
                   "--bind=/dev/loop0", "--bind=/dev/loop1"):
        assert option in argv
    assert "--private-network" not in argv
    assert "--network-bridge=hcdev0" in argv
    private = replace(SPEC, private_network=True)
    assert "--private-network" in nspawn_argv(private, PATHS)
    assert not any(arg.startswith("--network-") for arg in nspawn_argv(private, PATHS))
    # A dev host from before dev hosts had addresses shares the machine's network.
    shared = replace(SPEC, address=None, address6=None)
    assert not any("network" in arg for arg in nspawn_argv(shared, PATHS))


def test_spec_survives_its_file() -> None:
    assert DevHostSpec.from_json(SPEC.to_json()) == SPEC
    address = SPEC.network_address()
    assert address is not None and address.number == 0x0102
    old = json.loads(SPEC.to_json())
    del old["address"], old["address6"]
    assert DevHostSpec.from_json(json.dumps(old)).network_address() is None


def test_guest_path_keeps_debian_python_first() -> None:
    parts = SPEC.guest_path.split(":")
    assert parts[-1] == "/opt/homecloud/venv/bin"
    assert parts.index("/usr/bin") < parts.index("/opt/homecloud/venv/bin")


def test_parse_losetup_json() -> None:
    text = """{"loopdevices": [
        {"name": "/dev/loop1", "back-ino": 2163971, "back-maj:min": "     254:0  "},
        {"name": "/dev/loop4", "back-ino": null, "back-maj:min": null}]}"""
    [loop] = parse_losetup_json(text)
    assert (loop.name, loop.backing_device, loop.backing_inode) == (
        "/dev/loop1", os.makedev(254, 0), 2163971)
    assert parse_losetup_json("") == []


def test_mounts_under() -> None:
    mountinfo = (
        "36 35 98:0 / /var/tmp/hc-devhost/a rw - ext4 /dev/x rw\n"
        "37 36 98:0 / /var/tmp/hc-devhost/a/state/my\\040pool rw - btrfs /dev/loop0 rw\n"
        "38 35 98:0 / /var/tmp/hc-devhost/ab rw - ext4 /dev/x rw\n")
    assert mounts_under(Path("/var/tmp/hc-devhost/a"), mountinfo) == [
        Path("/var/tmp/hc-devhost/a/state/my pool"), Path("/var/tmp/hc-devhost/a")]


def test_a_venv_from_another_python_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pyvenv.cfg").write_text("home = /root/.pyenv/versions/3.11/bin\n")
    with pytest.raises(HostError, match="make it with /usr/bin/python3 -m venv"):
        check_venv(tmp_path)
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\n")
    check_venv(tmp_path)
    with pytest.raises(HostError, match="is not a venv"):
        check_venv(tmp_path / "nothing")


def hc_devhost(state_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HC_DEVHOST_ROOT": str(state_root)}
    return subprocess.run([sys.executable, "-m", "homecloud.devhost", *args], env=env,
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize(("args", "message"), [
    (("up", "bad_name"), "dev host name 'bad_name' is invalid"),
    (("up", "../x"), "must not contain '..'"),
    (("down", "nosuch"), "no dev host named 'nosuch' (see `hc-devhost ls`)"),
    (("exec", "nosuch", "--", "true"), "no dev host named 'nosuch'"),
    (("status", "nosuch"), "no dev host named 'nosuch'"),
    (("reboot", "nosuch"), "no dev host named 'nosuch'"),
    (("down",), "name the dev host to stop, or use --all"),
    (("down", "nosuch", "--all"), "`down --all` takes no dev host name and no --keep"),
    (("down", "--all", "--keep"), "`down --all` takes no dev host name and no --keep"),
])
def test_cli_errors_are_one_line_and_leave_nothing(tmp_path: Path, args: tuple[str, ...],
                                                   message: str) -> None:
    root = tmp_path / "devhosts"
    result = hc_devhost(root, *args)
    assert result.returncode == 1
    assert result.stderr == f"hc-devhost: {result.stderr.removeprefix('hc-devhost: ')}"
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not root.exists() or list(root.iterdir()) == []


def test_cli_lists_nothing_when_there_is_nothing(tmp_path: Path) -> None:
    result = hc_devhost(tmp_path / "devhosts", "ls", "--json")
    assert (result.returncode, result.stdout.strip()) == (0, "[]")
