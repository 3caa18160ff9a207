"""The instances' share of the agent's start-up pass: make the record and the system agree
after an agent restart or a host reboot (DESIGN.md principle 1)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from homecloud.errors import HomecloudError
from homecloud.instances.data_volumes import remove_volumes, volume_owners
from homecloud.instances.records import INSTANCE_PREFIX, Instance, instance_dataset, unit_name
from homecloud.ownunits import OWN_UNITS
from homecloud.systemd.transient import UnitSummary

if TYPE_CHECKING:
    from homecloud.instances.manager import InstanceManager

log = logging.getLogger(__name__)
# homecloud's own units that match hc-*.service (instance names are reserved for them: spec.py).


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


def reconcile(manager: InstanceManager) -> ReconcileReport:
    from homecloud.instances.manager import UNIT_PATTERN

    report = ReconcileReport()
    instances = {i.name: i for i in manager.records.all()}
    units = manager.systemd.list_units((UNIT_PATTERN,))
    datasets = {d.name.split("/", 1)[1] for d in manager.pool.list(INSTANCE_PREFIX)
                if d.name.count("/") == 1}
    for name, instance in sorted(instances.items()):
        try:
            _reconcile_one(manager, instance, units.get(instance.unit), name in datasets,
                           report)
        except HomecloudError as exc:
            report.errors.append(f"{name}: {exc}")
    for name in sorted(datasets - set(instances)):
        if unit_name(name) in units:
            continue  # never remove files from under something running
        try:
            manager.pool.destroy(instance_dataset(name))
            report.removed_datasets.append(name)
        except HomecloudError as exc:
            report.errors.append(f"{name}: {exc}")
    # Data datasets no instance owns (an instance's own are left alone: remove_parts takes them).
    for name in sorted(volume_owners(manager.pool) - set(instances)):
        if unit_name(name) in units:
            continue
        try:
            report.removed_datasets += remove_volumes(manager.pool, name)
        except HomecloudError as exc:
            report.errors.append(f"{name}: {exc}")
    for unit in sorted(set(units) - OWN_UNITS):
        name = unit[len("hc-"):-len(".service")]
        if name not in instances:
            report.unknown_units.append(unit)
    if manager.network is not None:
        kept = {i.name for i in manager.records.all()}
        try:
            report.network_leftovers = manager.network.cleanup(kept)
        except HomecloudError as exc:
            report.errors.append(f"network: {exc}")
    for what, items in vars(report).items():
        if items:
            log.info("reconcile instances: %s: %s", what.replace("_", " "), ", ".join(items))
    return report


def _reconcile_one(manager: InstanceManager, instance: Instance, unit: UnitSummary | None,
                   has_dataset: bool, report: ReconcileReport) -> None:
    if instance.phase in ("creating", "removing"):
        manager.remove_parts(instance)
        report.removed_half_made.append(instance.name)
        return
    if not has_dataset and manager.driver(instance).uses_dataset:
        if unit is None:
            manager.records.delete(instance.name)
            report.forgotten.append(instance.name)
        return
    running = unit is not None and unit.active_state in ("active", "activating")
    if running:
        report.adopted.append(instance.name)
        if instance.spec.idle is not None:
            manager.sleepers.woke()  # watched for idleness again
    # A sleeping instance stays asleep, restart policy or not: a connection wakes it.
    elif instance.spec.restart == "always" and instance.spec.idle is None:
        manager.start(instance.name)
        report.restarted.append(instance.name)
