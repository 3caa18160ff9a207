"""The kernel's inotify limits, which homecloud raises: hostsetup (a sysctl.d drop-in, applied at
once), hc-devhost (on the machine, at each boot of a dev host) and `hc doctor` (a check).

Every systemd (the host's, each dev host's and each container's PID 1) holds about a dozen
inotify instances and a few dozen watches, and user-namespaced containers charge theirs to root
machine-wide: Debian's default of 128 instances runs out after a handful of booted containers,
and the next guest's systemd exits at once (code 255), so it never reports READY. The watches'
default scales with memory, down to 8192 on a small machine: about 150 containers' worth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PROC_SYS = Path("/proc/sys")
SYSCTL_DROPIN = Path("/etc/sysctl.d/60-homecloud.conf")


@dataclass(frozen=True)
class Limit:
    key: str  # as sysctl names it: fs.inotify.max_user_instances
    minimum: int

    def path(self, proc_sys: Path = PROC_SYS) -> Path:
        return proc_sys / self.key.replace(".", "/")


# Instances: 8192 is room for some 600 systemd-booted containers. Watches: about 50 for each
# of those (a kernel watch costs ~1 KiB only while it exists; the limit itself costs nothing).
LIMITS = (Limit("fs.inotify.max_user_instances", 8192),
          Limit("fs.inotify.max_user_watches", 65536))


@dataclass(frozen=True)
class Reading:
    limit: Limit
    value: int  # what the kernel has now

    @property
    def low(self) -> bool:
        return self.value < self.limit.minimum

    @property
    def wanted(self) -> int:
        """The value to keep: never lower than what the admin already has."""
        return max(self.value, self.limit.minimum)


def read_limits(proc_sys: Path = PROC_SYS, limits: Sequence[Limit] = LIMITS) -> list[Reading]:
    return [Reading(limit, int(limit.path(proc_sys).read_text())) for limit in limits]


def dropin_text(readings: list[Reading]) -> str:
    lines = ["# Written by homecloud hostsetup (homecloud/host/inotify_limits.py): every",
             "# systemd-booted container holds about a dozen inotify instances, charged to root",
             "# machine-wide.",
             "# Values already higher when it was written are kept."]
    lines += [f"{reading.limit.key} = {reading.wanted}" for reading in readings]
    return "\n".join(lines) + "\n"


def raise_limits(proc_sys: Path = PROC_SYS, limits: Sequence[Limit] = LIMITS) -> list[str]:
    """Raise each limit below its minimum, now; return what changed ("key from N to M").
    OSError (EROFS) where /proc/sys is read-only, as in a container."""
    changed = []
    for reading in read_limits(proc_sys, limits):
        if reading.low:
            reading.limit.path(proc_sys).write_text(f"{reading.wanted}\n")
            changed.append(f"{reading.limit.key} from {reading.value} to {reading.wanted}")
    return changed


def fix_for(low: list[Reading]) -> str:
    """How to raise ``low`` limits, now and for the next boots."""
    settings = " ".join(f"{r.limit.key}={r.wanted}" for r in low)
    return (f"`sysctl -w {settings}` (on the machine itself when this is a container); "
            f"{SYSCTL_DROPIN}, installed by `python -m homecloud.host.setup`, keeps it at boot")
