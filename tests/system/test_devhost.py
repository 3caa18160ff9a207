"""Dev hosts against the real thing: systemd-nspawn booting a real systemd, loop devices, reboots.

Uses the session's two dev hosts where a test only looks, and throwaway ones (hct-<pid>-...)
where it stops or breaks them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from homecloud import devhost as devhosts
from homecloud.devhost import procs
from homecloud.devhost.spec import STATE_ROOT, DevHostPaths
from homecloud.errors import HostError

pytestmark = pytest.mark.system
READY = ("running", "degraded")


def machine_processes(name: str) -> list[int]:
    """Processes on this machine that belong to the dev host ``name`` (supervisor, nspawn)."""
    found = []
    for entry in Path("/proc").iterdir():
        argv = procs.cmdline(int(entry.name)) if entry.name.isdigit() else None
        if argv and (f"--machine={name}" in argv or ("_supervise" in argv and name in argv)):
            found.append(int(entry.name))
    return found


def loop_devices() -> set[tuple[int, int]]:
    """(device, inode) of every loop device's backing file."""
    result = subprocess.run(["losetup", "--list", "--json", "-O", "NAME,BACK-INO,BACK-MAJ:MIN"],
                            capture_output=True, text=True, check=True)
    return {(d.backing_device, d.backing_inode) for d in procs.parse_losetup_json(result.stdout)}


