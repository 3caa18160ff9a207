"""systemd-nspawn for containers: its command line and the unit that runs it (pure logic).

Decisions (measured in the dev host, systemd 252, kernel 6.x, btrfs pool):
- User namespaces by default: ``--private-users=pick --private-users-ownership=auto``. On btrfs
  nspawn then uses an idmapped mount: files on disk stay owned by 0 and nothing is chowned, so
  the fork stays a cheap snapshot. Where idmapped mounts are unavailable nspawn falls back to a
  recursive chown (slow, but correct).
- ``--link-journal=no``: the guest keeps its journal in its own dataset
  (``/var/log/journal/<machine-id>``), readable with ``journalctl --directory`` whether it runs
  or not; nothing appears in the host's /var/log/journal to clean up.
- Networking: with a network, systemd starts nspawn inside the instance's own namespace
  (homecloud/network/guest.py), so nspawn gets no network option and leaves /etc/resolv.conf
  as homecloud wrote it (``--resolv-conf=off``); without one, ``--private-network``.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import Path

from homecloud.instances.spec import InstanceSpec
from homecloud.systemd.units import TransientService

NSPAWN = "systemd-nspawn"
# The unit is configured as systemd-nspawn@.service is: nspawn turns SIGTERM into a clean guest
# poweroff, and KillMode=mixed sends it to nspawn alone, SIGKILLing the rest only when
# TimeoutStopSec passes. 133 is nspawn's "the guest rebooted" status.
NSPAWN_REBOOT_STATUS = 133


def nspawn_argv(spec: InstanceSpec, root: Path, machine_id: str, *,
                register: bool = True, networked: bool = False) -> list[str]:
    """The systemd-nspawn command line for ``spec`` booting from (or running in) ``root``.
    ``networked``: nspawn runs in the instance's network namespace (see the module notes)."""
    network = ["--resolv-conf=off"] if networked else ["--private-network"]
    argv = [NSPAWN, "--quiet", "--keep-unit", f"--machine={spec.name}", f"--directory={root}",
            f"--uuid={machine_id}", "--private-users=pick", "--private-users-ownership=auto",
            *network, "--link-journal=no", f"--register={'yes' if register else 'no'}"]
    for key, value in spec.env.items():
        argv.append(f"--setenv={key}={value}")
    for bind in spec.binds:
        argv.append(f"--bind{'-ro' if bind.readonly else ''}={bind.source}:{bind.target}"
                    + (":idmap" if bind.idmap else ""))
    if spec.boot:
        # READY=1 reaches systemd when the guest's own systemd is ready.
        argv += ["--boot", "--notify-ready=yes"]
    else:
        # A stub init as PID 1 reaps zombies and forwards SIGTERM (a plain PID 1 ignores it);
        # output goes straight to the unit's journal stream.
        argv += ["--as-pid2", "--console=pipe", "--notify-ready=no", "--"]
        argv += list(spec.command or [])
    return argv


def nspawn_service(name: str, argv: Sequence[str], *, description: str, slice: str,
                   boot: bool, cpus: float | None, memory_max: int | None,
                   timeout_stop: float, restart: str,
                   stdio: tuple[int, int, int] | None = None,
                   netns_path: str | None = None) -> TransientService:
    """A service running systemd-nspawn, configured like systemd-nspawn@.service.
    ``netns_path``: a network namespace (/run/netns/NAME) systemd runs nspawn in."""
    return TransientService(
        name=name, argv=argv, description=description, slice=slice,
        # Booting: nspawn sends READY=1 when the guest's systemd is ready (--notify-ready=yes).
        # A command: Type=exec, so its notifications are ignored; with Type=notify nspawn's
        # STOPPING=1 at exit would make systemd drop the unit, status and all, and a fast
        # command could exit before READY, turning its own failure into a failed start.
        service_type="notify" if boot else "exec",
        cpus=cpus, memory_max=memory_max, tasks_max=16384,
        timeout_stop=timeout_stop, kill_mode="mixed", kill_signal=int(signal.SIGTERM),
        delegate=True, restart=restart, restart_sec=1.0 if restart != "no" else None,
        # A finished command stays visible ("exited") until removed, unless it is restarted.
        # Not when the client's stdio was passed: a unit that stays loaded keeps those
        # descriptors open, and `hc run IMAGE -- CMD | cat` would wait for ever. A finished
        # attached command unloads (success) or stays failed with its exit status.
        remain_after_exit=not boot and restart == "no" and stdio is None,
        success_exit_status=(NSPAWN_REBOOT_STATUS,),
        restart_force_exit_status=(NSPAWN_REBOOT_STATUS,) if boot else (),
        watchdog_sec=180.0 if boot else None,
        device_policy="closed",
        device_allow=(("/dev/net/tun", "rwm"), ("char-pts", "rw")),
        stdio=stdio,
        extra=(("NetworkNamespacePath", "s", netns_path),) if netns_path else (),
    )
