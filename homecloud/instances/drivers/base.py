"""The instance driver interface: what varies by kind of instance.

A kind (container, vm, lambda, ...) is one driver class plus its service set
(``service-sets/<kind>.yaml``). The driver contributes the step actions only it knows (the
set's generic steps — record, fork, lease, DNS, firewall, unit, ready — come from the manager),
says how its unit starts and stops, and how a user reaches the instance: exec, shell, logs,
console. What a kind cannot do it refuses with one line (``Unsupported``), and it declares what it
can in ``capabilities`` so clients need not ask by kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from homecloud.errors import UserError
from homecloud.instances.context import Stdio, StepContext
from homecloud.instances.records import Instance
from homecloud.instances.servicesets import ActionFactory
from homecloud.instances.spec import InstanceSpec
from homecloud.systemd.journal import unit_argv
from homecloud.systemd.transient import Systemd, UnitStatus

if TYPE_CHECKING:
    from homecloud.images.catalog import ImageCatalog
    from homecloud.network.service import NetworkService
    from homecloud.storage.base import StorageDriver

# What a driver may say it can do (InstanceInfo.capabilities, for clients).
EXEC = "exec"  # `hc exec`: a command inside the running instance
LOGIN = "login"  # `hc shell` through machined (a login session with its own terminal)
CONSOLE = "console"  # `hc console`


class Unsupported(UserError):
    """A verb the instance's kind does not have."""


@dataclass(frozen=True)
class DriverHost:
    """What the host gives every driver: its pool, images, systemd, network and settings."""

    pool: StorageDriver
    images: ImageCatalog
    systemd: Systemd
    network: NetworkService | None
    slice: str
    start_timeout: float
    stop_timeout: float
    register: bool  # register guests with systemd-machined


class InstanceDriver(ABC):
    kind: ClassVar[str]
    description: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()
    # Whether its instances keep files in a dataset of the pool (instances/NAME): reconcile
    # forgets the record of one whose dataset is gone.
    uses_dataset: ClassVar[bool] = True

    def __init__(self, host: DriverHost) -> None:
        self.host = host

    @property
    def service_set(self) -> str:
        return self.kind

    def actions(self) -> Mapping[str, ActionFactory[StepContext]]:
        """The step actions this kind adds to its service set, by name."""
        return {}

    def validate(self, spec: InstanceSpec) -> None:  # noqa: B027 (most kinds take any spec)
        """Refuse, before anything is made, what this kind cannot run."""

    @abstractmethod
    def start_unit(self, instance: Instance, timeout: float,
                   stdio: Stdio | None = None) -> UnitStatus:
        """Start the instance's unit; return when it is up (a booted guest: READY)."""

    def stop(self, instance: Instance, timeout: float | None = None) -> None:
        """Stop cleanly; after ``timeout`` (default: the unit's) systemd kills what is left."""
        self.host.systemd.stop_unit(instance.unit, timeout)
        self.host.systemd.reset_failed(instance.unit)

    def remove(self, instance: Instance) -> None:
        """Remove what the kind made (the manager takes the network and the row). Idempotent:
        reconcile calls it for half-made work."""
        self.host.systemd.discard(instance.unit)
        self.host.pool.destroy(instance.dataset)

    # -- reaching a running instance -------------------------------------------------------------
    def exec_argv(self, instance: Instance, argv: Sequence[str]) -> list[str]:
        """A host command line that runs ``argv`` inside the instance."""
        raise self.unsupported("hc exec")

    def log_command(self, instance: Instance, *, running: bool, lines: int,
                    follow: bool) -> list[str]:
        """The journalctl command line that shows the instance's log."""
        return unit_argv(instance.unit, lines, follow=follow)

    def console(self, instance: Instance) -> Any:
        raise self.unsupported("hc console")

    def unsupported(self, verb: str) -> Unsupported:
        return Unsupported(f"{verb} is not supported for {self.kind} instances")
