"""What the steps of a service set share while they run for one instance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from homecloud.instances.records import Instance
from homecloud.systemd.transient import UnitStatus

if TYPE_CHECKING:
    from homecloud.network.plan import InstanceAddresses
    from homecloud.network.ports import PortMapping

Progress = Callable[[Any], None]
Stdio = tuple[int, int, int]


@dataclass
class StepContext:
    instance: Instance
    progress: Progress | None = None
    stdio: Stdio | None = None  # command mode: the client's terminal
    addresses: InstanceAddresses | None = None  # set by the lease step
    status: UnitStatus | None = None  # set by the unit step: the unit as it started

    @property
    def instance_name(self) -> str:
        return self.instance.name

    @property
    def ports(self) -> tuple[PortMapping, ...]:
        return self.instance.spec.ports

    @property
    def networked(self) -> bool:
        return self.instance.spec.networked
