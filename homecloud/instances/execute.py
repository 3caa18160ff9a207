"""`hc exec`: run a command inside a running instance, as a transient unit of its own.

The command enters the container's namespaces with nsenter, in a unit systemd owns (like every
workload here), with the client's terminal descriptors as its stdio when the client passed them.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Sequence

from homecloud.errors import HostError, UserError
from homecloud.instances.manager import SLICE, InstanceManager
from homecloud.systemd.transient import TransientService

EXEC_UNIT_PREFIX = "hcx-"


def exec_unit_name(instance: str) -> str:
    # Not "hc-*": those are instances, and reconcile reports stray ones.
    return f"{EXEC_UNIT_PREFIX}{instance}-{secrets.token_hex(4)}.service"


def nsenter_argv(leader: int, argv: Sequence[str]) -> list[str]:
    nsenter = shutil.which("nsenter")
    if nsenter is None:
        raise HostError("nsenter is missing: install util-linux")
    return [nsenter, f"--target={leader}", "--all", "--root", "--wd", "--", *argv]


def exec_in_instance(manager: InstanceManager, name: str, argv: Sequence[str], *,
                     stdio: tuple[int, int, int] | None,
                     environment: dict[str, str] | None = None) -> int:
    """Run ``argv`` in instance ``name``; wait for it; return its exit status."""
    if not argv:
        raise UserError("no command given: use `hc exec NAME -- CMD ...`")
    leader = manager.leader_pid(name)
    unit = exec_unit_name(name)
    svc = TransientService(name=unit, argv=nsenter_argv(leader, argv),
                           description=f"homecloud exec in {name}: {' '.join(argv)[:60]}",
                           service_type="exec", slice=SLICE, remain_after_exit=True,
                           environment=dict(environment or {}), accounting=False, stdio=stdio)
    systemd = manager.systemd
    try:
        systemd.start_transient(svc, accept_exited=True)
        status = systemd.wait_finished(unit)
    finally:
        systemd.discard(unit)
    return status.exec_main_status or 0
