"""A kind of instance that exists only for the tests: a unit that sleeps, no dataset, no network
of its own. It proves that a kind is a driver plus a service set, added by configuration
(``instances.drivers``) without any change to homecloud's instance manager."""

from __future__ import annotations

from homecloud.instances.context import Stdio
from homecloud.instances.drivers.base import InstanceDriver
from homecloud.instances.records import Instance
from homecloud.systemd.transient import TransientService, UnitStatus


class SleeperDriver(InstanceDriver):
    kind = "sleeper"
    description = "a unit that sleeps until stopped"
    uses_dataset = False

    def start_unit(self, instance: Instance, timeout: float,
                   stdio: Stdio | None = None) -> UnitStatus:
        svc = TransientService(name=instance.unit, argv=["/bin/sleep", "infinity"],
                               description=f"homecloud sleeper {instance.name}",
                               service_type="exec", slice=self.host.slice)
        return self.host.systemd.start_transient(svc, timeout=timeout)
