"""`hc exec` and `hc console --text`: a command inside a running instance, or this terminal on
its console, as a transient unit of its own.

The instance's driver says how to get inside (a container: nsenter into its namespaces); the
command runs in a unit systemd owns (like every workload here), with the client's terminal
descriptors as its stdio when the client passed them.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from homecloud.errors import UserError
from homecloud.instances.manager import SLICE, InstanceManager
from homecloud.systemd.transient import TransientService

EXEC_UNIT_PREFIX = "hcx-"


def exec_unit_name(instance: str) -> str:
    # Not "hc-*": those are instances, and reconcile reports stray ones.
    return f"{EXEC_UNIT_PREFIX}{instance}-{secrets.token_hex(4)}.service"


def exec_in_instance(manager: InstanceManager, name: str, argv: Sequence[str], *,
                     stdio: tuple[int, int, int] | None,
                     environment: dict[str, str] | None = None) -> int:
    """Run ``argv`` in instance ``name``; wait for it; return its exit status."""
    if not argv:
        raise UserError("no command given: use `hc exec NAME -- CMD ...`")
    return run_attached(manager, name, manager.exec_argv(name, argv),
                        f"exec in {name}: {' '.join(argv)[:60]}", stdio=stdio,
                        environment=environment)


def console_of_instance(manager: InstanceManager, name: str, *,
                        stdio: tuple[int, int, int] | None) -> int:
    """Attach the client's terminal to instance ``name``'s text console until it detaches."""
    instance = manager.instance(name)
    command = manager.driver(instance).console(instance)
    return run_attached(manager, name, command, f"console of {name}", stdio=stdio)


def run_attached(manager: InstanceManager, name: str, command: Sequence[str],
                 description: str, *, stdio: tuple[int, int, int] | None,
                 environment: dict[str, str] | None = None) -> int:
    """Run the host command line ``command`` reaching instance ``name`` as a unit of its own
    with the client's stdio; wait for it; return its exit status."""
    unit = exec_unit_name(name)
    svc = TransientService(name=unit, argv=command, description=f"homecloud {description}",
                           service_type="exec", slice=SLICE, remain_after_exit=True,
                           environment=dict(environment or {}), accounting=False, stdio=stdio)
    systemd = manager.systemd
    try:
        systemd.start_transient(svc, accept_exited=True)
        status = systemd.wait_finished(unit)
    finally:
        systemd.discard(unit)
    return status.exec_main_status or 0
