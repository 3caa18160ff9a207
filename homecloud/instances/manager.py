"""Instances: created by running a service set, owned by systemd, recorded in the state store.

The database says what the user asked for (a row per instance, with the spec as JSON); systemd
says what runs (``hc-NAME.service``); the pool holds the files (``instances/NAME``). Rows are
written first with phase 'creating' and marked 'ready' last, so after a crash ``reconcile``
can tell half-made instances (removed) from finished ones (adopted, restarted if asked).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from homecloud.agent.state import Store
from homecloud.dns import DNS_UNIT
from homecloud.errors import Conflict, HomecloudError, NotFound, UserError
from homecloud.images.catalog import ImageCatalog, image_dataset
from homecloud.instances import container
from homecloud.instances.network_steps import network_actions
from homecloud.instances.servicesets import SEARCH_PATH, ActionRegistry, load_service_set
from homecloud.instances.spec import HostLimits, InstanceSpec
from homecloud.instances.steps import StepEvent
from homecloud.names import validate_instance_name
from homecloud.storage.base import StorageDriver
from homecloud.systemd.bus import SystemBus
from homecloud.systemd.transient import Systemd, UnitStatus, UnitSummary, nspawn_service

if TYPE_CHECKING:
    from homecloud.network.plan import InstanceAddresses
    from homecloud.network.ports import PortMapping
    from homecloud.network.service import NetworkService

log = logging.getLogger(__name__)

INSTANCE_PREFIX = "instances"
SLICE = "hc.slice"
# The service set run when an instance with no address starts (not a kind of instance).
JOIN_NETWORK = "join-network"
UNIT_PATTERN = "hc-*.service"
# homecloud's own units that match UNIT_PATTERN (instance names are reserved for them: spec.py).
OWN_UNITS = frozenset({DNS_UNIT})
Progress = Callable[[Any], None]


# Fault injection for the crash-consistency tests (tests/system/test_cli_instances.py): with
# HC_TEST_CRASH_AFTER_STEP=<step id> in the agent's environment, the agent SIGKILLs itself as
# soon as that creation step has completed, as a crash at that point would.
CRASH_AFTER_STEP_ENV = "HC_TEST_CRASH_AFTER_STEP"


def instance_dataset(name: str) -> str:
    return f"{INSTANCE_PREFIX}/{name}"


def crash_after_step(progress: Progress | None,
                     step: str | None) -> Callable[[StepEvent], None] | None:
    """``progress``, or with ``step`` set, a progress that kills this process after ``step``."""
    if not step:
        return progress

    def report(event: StepEvent) -> None:
        if event.step == step and event.phase == "done":
            os.kill(os.getpid(), signal.SIGKILL)
        if progress is not None:
            progress(event)
    return report


@dataclass(frozen=True)
class InstanceInfo:
    name: str
    image: str
    kind: str
    state: str  # creating | starting | running | exited | stopping | stopped | failed | removing
    unit: str
    pid: int | None  # systemd-nspawn's PID (the unit's main PID)
    started: float | None  # seconds since the epoch
    uptime: float | None  # seconds
    cpus: float | None
    memory: int | None  # the limit, bytes
    command: list[str] | None
    restart: str
    created: float
    memory_used: int | None = None
    cpu_seconds: float | None = None
    exit_status: int | None = None
    ipv4: str | None = None
    ipv6: str | None = None
    ports: list[str] = field(default_factory=list)  # "8080:80/tcp"
    network: str = "default"  # default | none (loopback only)


@dataclass
class CreateContext:
    """What the container service set's steps share while creating one instance."""

    spec: InstanceSpec
    machine_id: str
    dataset: str
    root: Path
    progress: Progress | None = None
    stdio: tuple[int, int, int] | None = None  # command mode: the client's terminal
    addresses: InstanceAddresses | None = None  # set by the lease step

    @property
    def instance_name(self) -> str:
        return self.spec.name

    @property
    def ports(self) -> tuple[PortMapping, ...]:
        return self.spec.ports

    @property
    def networked(self) -> bool:
        return self.spec.networked


