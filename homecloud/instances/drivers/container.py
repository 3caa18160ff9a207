"""The container driver: systemd-nspawn on a forked directory dataset.

Identity (hostname, machine-id, hosts, resolvers) is written into the fork before the unit
starts; the unit runs nspawn inside the instance's network namespace; `hc exec` enters the
container's namespaces with nsenter; a booted container's log is its own journal.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from homecloud.errors import Conflict, HomecloudError, HostError, UserError
from homecloud.instances.context import Stdio, StepContext
from homecloud.instances.drivers.base import EXEC, LOGIN, InstanceDriver
from homecloud.instances.drivers.nspawn import nspawn_argv, nspawn_service
from homecloud.instances.records import Instance
from homecloud.instances.rootfs import GuestNetwork, write_identity
from homecloud.instances.servicesets import ActionFactory, plain_action
from homecloud.instances.spec import InstanceSpec
from homecloud.systemd.journal import JOURNALCTL, guest_argv, unit_argv
from homecloud.systemd.transient import UnitStatus

MACHINED = (Path("/usr/lib/systemd/systemd-machined"), Path("/lib/systemd/systemd-machined"))


def machined_available() -> bool:
    return any(path.exists() for path in MACHINED)


class ContainerDriver(InstanceDriver):
    kind = "container"
    description = "a container booted (or running one command) with systemd-nspawn"
    capabilities = frozenset({EXEC, LOGIN})

    def validate(self, spec: InstanceSpec) -> None:
        options = spec.vm_options()
        if options:
            raise UserError(f"{', '.join(options)} {'is' if len(options) == 1 else 'are'} for "
                            "virtual machines: add --vm, or drop "
                            f"{'it' if len(options) == 1 else 'them'}")

    def root(self, instance: Instance) -> Path:
        return self.host.pool.path(instance.dataset)

    def actions(self) -> Mapping[str, ActionFactory[StepContext]]:
        driver = self

        class Identity:
            def do(self, ctx: StepContext) -> None:
                write_identity(driver.root(ctx.instance), ctx.instance.spec,
                               ctx.instance.machine_id, driver.guest_network(ctx))

            def undo(self, ctx: StepContext) -> None:
                """The dataset's own undo removes what was written."""

        return {"write-identity": plain_action(Identity)}

    def guest_network(self, ctx: StepContext) -> GuestNetwork | None:
        network = self.host.network
        if network is None or ctx.addresses is None:
            return None
        plan = network.plan
        return GuestNetwork(
            addresses=(str(ctx.addresses.ipv4), str(ctx.addresses.ipv6)),
            nameservers=tuple(str(a) for a in plan.gateways), search=plan.names.origin)

    def start_unit(self, instance: Instance, timeout: float,
                   stdio: Stdio | None = None) -> UnitStatus:
        from homecloud.network.guest import instance_netns_path

        spec = instance.spec
        # Its own namespace when it has one (made by the netns step, or again after a reboot);
        # one created with `--network none` keeps its private network whatever is there.
        netns = instance_netns_path(spec.name)
        networked = spec.networked and self.host.network is not None and os.path.exists(netns)
        argv = nspawn_argv(spec, self.root(instance), instance.machine_id,
                           register=self.host.register, networked=networked)
        what = "container" if spec.boot else "command container"
        stdio = stdio if not spec.boot else None
        svc = nspawn_service(instance.unit, argv, description=f"homecloud {what} {spec.name}",
                             slice=self.host.slice, boot=spec.boot, cpus=spec.cpus,
                             memory_max=spec.memory, timeout_stop=self.host.stop_timeout,
                             restart=spec.restart, stdio=stdio,
                             netns_path=netns if networked else None)
        return self.host.systemd.start_transient(svc, timeout=timeout,
                                                 accept_exited=not spec.boot)

    # -- reaching it -----------------------------------------------------------------------------
    def leader_pid(self, instance: Instance) -> int:
        """The container's PID 1 as seen on the host."""
        status = self.host.systemd.unit_status(instance.unit)
        running = status is not None and status.active_state in (
            "active", "activating", "deactivating")
        if not running or status is None or not status.main_pid:
            raise Conflict(f"instance {instance.name} is not running; start it with "
                           f"`hc start {instance.name}`")
        leader = _child_of(status.main_pid)
        if leader is None:
            raise HomecloudError(f"instance {instance.name}: cannot find the container's "
                                 "init process")
        return leader

    def exec_argv(self, instance: Instance, argv: Sequence[str]) -> list[str]:
        nsenter = shutil.which("nsenter")
        if nsenter is None:
            raise HostError("nsenter is missing: install util-linux")
        leader = self.leader_pid(instance)
        return [nsenter, f"--target={leader}", "--all", "--root", "--wd", "--", *argv]

    def log_command(self, instance: Instance, *, running: bool, lines: int,
                    follow: bool) -> list[str]:
        """A booted container's own journal is in its dataset (persistent, /var/log/journal)
        or, while it runs without one, in its /run; a command container's output is its unit's
        journal stream."""
        if instance.spec.command:
            return unit_argv(instance.unit, lines, follow=follow)
        root = self.root(instance)
        if (root / "var/log/journal").is_dir():
            return guest_argv(root, lines, follow=follow)
        if running:
            volatile = Path(f"/proc/{self.leader_pid(instance)}/root/run/log/journal")
            argv = [JOURNALCTL, "--no-pager", "-o", "short", f"--directory={volatile}",
                    "-n", str(lines)]
            return argv + (["-f"] if follow else [])
        return unit_argv(instance.unit, lines, follow=follow)


def _child_of(pid: int) -> int | None:
    """The first child of ``pid``: nspawn's child is the container's PID 1."""
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            if children:
                return int(children[0])
    except OSError:
        return None
    return None
