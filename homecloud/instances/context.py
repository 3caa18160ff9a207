"""What the steps of a service set share while they run for one instance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from homecloud.instances.records import Instance
from homecloud.instances.spec import Bind
from homecloud.systemd.transient import UnitStatus

if TYPE_CHECKING:
    from homecloud.network.plan import InstanceAddresses
    from homecloud.network.ports import PortMapping

Progress = Callable[[Any], None]
Stdio = tuple[int, int, int]


@dataclass(frozen=True)
class Origin:
    """A snapshot an instance is cloned from: its datasets are forked from these instead of
    from the image."""

    forks: tuple[tuple[str, str, str], ...]  # (source dataset, snapshot, new dataset)

    def source_of(self, dataset: str) -> tuple[str, str] | None:
        """The (dataset, snapshot) that the clone's ``dataset`` is forked from, if any: the
        step that makes ``dataset`` forks it from there instead of making it empty."""
        for source, snapshot, target in self.forks:
            if target == dataset:
                return source, snapshot
        return None


@dataclass
class StepContext:
    instance: Instance
    progress: Progress | None = None
    stdio: Stdio | None = None  # command mode: the client's terminal
    addresses: InstanceAddresses | None = None  # set by the lease step
    status: UnitStatus | None = None  # set by the unit step: the unit as it started
    # Mounts the set's steps add (data datasets): made again on every start, never recorded.
    mounts: list[Bind] = field(default_factory=list)
    origin: Origin | None = None  # a clone's snapshot (`hc snapshot clone`)

    def instance_to_start(self) -> Instance:
        """The instance with the steps' mounts after the binds the user gave."""
        if not self.mounts:
            return self.instance
        spec = self.instance.spec
        return replace(self.instance, spec=replace(spec, binds=[*spec.binds, *self.mounts]))

    @property
    def instance_name(self) -> str:
        return self.instance.name

    @property
    def ports(self) -> tuple[PortMapping, ...]:
        return self.instance.spec.ports

    @property
    def networked(self) -> bool:
        return self.instance.spec.networked