@dataclass
class ReconcileReport:
    removed_half_made: list[str] = field(default_factory=list)
    removed_datasets: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    unknown_units: list[str] = field(default_factory=list)
    network_leftovers: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _state(phase: str, unit: UnitSummary | UnitStatus | None) -> str:
    if phase != "ready":
        return phase
    if unit is None:
        return "stopped"
    active, sub = unit.active_state, unit.sub_state
    if active == "active":
        return "exited" if sub == "exited" else "running"
    if active == "activating":
        return "failed" if sub == "auto-restart" else "starting"
    if active == "deactivating":
        return "stopping"
    if active == "failed":
        return "failed"
    return "stopped"


class InstanceManager:
    def __init__(self, store: Store, pool: StorageDriver, images: ImageCatalog,
                 bus: SystemBus | Systemd, *, slice: str = SLICE,
                 service_sets: Sequence[Path] = SEARCH_PATH, host: HostLimits | None = None,
                 stop_timeout: float = 30.0, start_timeout: float = 90.0,
                 register: bool | None = None, network: NetworkService | None = None) -> None:
        self.store = store
        self.pool = pool
        self.images = images
        self.systemd = bus if isinstance(bus, Systemd) else Systemd(bus)
        self.slice = slice
        self.service_sets = tuple(service_sets)
        self.host = host
        self.stop_timeout = stop_timeout
        self.start_timeout = start_timeout
        self.register = container.machined_available() if register is None else register
        self.network = network
        self.actions: ActionRegistry[CreateContext] = ActionRegistry()
        for name, factory in {**self._container_actions(),
                              **network_actions(network)}.items():
            self.actions.register(name, factory)

    # -- creation ------------------------------------------------------------------------------
    def create(self, spec: InstanceSpec, progress: Progress | None = None,
               stdio: tuple[int, int, int] | None = None) -> InstanceInfo:
        """Fork, write identity, record and start ``spec``; on failure nothing is left.
        ``stdio``: descriptors a command-mode instance uses instead of the journal."""
        spec.validate(self.host)
        self.images.get(spec.image)  # NotFound with a hint, before any work
        if self._row(spec.name) is not None:
            raise Conflict(f"instance {spec.name!r} already exists; pick another --name or "
                           f"remove it with `hc rm -f {spec.name}`")
        self.check_network(spec)
        graph = self.actions.build(load_service_set(spec.kind, self.service_sets))
        dataset = instance_dataset(spec.name)
        ctx = CreateContext(spec=spec, machine_id=container.new_machine_id(), dataset=dataset,
                            root=self.pool.path(dataset), progress=progress,
                            stdio=stdio if not spec.boot else None)
        report = crash_after_step(progress, os.environ.get(CRASH_AFTER_STEP_ENV))
        graph.run(ctx, progress=report)  # raises after undoing every step that completed
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

    def _container_actions(self) -> Mapping[str, Callable[[Mapping[str, Any]], Any]]:
        manager = self

        class Record:
            def do(self, ctx: CreateContext) -> None:
                manager._insert_row(ctx)

            def undo(self, ctx: CreateContext) -> None:
                manager.store.execute("DELETE FROM instances WHERE name = ? AND phase = ?",
                                      (ctx.spec.name, "creating"))

        class Fork:
            def do(self, ctx: CreateContext) -> None:
                manager.pool.fork(image_dataset(ctx.spec.image), ctx.dataset)

            def undo(self, ctx: CreateContext) -> None:
                manager.pool.destroy(ctx.dataset)

        class Identity:
            def do(self, ctx: CreateContext) -> None:
                container.write_identity(ctx.root, ctx.spec, ctx.machine_id,
                                         manager._guest_network(ctx.addresses))

            def undo(self, ctx: CreateContext) -> None:
                """The dataset's own undo removes what was written."""

        class StartUnit:
            def __init__(self, timeout: float | None = None) -> None:
                self.timeout = float(timeout) if timeout is not None else manager.start_timeout

            def do(self, ctx: CreateContext) -> None:
                manager._start_unit(ctx.spec, ctx.root, ctx.machine_id, self.timeout,
                                    ctx.stdio)

            def undo(self, ctx: CreateContext) -> None:
                manager.systemd.discard(container.unit_name(ctx.spec.name))

        class MarkReady:
            def do(self, ctx: CreateContext) -> None:
                manager._set_phase(ctx.spec.name, "ready")

            def undo(self, ctx: CreateContext) -> None:
                manager._set_phase(ctx.spec.name, "creating")

        def plain(cls: type) -> Callable[[Mapping[str, Any]], Any]:
            def factory(params: Mapping[str, Any]) -> Any:
                return cls(**params)
            return factory

        return {"record-instance": plain(Record), "fork-dataset": plain(Fork),
                "write-identity": plain(Identity), "start-unit": plain(StartUnit),
                "mark-ready": plain(MarkReady)}

    def _insert_row(self, ctx: CreateContext) -> None:
        spec = ctx.spec
        try:
            self.store.execute(
                "INSERT INTO instances (name, image, kind, spec, created, phase, machine_id) "
                "VALUES (?, ?, ?, ?, ?, 'creating', ?)",
                (spec.name, spec.image, spec.kind, json.dumps(spec.to_json()), time.time(),
                 ctx.machine_id))
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc) or "PRIMARY" in str(exc):
                raise Conflict(f"instance {spec.name!r} already exists; pick another --name"
                               ) from exc
            raise NotFound(f"no image named {spec.image!r}; see `hc image ls`") from exc

    def _set_phase(self, name: str, phase: str) -> None:
        self.store.execute("UPDATE instances SET phase = ? WHERE name = ?", (phase, name))

    def _guest_network(self, addresses: InstanceAddresses | None
                       ) -> container.GuestNetwork | None:
        if self.network is None or addresses is None:
            return None
        plan = self.network.plan
        return container.GuestNetwork(
            addresses=(str(addresses.ipv4), str(addresses.ipv6)),
            nameservers=tuple(str(a) for a in plan.gateways), search=plan.names.origin)

    def _start_unit(self, spec: InstanceSpec, root: Path, machine_id: str,
                    timeout: float, stdio: tuple[int, int, int] | None = None) -> UnitStatus:
        from homecloud.network.guest import instance_netns_path

        # Its own namespace when it has one (made by the netns step, or again by replumb after
        # a reboot); an instance with no address (made before networking was set up) keeps the
        # private network it was created with instead of failing on a missing namespace;
        # one created with `--network none` keeps its private network whatever is there.
        netns = instance_netns_path(spec.name)
        networked = spec.networked and self.network is not None and os.path.exists(netns)
        argv = container.nspawn_argv(spec, root, machine_id, register=self.register,
                                     networked=networked)
        what = "container" if spec.boot else "command container"
        svc = nspawn_service(container.unit_name(spec.name), argv,
                             description=f"homecloud {what} {spec.name}", slice=self.slice,
                             boot=spec.boot, cpus=spec.cpus, memory_max=spec.memory,
                             timeout_stop=self.stop_timeout, restart=spec.restart,
                             stdio=stdio,
                             netns_path=netns if networked else None)
        return self.systemd.start_transient(svc, timeout=timeout, accept_exited=not spec.boot)

    # -- queries -------------------------------------------------------------------------------
    def _row(self, name: str) -> sqlite3.Row | None:
        rows = self.store.query("SELECT * FROM instances WHERE name = ?", (name,))
        return rows[0] if rows else None

    def _require(self, name: str) -> sqlite3.Row:
        validate_instance_name(name)
        row = self._row(name)
        if row is None or row["phase"] == "creating":
            raise NotFound(f"no instance named {name!r}; see `hc ls`")
        return row

    def _info(self, row: sqlite3.Row, unit: UnitSummary | UnitStatus | None,
              addresses: InstanceAddresses | None) -> InstanceInfo:
        spec = InstanceSpec.from_json(json.loads(row["spec"]))
        status = unit if isinstance(unit, UnitStatus) else None
        running = (unit is not None and unit.active_state in ("active", "deactivating")
                   and unit.sub_state != "exited")
        started = status.started if status and running else None
        return InstanceInfo(
            name=row["name"], image=row["image"], kind=row["kind"],
            state=_state(row["phase"], unit), unit=container.unit_name(row["name"]),
            pid=status.main_pid if status else None, started=started,
            uptime=time.time() - started if started else None,
            cpus=spec.cpus, memory=spec.memory, command=spec.command, restart=spec.restart,
            created=row["created"],
            memory_used=status.memory if status else None,
            cpu_seconds=status.cpu_nsec / 1e9 if status and status.cpu_nsec is not None else None,
            exit_status=status.exec_main_status if status and not running else None,
            ipv4=str(addresses.ipv4) if addresses else None,
            ipv6=str(addresses.ipv6) if addresses else None,
            ports=[str(p) for p in spec.ports], network=spec.network,
        )

    def _addresses(self) -> dict[str, InstanceAddresses]:
        """Every instance's addresses, in one read."""
        if self.network is None:
            return {}
        return {m.name: m.addresses for m in self.network.members()}

    def list(self, *, detail: bool = False) -> list[InstanceInfo]:
        """All instances with their live state: one D-Bus call for all units (``detail`` adds
        PID, start time and usage at two calls per running instance)."""
        rows = self.store.query("SELECT * FROM instances ORDER BY name")
        units = self.systemd.list_units((UNIT_PATTERN,))
        addresses = self._addresses()
        out = []
        for row in rows:
            unit: UnitSummary | UnitStatus | None = units.get(container.unit_name(row["name"]))
            if detail and unit is not None:
                unit = self.systemd.unit_status(unit.name)
            out.append(self._info(row, unit, addresses.get(row["name"])))
        return out

    def get(self, name: str) -> InstanceInfo:
        row = self._require(name)
        addresses = self.network.addresses(name) if self.network is not None else None
        return self._info(row, self.systemd.unit_status(container.unit_name(name)), addresses)

    def _spec(self, row: sqlite3.Row) -> InstanceSpec:
        return InstanceSpec.from_json(json.loads(row["spec"]))

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, name: str) -> InstanceInfo:
        row = self._require(name)
        info = self.get(name)
        if info.state in ("running", "starting"):
            return info
        unit = container.unit_name(name)
        self.systemd.discard(unit)  # a failed or exited unit keeps the name taken
        spec = self._spec(row)
        root = self.pool.path(instance_dataset(name))
        # The namespace is gone after a reboot (/run/netns is a tmpfs): made again from the
        # lease; an instance with no lease joins the network now.
        if self.network is not None and spec.networked and not self.network.replumb(name):
            self._join_network(spec, root, row["machine_id"])
        self._start_unit(spec, root, row["machine_id"], self.start_timeout)
        return self.get(name)

    def _join_network(self, spec: InstanceSpec, root: Path, machine_id: str) -> None:
        """Give an instance with no address (made before networking was set up, or leased on
        a subnet changed since) what its creation would have: service-sets/join-network.yaml,
        undone whole if a step fails."""
        graph = self.actions.build(load_service_set(JOIN_NETWORK, self.service_sets))
        graph.run(CreateContext(spec=spec, machine_id=machine_id,
                                dataset=instance_dataset(spec.name), root=root))

    def stop(self, name: str, timeout: float | None = None) -> InstanceInfo:
        """Power the guest off cleanly; after ``timeout`` seconds (default: the unit's
        TimeoutStopSec) systemd kills what is left."""
        self._require(name)
        unit = container.unit_name(name)
        self.systemd.stop_unit(unit, timeout)
        self.systemd.reset_failed(unit)
        return self.get(name)

    def restart(self, name: str, timeout: float | None = None) -> InstanceInfo:
        self.stop(name, timeout)
        return self.start(name)

    def remove(self, name: str, force: bool = False) -> None:
        row = self._require(name)
        if not force:  # forced, it goes whatever its state: no need to ask systemd
            status = self.systemd.unit_status(container.unit_name(name))
            busy = status is not None and status.active_state in (
                "active", "activating", "deactivating") and status.sub_state != "exited"
            if busy:
                raise Conflict(f"instance {name} is running; stop it first or use "
                               f"`hc rm -f {name}`")
        if row["phase"] != "removing":
            self._set_phase(name, "removing")  # a crash from here on is finished by reconcile
        self._remove_parts(name)

    def _remove_parts(self, name: str) -> None:
        self.systemd.discard(container.unit_name(name))
        if self.network is not None:
            self.network.detach(name)
        self.pool.destroy(instance_dataset(name))
        self.store.execute("DELETE FROM instances WHERE name = ?", (name,))

    def wait_finished(self, name: str) -> InstanceInfo:
        """Wait for a command-mode instance's command to end; its exit status is in the info."""
        row = self._require(name)
        status = self.systemd.wait_finished(container.unit_name(name))
        # That status is fresh: describe the instance with it rather than asking systemd again.
        addresses = self.network.addresses(name) if self.network is not None else None
        return self._info(row, status if status.load_state != "not-found" else None, addresses)

    def leader_pid(self, name: str) -> int:
        """The container's PID 1 as seen on the host (for `hc exec` / `hc shell`)."""
        info = self.get(name)
        if info.state not in ("running", "starting", "exited") or not info.pid:
            raise Conflict(f"instance {name} is not running; start it with `hc start {name}`")
        leader = _child_of(info.pid)
        if leader is None:
            raise HomecloudError(f"instance {name}: cannot find the container's init process")
        return leader

    # -- reconcile -----------------------------------------------------------------------------
    def reconcile(self) -> ReconcileReport:
        """Make the record and the system agree after an agent restart or a host reboot."""
        report = ReconcileReport()
        rows = {row["name"]: row for row in self.store.query("SELECT * FROM instances")}
        units = self.systemd.list_units((UNIT_PATTERN,))
        datasets = {d.name.split("/", 1)[1] for d in self.pool.list(INSTANCE_PREFIX)
                    if d.name.count("/") == 1}
        for name, row in sorted(rows.items()):
            try:
                self._reconcile_row(name, row, units.get(container.unit_name(name)),
                                    name in datasets, report)
            except HomecloudError as exc:
                report.errors.append(f"{name}: {exc}")
        for name in sorted(datasets - set(rows)):
            if container.unit_name(name) in units:
                continue  # never remove files from under something running
            try:
                self.pool.destroy(instance_dataset(name))
                report.removed_datasets.append(name)
            except HomecloudError as exc:
                report.errors.append(f"{name}: {exc}")
        for unit in sorted(set(units) - OWN_UNITS):
            name = unit[len("hc-"):-len(".service")]
            if name not in rows:
                report.unknown_units.append(unit)
        if self.network is not None:
            kept = {r["name"] for r in self.store.query("SELECT name FROM instances")}
            try:
                report.network_leftovers = self.network.cleanup(kept)
            except HomecloudError as exc:
                report.errors.append(f"network: {exc}")
        for what, items in vars(report).items():
            if items:
                log.info("reconcile instances: %s: %s", what.replace("_", " "), ", ".join(items))
        return report

    def _reconcile_row(self, name: str, row: sqlite3.Row, unit: UnitSummary | None,
                       has_dataset: bool, report: ReconcileReport) -> None:
        if row["phase"] in ("creating", "removing"):
            self._remove_parts(name)
            report.removed_half_made.append(name)
            return
        if not has_dataset:
            if unit is None:
                self.store.execute("DELETE FROM instances WHERE name = ?", (name,))
                report.forgotten.append(name)
            return
        running = unit is not None and unit.active_state in ("active", "activating")
        if running:
            report.adopted.append(name)
        elif self._spec(row).restart == "always":
            self.start(name)
            report.restarted.append(name)


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
