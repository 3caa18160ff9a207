"""The instance driver interface: what varies by kind of instance.

A kind (container, vm, lambda, ...) is one driver class plus its service set
(``service-sets/<kind>.yaml``). The driver contributes the step actions only it knows (the
set's generic steps — record, fork, lease, DNS, firewall, unit, ready — come from the manager),
says how its unit starts and stops, and how a user reaches the instance: exec, shell, logs,
console. What a kind cannot do it refuses with one line (``Unsupported``), and it declares what it
can in ``capabilities`` so clients need not ask by kind.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from homecloud.errors import UserError
from homecloud.instances.context import Stdio, StepContext
from homecloud.instances.info import instance_state
from homecloud.instances.records import Instance
from homecloud.instances.servicesets import ActionFactory
from homecloud.instances.spec import InstanceSpec
from homecloud.systemd.journal import unit_argv
from homecloud.systemd.transient import Systemd, UnitStatus, UnitSummary

if TYPE_CHECKING:
    from homecloud.frontdoor.service import FrontdoorService
    from homecloud.images.catalog import ImageCatalog
    from homecloud.network.service import NetworkService
    from homecloud.storage.base import StorageDriver

# What a driver may say it can do (InstanceInfo.capabilities, for clients).
EXEC = "exec"  # `hc exec`: a command inside the running instance
LOGIN = "login"  # `hc shell` through machined (a login session with its own terminal)
CONSOLE = "console"  # `hc console`


# The states of a unit that runs, is starting or is stopping.
BUSY_STATES = ("active", "activating", "deactivating")


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
    # The front door, for kinds that are reached through it (a lambda's route); None on an
    # agent without one.
    frontdoor: FrontdoorService | None = None


class InstanceDriver(ABC):
    kind: ClassVar[str]
    description: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()
    # Whether its instances keep files in a dataset of the pool (instances/NAME): reconcile
    # forgets the record of one whose dataset is gone.
    uses_dataset: ClassVar[bool] = True
    # Whether its instances are made from an image (spec.image names one, checked before
    # anything is made); a kind made from something else (a lambda's code) takes none.
    uses_image: ClassVar[bool] = True

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

    def update(self, instance: Instance, spec: InstanceSpec) -> None:
        """Change the recorded, finished ``instance`` to ``spec`` in place (the manager
        records the spec once this returns). Most kinds are made anew instead."""
        raise Unsupported(f"{instance.name} exists: a {self.kind} instance cannot be changed "
                          f"in place; remove it first with `hc rm -f {instance.name}`")

    # -- its state -------------------------------------------------------------------------------
    def state_unit(self, instance: Instance) -> str:
        """The unit whose state is the instance's (`hc ls`)."""
        return instance.unit

    def state(self, instance: Instance, unit: UnitSummary | UnitStatus | None) -> str:
        """The instance's state from its record and its state unit's (None: not loaded)."""
        return instance_state(instance.phase, unit, instance.spec.idle is not None)

    def busy(self, instance: Instance, unit: UnitStatus | None) -> bool:
        """Whether ``hc rm`` without -f refuses it, given its unit: it runs."""
        return (unit is not None and unit.active_state in BUSY_STATES
                and unit.sub_state != "exited")

    def forget_unit(self, instance: Instance) -> None:
        """Before a start: a failed or exited transient unit keeps its name taken."""
        self.host.systemd.discard(instance.unit)

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

    def display_socket(self, instance: Instance) -> str | None:
        """The UNIX socket of the running instance's screen (a VNC server); None: it has none."""
        return None

    def guest_agent(self, instance: Instance) -> contextlib.AbstractContextManager[Any]:
        """The running instance's guest agent (qmp.AgentCommands, each command answered
        within a timeout), for as long as the context lasts; None when it has none that
        answers. Snapshots freeze the guest's file systems through it."""
        return contextlib.nullcontext(None)

    def unsupported(self, verb: str) -> Unsupported:
        return Unsupported(f"{verb} is not supported for {self.kind} instances")