def hc_devhost(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The `hc-devhost` command line, as a user runs it."""
    result = subprocess.run([sys.executable, "-m", "homecloud.devhost", *args],
                            capture_output=True, text=True, timeout=300, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"hc-devhost {' '.join(args)} exited with {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def assert_gone(name: str) -> None:
    paths = DevHostPaths.of(name)
    assert machine_processes(name) == []
    assert not paths.root.exists()
    assert not Path(f"/run/systemd/nspawn/propagate/{name}").exists()
    assert procs.mounts_under(paths.root) == []


@pytest.fixture
def throwaway_name(_devhost_support: None) -> Iterator[str]:
    """A name for a dev host the test makes itself; removed afterwards whatever happened."""
    name = f"hct-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        yield name
    finally:
        if DevHostPaths.of(name).root.exists():
            devhosts.shutdown(name)


def test_two_dev_hosts_boot_side_by_side(devhost: devhosts.DevHost,
                                         second_devhost: devhosts.DevHost) -> None:
    assert devhost.pid != second_devhost.pid
    for host in (devhost, second_devhost):
        assert host.system_state() in READY
        assert host.run("hostname").stdout.strip() == host.name
    ids = {host.run("cat", "/etc/machine-id").stdout for host in (devhost, second_devhost)}
    assert len(ids) == 2, "each dev host needs its own machine id"
    listed = {s["name"]: s for s in json.loads(hc_devhost("ls", "--json").stdout)}
    assert listed[devhost.name]["pid"] == devhost.pid
    assert listed[second_devhost.name]["state"] == "running"


def test_each_dev_host_has_its_own_state_dir(devhost: devhosts.DevHost,
                                             second_devhost: devhosts.DevHost) -> None:
    marker = f"/var/lib/homecloud/marker-{uuid.uuid4().hex}"
    devhost.run("sh", "-c", f"echo one > {marker}")
    try:
        assert devhost.run("cat", marker).stdout == "one\n"
        assert second_devhost.run("test", "-e", marker, check=False).returncode == 1
        assert (devhost.paths.state / Path(marker).name).read_text() == "one\n"
    finally:
        devhost.run("rm", "-f", marker)


def test_homecloud_is_installed_inside(devhost: devhosts.DevHost) -> None:
    assert devhost.run("systemctl", "is-active", "hcd.socket").stdout.strip() == "active"
    socket = devhost.run("stat", "-c", "%U:%G %a", "/run/homecloud/hc.sock").stdout.split()
    assert socket == ["root:homecloud", "660"]
    unit = devhost.run("systemctl", "cat", "hcd.service").stdout
    assert f"ExecStart={devhost.spec.venv_bin}/hcd" in unit
    # `hc` is on PATH for commands run through the API and for login shells inside.
    hc_path = f"{devhost.spec.venv_bin}/hc"
    assert devhost.run("sh", "-c", "command -v hc").stdout.strip() == hc_path
    assert devhost.run("env", "-i", "bash", "-lc", "command -v hc").stdout.strip() == hc_path
    # hostsetup is idempotent: again changes nothing and still succeeds.
    again = devhost.run(devhost.python, "-m", "homecloud.hostsetup")
    assert "installed" not in again.stdout and "created group" not in again.stdout


def test_commands_inside_get_input_exit_code_and_user(devhost: devhosts.DevHost) -> None:
    result = devhost.run("sh", "-c", "cat; exit 3", input="hello", check=False)
    assert (result.returncode, result.stdout) == (3, "hello")
    assert devhost.run("id", "-un", user="nobody").stdout.strip() == "nobody"
    with pytest.raises(devhosts.DevHostCommandError, match="exited with 3"):
        devhost.run("sh", "-c", "echo oops >&2; exit 3")
    # The CLI passes the exit code through too.
    assert hc_devhost("exec", devhost.name, "--", "sh", "-c", "exit 7", check=False).returncode == 7


def test_loop_mounts_work_inside(devhost: devhosts.DevHost) -> None:
    image = f"/var/lib/homecloud/loop-{uuid.uuid4().hex[:8]}.img"
    mountpoint = f"/run/{Path(image).stem}"
    devhost.run("truncate", "-s", "256M", image)
    try:
        assert devhost.run("test", "-b", "/dev/loop31", check=False).returncode == 0
        devhost.run("mkfs.btrfs", "-q", image)
        devhost.run("mkdir", "-p", mountpoint)
        devhost.run("mount", "-o", "loop", image, mountpoint)
        try:
            fstype = devhost.run("findmnt", "-n", "-o", "FSTYPE", mountpoint).stdout.strip()
            assert fstype == "btrfs"
            devhost.run("btrfs", "subvolume", "create", f"{mountpoint}/sub")
        finally:
            devhost.run("umount", mountpoint)
    finally:
        devhost.run("rm", "-f", image)


def test_reboot_comes_back_with_state_kept(second_devhost: devhosts.DevHost) -> None:
    marker = f"/var/lib/homecloud/reboot-{uuid.uuid4().hex}"
    second_devhost.run("sh", "-c", f"echo kept > {marker}")
    second_devhost.run("touch", "/run/gone-after-reboot")
    before = second_devhost.pid
    try:
        devhosts.reboot(second_devhost.name)
        assert second_devhost.pid != before
        assert second_devhost.system_state() in READY
        assert second_devhost.run("cat", marker).stdout == "kept\n"
        assert second_devhost.run("test", "-e", "/run/gone-after-reboot",
                                  check=False).returncode == 1
        active = second_devhost.run("systemctl", "is-active", "hcd.socket").stdout.strip()
        assert active == "active"
    finally:
        second_devhost.run("rm", "-f", marker)


def test_cli_up_down_keep_and_remove(throwaway_name: str) -> None:
    name = throwaway_name
    status = json.loads(hc_devhost("up", name, "--json").stdout)
    assert status["name"] == name and status["system_state"] in READY
    paths = DevHostPaths.of(name)
    # Leave a mounted loop device inside: `down` must not leave it attached on the machine.
    host = devhosts.get(name)
    host.run("sh", "-c", "truncate -s 256M /var/lib/homecloud/pool.img && "
             "mkfs.btrfs -q /var/lib/homecloud/pool.img && mkdir -p /var/lib/homecloud/pool && "
             "mount -o loop /var/lib/homecloud/pool.img /var/lib/homecloud/pool && "
             "echo kept > /var/lib/homecloud/marker")
    pool_file = os.stat(paths.state / "pool.img")
    assert (pool_file.st_dev, pool_file.st_ino) in loop_devices()

    hc_devhost("down", name, "--keep")
    assert machine_processes(name) == []
    assert (pool_file.st_dev, pool_file.st_ino) not in loop_devices()
    assert (paths.state / "marker").read_text() == "kept\n"
    stopped = json.loads(hc_devhost("status", name, "--json").stdout)
    assert stopped["state"] == "stopped" and stopped["pid"] is None

    hc_devhost("up", name)
    assert host.run("cat", "/var/lib/homecloud/marker").stdout == "kept\n"
    assert host.run("systemctl", "is-active", "hcd.socket").stdout.strip() == "active"

    hc_devhost("down", name)
    assert_gone(name)
    assert (pool_file.st_dev, pool_file.st_ino) not in loop_devices()
    missing = hc_devhost("down", name, check=False)
    assert missing.returncode == 1
    assert f"no dev host named {name!r}" in missing.stderr


def test_a_boot_that_fails_leaves_nothing(throwaway_name: str) -> None:
    with pytest.raises(HostError, match="did not finish booting in time"):
        devhosts.boot(throwaway_name, timeout=0.001)
    assert_gone(throwaway_name)


def test_hc_devhost_refuses_bad_names_and_unknown_hosts(_devhost_support: None) -> None:
    def state_dirs() -> list[str]:
        return sorted(p.name for p in STATE_ROOT.iterdir()) if STATE_ROOT.exists() else []

    before = state_dirs()
    bad = hc_devhost("up", "no_underscores", check=False)
    assert bad.returncode == 1 and "dev host name 'no_underscores' is invalid" in bad.stderr
    unknown = hc_devhost("exec", "hct-nosuch", "--", "true", check=False)
    assert unknown.returncode == 1 and "no dev host named 'hct-nosuch'" in unknown.stderr
    assert state_dirs() == before
