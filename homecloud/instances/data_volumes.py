"""Instance data datasets: a dataset of the pool of its own (``volumes/<instance>/<name>``)
mounted into an instance at a path, so data that must outlive the guest's tree (a database's
data directory, WAL included) is snapshotted, sent and removed as one piece with its instance
and apart from the image it was forked from.

A service set asks for one with a step::

    - id: data
      action: data-dataset
      after: [record]
      with: {name: data, path: /var/lib/postgresql}

Creating, the step makes the empty dataset, or for a clone (``hc snapshot clone``) forks it
from the snapshot's; its undo removes it; one already there is refused, never adopted. In a
set's ``start`` steps (``with: {..., create: false}``) it only checks that the dataset is
there: an instance whose data went missing fails to start, it never boots again on an empty
directory. Either way the mount is handed to the unit's start (``StepContext.mounts``).
The instance's files are root's on disk; inside the container the mount is id-mapped
(nspawn ``--bind=...:idmap``), as its root tree is, so the guest's root owns the dataset's top
directory and chowns within it are stable across restarts whatever user range nspawn picks.

``hc rm`` removes every data dataset of the instance (``remove_volumes``); the reconcile pass
leaves those of an existing instance alone and removes the ones no instance owns.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from homecloud.errors import Conflict, NotFound, UserError
from homecloud.instances.context import StepContext
from homecloud.instances.servicesets import ActionFactory
from homecloud.instances.spec import Bind
from homecloud.names import validate_name

if TYPE_CHECKING:
    from homecloud.storage.base import StorageDriver

VOLUME_PREFIX = "volumes"
_FORBIDDEN = ":,\n\0"  # nspawn's --bind separators, and what no path should hold


def volume_group(instance: str) -> str:
    """The group holding an instance's data datasets."""
    return f"{VOLUME_PREFIX}/{instance}"


def volume_dataset(instance: str, name: str) -> str:
    return f"{volume_group(instance)}/{name}"


def check_mount_path(path: str, source: str = "data-dataset") -> str:
    """An absolute, normal path inside the instance, or ValueError naming what is wrong."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"path {path!r} must be an absolute path in the instance")
    parts = PurePosixPath(path).parts
    if any(part in (".", "..") for part in path.split("/")) or len(parts) < 2:
        raise ValueError(f"path {path!r} must name a directory below / without '.' or '..'")
    if any(ch in path for ch in _FORBIDDEN):
        raise ValueError(f"path {path!r} must not contain ':' ',' or newlines")
    return str(PurePosixPath(path))


def overlaps(a: str, b: str) -> bool:
    """Whether one of two absolute paths is the other or lies below it."""
    pa, pb = PurePosixPath(a), PurePosixPath(b)
    return pa == pb or pa in pb.parents or pb in pa.parents


def check_clash(path: str, name: str, binds: Iterable[Bind]) -> None:
    """Refuse a data path that a bind already given (``--bind``, or another data dataset of
    the set) covers, or lies inside: one mount would hide the other."""
    for bind in binds:
        if overlaps(path, bind.target):
            raise UserError(f"--bind target {bind.target} clashes with the data dataset "
                            f"{name!r} mounted at {path}: bind somewhere outside {path}")


class DataDataset:
    """The ``data-dataset`` step action (see the module notes)."""

    def __init__(self, pool: StorageDriver, name: str, path: str, create: bool = True) -> None:
        self.pool = pool
        self.name = validate_name(str(name), "data dataset name")
        self.path = check_mount_path(path)
        self.create = bool(create)
        self.made = False  # this run made the dataset: only then may undo remove it

    def do(self, ctx: StepContext) -> None:
        instance = ctx.instance_name
        dataset = volume_dataset(instance, self.name)
        check_clash(self.path, self.name, [*ctx.instance.spec.binds, *ctx.mounts])
        if self.create:
            if self.pool.exists(dataset):
                raise Conflict(f"data dataset {dataset} already exists, and no instance "
                               f"{instance!r} owns it; remove it or pick another --name")
            # A clone's data dataset is forked from its source's snapshot.
            source = ctx.origin.source_of(dataset) if ctx.origin else None
            if source is None:
                made = self.pool.create(dataset)
                # The top directory is the guest's to own (see the module notes).
                os.chmod(made.path, 0o700)
            else:
                self.pool.fork(source[0], dataset, snapshot=source[1])
            self.made = True
        elif not self.pool.exists(dataset):
            raise NotFound(f"instance {instance}: its data dataset {dataset} is missing, so "
                           "it is not started on an empty one; restore it from a snapshot, "
                           f"or remove the instance with `hc rm {instance}`")
        ctx.mounts.append(Bind(str(self.pool.path(dataset)), self.path, idmap=True))

    def undo(self, ctx: StepContext) -> None:
        if self.made:
            self.pool.destroy(volume_dataset(ctx.instance_name, self.name))
            _remove_empty_group(self.pool, ctx.instance_name)
            self.made = False


def data_actions(pool: StorageDriver) -> Mapping[str, ActionFactory[StepContext]]:
    def factory(params: Mapping[str, object]) -> DataDataset:
        return DataDataset(pool, **params)  # type: ignore[arg-type]
    return {"data-dataset": factory}


def remove_volumes(pool: StorageDriver, instance: str) -> list[str]:
    """Destroy every data dataset of ``instance`` (with their snapshots); the names removed.
    Idempotent: reconcile calls it for half-made and orphaned work."""
    group = volume_group(instance)
    removed = []
    for dataset in pool.list(group):
        if dataset.name.startswith(group + "/"):
            pool.destroy(dataset.name)
            removed.append(dataset.name)
    _remove_empty_group(pool, instance)
    return removed


def volume_owners(pool: StorageDriver) -> set[str]:
    """The instance names that have data datasets in the pool."""
    return {d.name.split("/")[1] for d in pool.list(VOLUME_PREFIX) if d.name.count("/") == 2}


def _remove_empty_group(pool: StorageDriver, instance: str) -> None:
    # A group is a plain directory: it goes with its last dataset.
    with contextlib.suppress(OSError, UserError, NotFound):
        pool.path(volume_group(instance)).rmdir()
