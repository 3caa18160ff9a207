"""Snapshots of instances: everything an instance owns, at one instant.

An instance owns its dataset (``instances/NAME``: a container's files, or a VM's disk and
description) and any datasets under ``volumes/NAME/``. A snapshot ``NAME@SNAP`` is a read-only
snapshot named SNAP of each of them, made while the instance's processes are frozen.

The pool is the record: nothing about snapshots is kept in the state database, so there is
nothing to disagree after a crash. The instance's own dataset is snapshotted last and removed
first, so it is the commit point: a snapshot exists when the instance dataset has it, and
snapshots of volumes without that partner are leftovers of an interrupted operation, removed
by ``reconcile``.
"""

from __future__ import annotations

import builtins
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from homecloud.errors import Conflict, NotFound
from homecloud.images.catalog import image_dataset
from homecloud.images.vmimage import read_vm_image
from homecloud.instances.context import Origin, Progress
from homecloud.instances.info import InstanceInfo
from homecloud.instances.manager import InstanceManager
from homecloud.instances.records import Instance, instance_dataset
from homecloud.instances.spec import InstanceSpec
from homecloud.names import validate_instance_name
from homecloud.snapshots.freezer import CGROUP_FREEZE, FSFREEZE, NOTHING, frozen, guest_frozen
from homecloud.snapshots.naming import SnapshotRef, stamped_name, validate_snapshot_name
from homecloud.snapshots.records import SnapshotRecords
from homecloud.storage.base import Snapshot, StorageDriver

log = logging.getLogger(__name__)

VOLUMES_PREFIX = "volumes"
RUNNING_STATES = ("running", "starting")


def volumes_group(instance: str) -> str:
    return f"{VOLUMES_PREFIX}/{instance}"


@dataclass(frozen=True)
class SnapshotInfo:
    instance: str
    name: str
    created: float  # seconds since the epoch
    created_utc: str  # the same instant, ISO 8601 in UTC
    held: int | None  # bytes only this snapshot keeps; None where the driver cannot tell cheaply
    datasets: list[str]  # what it covers
    frozen: bool | None = None  # at creation: whether the instance's processes were paused
    # How it was made consistent: "fsfreeze" (the VM guest's file systems were frozen through
    # its agent), "cgroup freeze" (the processes were paused), "none" (nothing ran); None:
    # not known (made before homecloud noted it, or received from another host).
    consistency: str | None = None
    kept_by: str | None = None  # the retention rule that keeps it (policy snapshots)
    replicated_to: list[str] = field(default_factory=list)


def _utc(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds").replace("+00:00",
                                                                                   "Z")


