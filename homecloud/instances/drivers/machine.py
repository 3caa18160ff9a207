"""The bare-metal machine driver: a machine of its own, booted from the network.

A machine has no dataset and no unit: its service set records it, leases its address (which
full-DHCP network boot hands to its MAC), publishes its name and readies its network boot
(`machine-boot`: the machines row the provisioning server answers from, dnsmasq told of its MAC).
Its "start" is being switched on; the installer reports to hc-provision.
"""

from __future__ import annotations

from collections.abc import Mapping

from homecloud.errors import UserError
from homecloud.instances.context import Stdio, StepContext
from homecloud.instances.drivers.base import InstanceDriver
from homecloud.instances.records import Instance
from homecloud.instances.servicesets import ActionFactory, plain_action
from homecloud.instances.spec import InstanceSpec
from homecloud.machines import DHCP_UNIT
from homecloud.machines.records import MachineRecords
from homecloud.systemd.journal import unit_argv
from homecloud.systemd.transient import UnitStatus


class MachineDriver(InstanceDriver):
    kind = "machine"
    description = "a bare-metal machine, installed (or run diskless) over the network"
    uses_dataset = False

    @property
    def records(self) -> MachineRecords:
        return MachineRecords(self.host.images.store)

    def validate(self, spec: InstanceSpec) -> None:
        given = [option for option in spec.vm_options() if option != "--ssh-key"]
        if spec.command or spec.ports or spec.binds or spec.env or spec.idle is not None:
            given.append("a command, -p, --bind, --env or --idle")
        if given:
            raise UserError(f"a bare-metal machine takes none of {', '.join(given)}")

    def actions(self) -> Mapping[str, ActionFactory[StepContext]]:
        driver = self

        class MachineBoot:
            def do(self, ctx: StepContext) -> None:
                network = driver.host.network
                if network is not None and ctx.addresses is not None:
                    plan = network.plan
                    driver.records.set_network(ctx.instance_name, {
                        "address4": str(ctx.addresses.ipv4),
                        "prefix4": plan.subnet4.prefixlen,
                        "gateway4": str(plan.gateway4),
                        "dns": [str(plan.gateway4)],
                        "domain": plan.names.origin,
                        "fqdn": f"{ctx.instance_name}.{plan.names.origin}"})
                driver.refresh_dhcp()

            def undo(self, ctx: StepContext) -> None:
                driver.records.set_network(ctx.instance_name, {})
                driver.refresh_dhcp()

        return {"machine-boot": plain_action(MachineBoot)}

    def refresh_dhcp(self) -> None:
        """dnsmasq reads its machines at start: restart it if it runs."""
        systemd = self.host.systemd
        status = systemd.unit_status(DHCP_UNIT)
        if status is not None and status.active_state in ("active", "activating"):
            systemd.stop_unit(DHCP_UNIT)
            systemd.start_unit(DHCP_UNIT)

    def start_unit(self, instance: Instance, timeout: float,
                   stdio: Stdio | None = None) -> UnitStatus:
        raise self.unsupported("hc start (switch the machine on: it boots from the network)")

    def stop(self, instance: Instance, timeout: float | None = None) -> None:
        raise self.unsupported("hc stop (power the machine off at the machine)")

    def remove(self, instance: Instance) -> None:
        self.records.delete(instance.name)
        self.refresh_dhcp()

    def log_command(self, instance: Instance, *, running: bool, lines: int,
                    follow: bool) -> list[str]:
        """hc-provision's log: the machine's boots and its installer's requests."""
        return unit_argv("hc-provision.service", lines, follow=follow)
