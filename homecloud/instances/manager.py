"""Instances: created and started by running their kind's service set, owned by systemd,
recorded in the state store.

The database says what the user asked for (records.py); systemd says what runs
(``hc-NAME.service``); the pool holds the files (``instances/NAME``). What varies by kind lives
in its driver (drivers/): this manager knows no kind by name.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from homecloud.errors import Conflict, NotFound, UserError
from homecloud.images.catalog import ImageCatalog, image_dataset
from homecloud.images.imagemeta import read_image_meta
from homecloud.instances import faults
from homecloud.instances.actions import common_actions
from homecloud.instances.context import Origin, Progress, Stdio, StepContext
from homecloud.instances.data_volumes import data_actions, remove_volumes
from homecloud.instances.drivers import DriverRegistry
from homecloud.instances.drivers.base import DriverHost, InstanceDriver
from homecloud.instances.info import InstanceInfo, describe
from homecloud.instances.network_steps import network_actions
from homecloud.instances.readiness import readiness_actions
from homecloud.instances.records import Instance, InstanceRecords
from homecloud.instances.rootfs import new_machine_id
from homecloud.instances.servicesets import SEARCH_PATH, ActionRegistry, ServiceSetLoader
from homecloud.instances.sleep import Sleepers
from homecloud.instances.spec import HostLimits, InstanceSpec
from homecloud.instances.steps import StepGraph
from homecloud.names import validate_instance_name
from homecloud.state.store import Store
from homecloud.storage.base import StorageDriver
from homecloud.systemd.bus import SystemBus
from homecloud.systemd.transient import Systemd, UnitStatus, UnitSummary

if TYPE_CHECKING:
    from homecloud.frontdoor.service import FrontdoorService
    from homecloud.instances.reconcile import ReconcileReport
    from homecloud.network.service import NetworkService

SLICE = "hc.slice"
# The service set run when an instance with no address starts (not a kind of instance).
JOIN_NETWORK = "join-network"
UNIT_PATTERN = "hc-*.service"
# A kind's state unit may be a socket (drivers/base.py state_unit): `hc ls` asks for both.
STATE_PATTERNS = (UNIT_PATTERN, "hc-*.socket")


class InstanceManager:
    def __init__(self, store: Store, pool: StorageDriver, images: ImageCatalog,
                 bus: SystemBus | Systemd, *, slice: str = SLICE,
                 service_sets: Sequence[Path] = SEARCH_PATH, host: HostLimits | None = None,
                 stop_timeout: float = 30.0, start_timeout: float = 90.0,
                 register: bool | None = None, network: NetworkService | None = None,
                 drivers: Iterable[tuple[str, str]] = (),
                 frontdoor: FrontdoorService | None = None) -> None:
        from homecloud.instances.drivers.container import machined_available

        self.store = store
        self.records = InstanceRecords(store)
        self.pool = pool
        self.images = images
        self.systemd = bus if isinstance(bus, Systemd) else Systemd(bus)
        self.service_sets = ServiceSetLoader(service_sets)
        self.host = host
        self.network = network
        self.drivers = DriverRegistry(DriverHost(
            pool=pool, images=images, systemd=self.systemd, network=network, slice=slice,
            start_timeout=start_timeout, stop_timeout=stop_timeout,
            register=machined_available() if register is None else register,
            frontdoor=frontdoor), drivers)
        self.start_timeout = start_timeout
        self.sleepers = Sleepers(self.records, self.systemd, network)
        if network is not None:
            network.sleeping = self.sleepers.sleeping

    # -- service sets ----------------------------------------------------------------------------
    def _registry(self, driver: InstanceDriver) -> ActionRegistry[StepContext]:
        registry: ActionRegistry[StepContext] = ActionRegistry()
        actions = {**common_actions(self.records, driver, self.network, self._join_network),
                   **network_actions(self.network), **data_actions(self.pool),
                   **readiness_actions(driver), **driver.actions()}
        for name, factory in actions.items():
            registry.register(name, factory)
        return registry

    def _graph(self, driver: InstanceDriver, set_name: str, *,
               start: bool = False) -> StepGraph[StepContext]:
        sset = self.service_sets.load(set_name)
        if start:
            if not sset.start:
                raise UserError(f"{sset.source} has no 'start' steps, so its instances "
                                "cannot be started again")
            sset = sset.starting()
        return self._registry(driver).build(sset)

    def _set_name(self, driver: InstanceDriver, spec: InstanceSpec) -> str:
        """The service set an instance is made by: for a booted one, the set its image's
        metadata names (images/imagemeta.py), if any; else its kind's. A command run in the
        image (`hc run IMAGE -- CMD`) starts none of the image's services."""
        if spec.boot and driver.uses_image:
            meta = read_image_meta(self.pool.path(image_dataset(spec.image)))
            if meta.service_set:
                return meta.service_set
        return driver.service_set

    def _join_network(self, ctx: StepContext) -> None:
        """Give an instance with no address (made before networking was set up, or leased on
        a subnet changed since) what its creation would have: service-sets/join-network.yaml,
        undone whole if a step fails."""
        driver = self.drivers.get(ctx.instance.kind)
        self._graph(driver, JOIN_NETWORK).run(StepContext(instance=ctx.instance))

    # -- creation --------------------------------------------------------------------------------
    def validate(self, spec: InstanceSpec) -> InstanceDriver:
        """Refuse a spec before anything is made; return its kind's driver."""
        kinds = self.drivers.kinds()
        # An unknown kind: spec.validate says so, in one line.
        uses_image = spec.kind not in kinds or self.drivers.get(spec.kind).uses_image
        spec.validate(self.host, kinds=kinds, uses_image=uses_image)
        driver = self.drivers.get(spec.kind)
        driver.validate(spec)
        self.check_network(spec)
        return driver

    def create(self, spec: InstanceSpec, progress: Progress | None = None,
               stdio: Stdio | None = None, origin: Origin | None = None) -> InstanceInfo:
        """Run ``spec``'s service set; on failure every step that ran is undone.
        ``stdio``: descriptors a command-mode instance uses instead of the journal;
        ``origin``: the snapshot a clone's datasets are forked from."""
        driver = self.validate(spec)
        if driver.uses_image:
            self.images.get(spec.image)  # NotFound with a hint, before any work
        if self.records.get(spec.name) is not None:
            raise Conflict(f"instance {spec.name!r} already exists; pick another --name or "
                           f"remove it with `hc rm -f {spec.name}`")
        graph = self._graph(driver, self._set_name(driver, spec))
        ctx = StepContext(instance=Instance(spec=spec, machine_id=new_machine_id(),
                                            created=time.time()),
                          progress=progress, stdio=stdio, origin=origin)
        graph.run(ctx, progress=faults.from_environment(progress))  # undone on failure
        if spec.idle is not None:
            self.sleepers.woke()
        # The unit's status as it started is fresh enough: no second round of questions.
        finished = replace(ctx.instance, phase="ready")
        return describe(finished, ctx.status, ctx.addresses,
                        self._capabilities(spec.kind), driver.state(finished, ctx.status))

    def update(self, spec: InstanceSpec) -> InstanceInfo:
        """Change the finished instance ``spec.name`` to ``spec`` in place, if its kind can
        (a lambda deployed again); its driver undoes its own work if it fails."""
        instance = self.instance(spec.name)
        if instance.kind != spec.kind:
            raise Conflict(f"{spec.name!r} is a {instance.kind} instance, not a {spec.kind}; "
                           "pick another name")
        driver = self.validate(spec)
        driver.update(instance, spec)
        self.records.set_spec(spec)
        return self.get(spec.name)

    def check_network(self, spec: InstanceSpec) -> None:
        """Refuse, before anything is made, a spec the network cannot take: the network is
        not set up (its one-line reason), or a host port is taken or given twice. An instance
        with `--network none` needs nothing of it (its -p is refused by validate)."""
        if not spec.networked:
            return
        if self.network is not None:
            self.network.check_ports(spec.name, spec.ports)
        elif spec.ports:
            raise UserError("-p needs networking, and this agent runs without it")

    # -- queries ---------------------------------------------------------------------------------
    def instance(self, name: str) -> Instance:
        """The finished instance ``name``; NotFound otherwise."""
        validate_instance_name(name)
        instance = self.records.get(name)
        if instance is None or instance.phase == "creating":
            raise NotFound(f"no instance named {name!r}; see `hc ls`")
        return instance

    def driver(self, instance: Instance) -> InstanceDriver:
        return self.drivers.get(instance.kind)

    def _describe(self, instance: Instance, unit: UnitSummary | UnitStatus | None
                  ) -> InstanceInfo:
        addresses = self.network.addresses(instance.name) if self.network is not None else None
        return describe(instance, unit, addresses, self._capabilities(instance.kind),
                        self._state(instance, unit))

    def _state(self, instance: Instance, unit: UnitSummary | UnitStatus | None,
               units: dict[str, UnitSummary] | None = None) -> str | None:
        """Its state as its driver reads it, from its state unit (found in ``units`` when
        listed at once, else asked for); None (read from ``unit``) for a kind this host no
        longer has."""
        try:
            driver = self.drivers.get(instance.kind)
        except UserError:
            return None
        state_unit = driver.state_unit(instance)
        if state_unit != instance.unit:
            unit = (units.get(state_unit) if units is not None
                    else self.systemd.unit_status(state_unit))
        return driver.state(instance, unit)

    def _capabilities(self, kind: str) -> frozenset[str]:
        try:
            return self.drivers.get(kind).capabilities
        except UserError:  # a kind this host no longer has: listed, but it can do nothing
            return frozenset()

    def list(self, *, detail: bool = False) -> list[InstanceInfo]:
        """All instances with their live state: one D-Bus call for all units (``detail`` adds
        PID, start time and usage at two calls per running instance)."""
        units = self.systemd.list_units(STATE_PATTERNS)
        addresses = ({m.name: m.addresses for m in self.network.members()}
                     if self.network is not None else {})
        out = []
        for instance in self.records.all():
            unit: UnitSummary | UnitStatus | None = units.get(instance.unit)
            if detail and unit is not None:
                unit = self.systemd.unit_status(unit.name)
            state = self._state(instance, unit, units)
            out.append(describe(instance, unit, addresses.get(instance.name),
                                self._capabilities(instance.kind), state))
        return out

    def get(self, name: str) -> InstanceInfo:
        instance = self.instance(name)
        return self._describe(instance, self.systemd.unit_status(instance.unit))

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, name: str) -> InstanceInfo:
        instance = self.instance(name)
        status = self.systemd.unit_status(instance.unit)
        if describe(instance, status, None).state in ("running", "starting"):
            return self._describe(instance, status)
        driver = self.driver(instance)
        driver.forget_unit(instance)
        self._graph(driver, self._set_name(driver, instance.spec),
                    start=True).run(StepContext(instance=instance))
        if instance.spec.idle is not None:
            self.sleepers.woke()
        return self.get(name)

    def stop(self, name: str, timeout: float | None = None) -> InstanceInfo:
        """Power the guest off cleanly; after ``timeout`` seconds (default: the unit's
        TimeoutStopSec) systemd kills what is left."""
        instance = self.instance(name)
        if instance.spec.idle is None:
            self.driver(instance).stop(instance, timeout)
        else:  # it sleeps: a connection wakes it again
            with self.sleepers.falling_asleep(name):
                self.driver(instance).stop(instance, timeout)
        return self.get(name)

    def restart(self, name: str, timeout: float | None = None) -> InstanceInfo:
        self.stop(name, timeout)
        return self.start(name)

    def remove(self, name: str, force: bool = False) -> None:
        instance = self.instance(name)
        # Forced, it goes whatever its state: no need to ask systemd.
        if not force and self.driver(instance).busy(instance,
                                                    self.systemd.unit_status(instance.unit)):
            raise Conflict(f"instance {name} is running; stop it first or use "
                           f"`hc rm -f {name}`")
        if instance.phase != "removing":
            self.records.set_phase(name, "removing")  # a crash from here is finished by reconcile
        self.remove_parts(instance)

    def remove_parts(self, instance: Instance) -> None:
        """Everything an instance has, whatever its phase; the row last."""
        self.driver(instance).remove(instance)
        remove_volumes(self.pool, instance.name)  # its data datasets (data_volumes.py)
        if self.network is not None:
            self.network.detach(instance.name)
        self.records.delete(instance.name)

    def wait_finished(self, name: str) -> InstanceInfo:
        """Wait for a command-mode instance's command to end; its exit status is in the info."""
        instance = self.instance(name)
        status = self.systemd.wait_finished(instance.unit)
        # That status is fresh: describe the instance with it rather than asking systemd again.
        return self._describe(instance, status if status.load_state != "not-found" else None)

    # -- reaching a running instance -------------------------------------------------------------
    def exec_argv(self, name: str, argv: Sequence[str]) -> builtins.list[str]:
        instance = self.instance(name)
        return self.driver(instance).exec_argv(instance, argv)

    def log_command(self, name: str, *, lines: int, follow: bool) -> builtins.list[str]:
        instance = self.instance(name)
        running = self.get(name).state == "running"
        return self.driver(instance).log_command(instance, running=running, lines=lines,
                                                 follow=follow)

    # -- after a restart -------------------------------------------------------------------------
    def reconcile(self) -> ReconcileReport:
        from homecloud.instances.reconcile import reconcile

        return reconcile(self)
