"""Pausing every process of a unit while its datasets are snapshotted (the cgroup v2 freezer),
and, first, freezing a VM guest's file systems through its guest agent.

systemd's own FreezeUnit needs the unified hierarchy alone; hosts on the hybrid layout still
mount cgroup v2 (at /sys/fs/cgroup/unified) with the same tree of units, and its
``cgroup.freeze`` works there, so homecloud writes that file itself. The snapshots then see
every file as it was at one instant: what a crash at that instant would have left.

A VM's guest caches writes the host cannot see; its guest agent (qemu-guest-agent) flushes them
and holds every write (``guest-fsfreeze-freeze``) until ``guest-fsfreeze-thaw``, so the disk is
clean, not merely crash-consistent. Thawing is attempted whatever happened: a guest left frozen
hangs every writer in it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from homecloud.errors import HomecloudError, HostError

log = logging.getLogger(__name__)

FREEZE_TIMEOUT = 5.0  # seconds the kernel gets to stop every task of the cgroup
THAW_ATTEMPTS = 3  # a thaw the agent did not answer is asked again
MOUNTINFO = Path("/proc/self/mountinfo")
# How a snapshot was made consistent, as `hc snapshot ls` shows it.
FSFREEZE, CGROUP_FREEZE, NOTHING = "fsfreeze", "cgroup freeze", "none"


class GuestAgent(Protocol):
    """A guest agent's commands (instances.drivers.qmp.AgentCommands): answers within the
    agent's timeout, else an OSError or a HomecloudError."""

    def call(self, command: str, arguments: dict[str, Any] | None = None) -> Any: ...


@contextmanager
def guest_frozen(agent: GuestAgent | None, instance: str) -> Iterator[bool]:
    """Freeze the guest's file systems for the body; yields whether they are frozen (False:
    no agent, or it could not freeze them, which is logged; the cgroup freeze still
    follows). The thaw runs even when the freeze or the body failed."""
    if agent is None:
        yield False
        return
    try:
        agent.call("guest-fsfreeze-freeze")
    except (OSError, HomecloudError) as exc:
        log.warning("%s: the guest's file systems could not be frozen (%s); the snapshot is "
                    "crash-consistent only", instance, exc)
        _thaw(agent, instance)  # a freeze that timed out may still have happened
        yield False
        return
    try:
        yield True
    finally:
        _thaw(agent, instance)


def _thaw(agent: GuestAgent, instance: str) -> None:
    error: BaseException | None = None
    for _ in range(THAW_ATTEMPTS):
        try:
            agent.call("guest-fsfreeze-thaw")
            return
        except (OSError, HomecloudError) as exc:
            error = exc
    raise HostError(f"VM {instance}'s file systems may still be frozen: its guest agent did "
                    f"not thaw them ({error}); run `hc exec {instance} -- fsfreeze -u /` or "
                    f"restart it with `hc restart {instance}`")


def cgroup2_root(mountinfo: Path = MOUNTINFO) -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (None: it is not)."""
    for line in mountinfo.read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        if fields[separator + 1] == "cgroup2":
            return Path(fields[4])
    return None


def unit_cgroup(pid: int, unit: str) -> str | None:
    """The cgroup v2 path of ``unit``, from a process of it (``pid``): the part of the
    process's path up to the unit (nspawn moves its payload into a child cgroup)."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("0::"):
            parts = line[3:].split("/")
            if unit in parts:
                return "/".join(parts[:parts.index(unit) + 1])
    return None


@contextmanager
def frozen(pid: int | None, unit: str) -> Iterator[bool]:
    """Freeze the unit whose process is ``pid`` for the body; yields whether it was frozen
    (False when it runs no process, or the host has no cgroup v2 hierarchy)."""
    root = cgroup2_root()
    path = unit_cgroup(pid, unit) if pid else None
    if root is None or path is None:
        yield False
        return
    directory = root / path.lstrip("/")
    control = directory / "cgroup.freeze"
    if not control.exists():
        yield False
        return
    control.write_text("1")
    try:
        _wait_frozen(directory / "cgroup.events", unit)
        yield True
    finally:
        control.write_text("0")


def _wait_frozen(events: Path, unit: str) -> None:
    deadline = time.monotonic() + FREEZE_TIMEOUT
    pause = 0.0005
    while "frozen 1" not in events.read_text():
        if time.monotonic() > deadline:
            raise HostError(f"could not pause {unit} for a consistent snapshot within "
                            f"{FREEZE_TIMEOUT:g} s (a task is stuck in the kernel); try again")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
