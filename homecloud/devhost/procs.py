"""Looking at processes, loop devices and mounts through /proc and util-linux.

A dev host is a tree of processes (supervisor -> systemd-nspawn -> the guest's PID 1); these
helpers find them again from pid files, checking each pid still belongs to what we started.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


def cmdline(pid: int) -> list[str] | None:
    """The argv of ``pid``, or None when it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    if not raw:
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def read_pid(path: Path, *expected_args: str) -> int | None:
    """The pid stored in ``path`` if that process runs and its argv contains every one of
    ``expected_args``; pids get reused, so a bare number proves nothing."""
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    argv = cmdline(pid)
    if argv is None or not all(arg in argv for arg in expected_args):
        return None
    return pid


def write_pid(path: Path, pid: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may itself contain spaces or ')'.
    return int(stat.rsplit(")", 1)[1].split()[1])


def children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and parent_of(int(entry.name)) == pid:
            children.append(int(entry.name))
    return children


def namespace_pid(pid: int) -> int | None:
    """The pid of ``pid`` inside its innermost pid namespace (1 for a container's init)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    return None


def container_init(nspawn_pid: int) -> int | None:
    """The guest's PID 1: the child of systemd-nspawn that is pid 1 of its own namespace."""
    for child in children_of(nspawn_pid):
        if namespace_pid(child) == 1:
            return child
    return None


def alive(pid: int) -> bool:
    return cmdline(pid) is not None


def signal_pid(pid: int | None, sig: int) -> None:
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def wait_gone(pids: Iterable[int | None], timeout: float) -> bool:
    """Wait until none of ``pids`` runs; True if they all went within ``timeout`` seconds."""
    remaining = [pid for pid in pids if pid is not None]
    deadline = time.monotonic() + timeout
    while True:
        remaining = [pid for pid in remaining if alive(pid)]
        if not remaining:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


@dataclass(frozen=True)
class LoopDevice:
    name: str
    backing_device: int  # st_dev of the backing file
    backing_inode: int


LOOP_CTL_ADD = 0x4C80


def ensure_loop_devices(count: int, control: Path = Path("/dev/loop-control")) -> None:
    """Make sure /dev/loop0..count-1 exist. A dev host has no udev: it sees only the device
    nodes bound in at boot, so a loop device the kernel adds later would be out of its reach."""
    try:
        fd = os.open(control, os.O_RDWR)
    except OSError:
        return
    try:
        for number in range(count):
            if not Path(f"/dev/loop{number}").exists():
                with contextlib.suppress(OSError):  # EEXIST: it exists without a node yet
                    fcntl.ioctl(fd, LOOP_CTL_ADD, number)
    finally:
        os.close(fd)


def parse_losetup_json(text: str) -> list[LoopDevice]:
    """Parse `losetup --list --json -O NAME,BACK-INO,BACK-MAJ:MIN`."""
    if not text.strip():
        return []
    devices = []
    for entry in json.loads(text).get("loopdevices", []):
        if entry.get("back-ino") is None or not entry.get("back-maj:min"):
            continue
        major, minor = (int(part) for part in str(entry["back-maj:min"]).strip().split(":"))
        devices.append(LoopDevice(entry["name"], os.makedev(major, minor),
                                  int(entry["back-ino"])))
    return devices


def loop_devices_backed_under(directory: Path) -> list[LoopDevice]:
    """Loop devices whose backing file lies under ``directory``. Matched by device and inode:
    a loop device set up inside a dev host records the path as the guest saw it."""
    files = {}
    for dirpath, _dirnames, filenames in os.walk(directory):
        for filename in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, filename))
            except FileNotFoundError:
                continue
            files[(st.st_dev, st.st_ino)] = filename
    if not files:
        return []
    result = subprocess.run(["losetup", "--list", "--json", "-O", "NAME,BACK-INO,BACK-MAJ:MIN"],
                            capture_output=True, text=True, check=False)
    return [loop for loop in parse_losetup_json(result.stdout)
            if (loop.backing_device, loop.backing_inode) in files]


def mounts_under(directory: Path, mountinfo: str | None = None) -> list[Path]:
    """Mount points at or under ``directory`` in this mount namespace, deepest first."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    prefix = str(directory).rstrip("/") + "/"
    found = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        # mountinfo escapes spaces and the like as octal (\040).
        target = fields[4].encode().decode("unicode_escape")
        if target == str(directory) or target.startswith(prefix):
            found.append(Path(target))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def kill_tree_now(pids: Iterable[int | None]) -> None:
    for pid in pids:
        signal_pid(pid, signal.SIGKILL)