class SnapshotService:
    def __init__(self, pool: StorageDriver, instances: InstanceManager,
                 records: SnapshotRecords | None = None) -> None:
        self.pool = pool
        self.instances = instances
        self.records = records  # where how each snapshot was made consistent is noted

    # -- what an instance owns --------------------------------------------------------------
    def volumes(self, instance: str) -> list[str]:
        group = volumes_group(instance)
        return [d.name for d in self.pool.list(group) if d.name != group]

    def datasets(self, instance: str) -> list[str]:
        """The instance's datasets in snapshot order: volumes first, its own dataset last."""
        return [*self.volumes(instance), instance_dataset(instance)]

    def _snapshots(self, instance: Instance) -> dict[str, Snapshot]:
        return {s.name: s for s in self.pool.snapshots(instance.dataset)}

    def _info(self, instance: str, snap: Snapshot, *, frozen: bool | None = None,
              consistency: str | None = None) -> SnapshotInfo:
        covered = [d for d in self.volumes(instance)
                   if any(s.name == snap.name for s in self.pool.snapshots(d))]
        return SnapshotInfo(instance=instance, name=snap.name, created=snap.created,
                            created_utc=_utc(snap.created), held=None,
                            datasets=[*covered, instance_dataset(instance)], frozen=frozen,
                            consistency=consistency)

    def _require(self, ref: SnapshotRef) -> tuple[Instance, Snapshot]:
        instance = self.instances.instance(ref.instance)
        snap = self._snapshots(instance).get(ref.snapshot)
        if snap is None:
            owners = [other.name for other in self.instances.records.all()
                      if other.name != instance.name and self.pool.exists(other.dataset)
                      and any(s.name == ref.snapshot
                              for s in self.pool.snapshots(other.dataset))]
            hint = (f"; {owners[0]}@{ref.snapshot} is a snapshot of another instance, and "
                    "an instance can only be rolled back to its own snapshots (clone that one "
                    f"with `hc snapshot clone {owners[0]}@{ref.snapshot} --name NEW`)"
                    if owners else f"; see `hc snapshot ls {ref.instance}`")
            raise NotFound(f"instance {ref.instance} has no snapshot {ref.snapshot!r}{hint}")
        return instance, snap

    # -- operations ---------------------------------------------------------------------------
    def create(self, name: str, snapshot: str | None = None, *, prefix: str = ""
               ) -> SnapshotInfo:
        """Snapshot ``name``; without a ``snapshot`` name, ``prefix`` + the time in UTC."""
        instance = self.instances.instance(name)
        taken = self._snapshots(instance)
        if snapshot is None:
            snapshot = self._free_name(stamped_name(time.time(), prefix), taken)
        validate_snapshot_name(snapshot)
        if snapshot in taken:
            raise Conflict(f"snapshot {name}@{snapshot} already exists; pick another --name "
                           f"or remove it with `hc snapshot rm {name}@{snapshot}`")
        # Two small property reads, not the unit's whole status: this is the hot path.
        pid = self.instances.systemd.main_pid(instance.unit)
        made: list[str] = []
        # A guest agent only where the unit runs (a stopped VM's disk is at rest).
        agent = (self.instances.driver(instance).guest_agent(instance) if pid
                 else nullcontext(None))
        try:
            with agent as channel, guest_frozen(channel, name) as files_frozen, \
                    frozen(pid, instance.unit) as was_frozen:
                for dataset in self.datasets(name):
                    self.pool.snapshot(dataset, snapshot)
                    made.append(dataset)
        except BaseException:
            for dataset in reversed(made):
                self.pool.destroy_snapshot(dataset, snapshot)
            raise
        how = FSFREEZE if files_frozen else CGROUP_FREEZE if was_frozen else NOTHING
        if self.records is not None:
            self.records.made(name, snapshot, how)
        snap = self._snapshots(instance)[snapshot]
        return self._info(name, snap, frozen=was_frozen, consistency=how)

    @staticmethod
    def _free_name(base: str, taken: dict[str, Snapshot]) -> str:
        """``base``, or ``base-2``, ``base-3``... when snapshots come within one second."""
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            candidate = f"{base}-{n}"
        return candidate

    def list(self, name: str | None = None) -> builtins.list[SnapshotInfo]:
        if name is not None:
            instances = [self.instances.instance(name)]
        else:
            instances = [i for i in self.instances.records.all() if i.phase == "ready"]
        out: list[SnapshotInfo] = []
        for instance in instances:
            if not self.pool.exists(instance.dataset):
                continue
            noted = self.records.consistency(instance.name) if self.records else {}
            out.extend(self._info(instance.name, snap, consistency=noted.get(snap.name))
                       for snap in self.pool.snapshots(instance.dataset))
        return out

    def rollback(self, ref: SnapshotRef) -> InstanceInfo:
        """Stop the instance, make each of its datasets what the snapshot holds, start it again
        if it was running. Every snapshot, newer ones included, is kept."""
        instance, _ = self._require(ref)
        running = self.instances.get(instance.name).state in RUNNING_STATES
        if running:
            self.instances.stop(instance.name)
        # The instance dataset last, as for creation: a crash part-way leaves the instance
        # stopped, and the same command finishes the work.
        for dataset in self.datasets(instance.name):
            if any(s.name == ref.snapshot for s in self.pool.snapshots(dataset)):
                self.pool.rollback(dataset, ref.snapshot)
        if running:
            return self.instances.start(instance.name)
        return self.instances.get(instance.name)

    def remove(self, ref: SnapshotRef) -> None:
        instance, _ = self._require(ref)
        # The commit point first: from here on the snapshot no longer exists.
        self.pool.destroy_snapshot(instance.dataset, ref.snapshot)
        for dataset in self.volumes(instance.name):
            self.pool.destroy_snapshot(dataset, ref.snapshot)
        if self.records is not None:
            self.records.forget_made(instance.name, ref.snapshot)

    def clone_spec(self, ref: SnapshotRef, new_name: str) -> tuple[Instance, Origin]:
        """What a clone of ``ref`` named ``new_name`` is made of; checked before any work."""
        validate_instance_name(new_name)
        instance, _ = self._require(ref)
        if self.instances.records.get(new_name) is not None:
            raise Conflict(f"instance {new_name!r} already exists; pick another --name")
        # Host ports belong to the source: a clone publishes none until asked.
        spec = replace(instance.spec, name=new_name, ports=())
        forks = [(dataset, ref.snapshot,
                  f"{volumes_group(new_name)}/{dataset.rsplit('/', 1)[-1]}")
                 for dataset in self.volumes(ref.instance)
                 if any(s.name == ref.snapshot for s in self.pool.snapshots(dataset))]
        forks.append((instance.dataset, ref.snapshot, instance_dataset(new_name)))
        return replace(instance, spec=spec), Origin(forks=tuple(forks))

    def clone(self, ref: SnapshotRef, new_name: str,
              progress: Progress | None = None) -> InstanceInfo:
        """A new instance whose datasets are forks of the snapshot's: made through the same
        steps as `hc run` (identity, address, name, unit), undone whole if one fails."""
        source, origin = self.clone_spec(ref, new_name)
        return self.instances.create(source.spec, progress=progress, origin=origin)

    def replica_clone_spec(self, sender: str, ref: SnapshotRef, new_name: str, image: str
                           ) -> tuple[InstanceSpec, Origin]:
        """A clone of a snapshot received from host ``sender`` (``hc snapshot send`` there):
        its datasets are forked from ``replicas/SENDER/...``. A replica carries files, not
        the instance's settings: ``image`` (which must be here) says which service set makes
        it and what kind it is; it starts with the set's defaults."""
        from homecloud.snapshots.replication import replica_dataset

        validate_instance_name(new_name)
        if self.instances.records.get(new_name) is not None:
            raise Conflict(f"instance {new_name!r} already exists; pick another --name")
        own = instance_dataset(ref.instance)
        dataset = replica_dataset(sender, own)
        held = ({s.name for s in self.pool.snapshots(dataset)}
                if self.pool.exists(dataset) else set())
        if ref.snapshot not in held:
            raise NotFound(f"no snapshot {ref} was received from host {sender!r}; see "
                           f"`hc snapshot ls --replicas`")
        prefix = dataset[:-len(own)]  # replicas/SENDER/
        group = prefix + volumes_group(ref.instance)
        forks = [(volume.name, ref.snapshot,
                  f"{volumes_group(new_name)}/{volume.name.rsplit('/', 1)[-1]}")
                 for volume in self.pool.list(group) if volume.name != group
                 and any(s.name == ref.snapshot for s in self.pool.snapshots(volume.name))]
        forks.append((dataset, ref.snapshot, instance_dataset(new_name)))
        kind = "vm" if read_vm_image(self.pool.path(image_dataset(image))) else "container"
        return (InstanceSpec(name=new_name, image=image, kind=kind),
                Origin(forks=tuple(forks)))

    def clone_replica(self, sender: str, ref: SnapshotRef, new_name: str, image: str,
                      progress: Progress | None = None) -> InstanceInfo:
        spec, origin = self.replica_clone_spec(sender, ref, new_name, image)
        return self.instances.create(spec, progress=progress, origin=origin)

    def replicas(self) -> builtins.list[dict[str, object]]:
        """The snapshots received from other hosts: sender, instance, snapshot, time."""
        from homecloud.snapshots.replication import REPLICAS

        out: builtins.list[dict[str, object]] = []
        for dataset in self.pool.list(REPLICAS):
            parts = dataset.name.split("/")
            if len(parts) != 4 or parts[2] != "instances":
                continue
            out.extend({"sender": parts[1], "instance": parts[3], "snapshot": snap.name,
                        "created_utc": _utc(snap.created)}
                       for snap in self.pool.snapshots(dataset.name))
        return out

    # -- after a crash --------------------------------------------------------------------------
    def reconcile(self) -> builtins.list[str]:
        """Remove volume snapshots whose instance dataset lacks them (an interrupted create or
        remove); return them as ``dataset@snapshot``."""
        removed: list[str] = []
        for instance in self.instances.records.all():
            if not self.pool.exists(instance.dataset):
                continue
            committed = set(self._snapshots(instance))
            for dataset in self.volumes(instance.name):
                for snap in self.pool.snapshots(dataset):
                    if snap.name not in committed:
                        self.pool.destroy_snapshot(dataset, snap.name)
                        removed.append(f"{dataset}@{snap.name}")
        if removed:
            log.info("reconcile: removed half-made snapshots: %s", ", ".join(removed))
        return removed

