"""Which journal `hc logs` reads for an instance.

A booted container's own journal is in its dataset (persistent, /var/log/journal) or, while it
runs without one, in its /run; a command container's output is its unit's journal stream.
"""

from __future__ import annotations

from pathlib import Path

from homecloud.instances import container
from homecloud.instances.manager import InstanceManager, instance_dataset
from homecloud.systemd.journal import JOURNALCTL, guest_argv, unit_argv


def log_command(manager: InstanceManager, name: str, *, lines: int, follow: bool) -> list[str]:
    info = manager.get(name)
    unit = container.unit_name(name)
    if info.command:
        return unit_argv(unit, lines, follow=follow)
    root = manager.pool.path(instance_dataset(name))
    if (root / "var/log/journal").is_dir():
        return guest_argv(root, lines, follow=follow)
    if info.state == "running":
        volatile = Path(f"/proc/{manager.leader_pid(name)}/root/run/log/journal")
        argv = [JOURNALCTL, "--no-pager", "-o", "short", f"--directory={volatile}",
                "-n", str(lines)]
        return argv + (["-f"] if follow else [])
    return unit_argv(unit, lines, follow=follow)
