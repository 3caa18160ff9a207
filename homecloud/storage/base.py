"""The storage driver interface.

A pool holds *datasets*: directory trees addressed by slash-separated names such as
``images/debian`` or ``instances/web``. Datasets can be forked (a copy-on-write clone), made
read-only, snapshotted, rolled back, sent as a stream and received from one. The names follow
ZFS's shape (``pool/dataset@snapshot``) so a ZFS driver maps onto them directly; other drivers
lay them out as directories under the pool root.

A dataset may hold a *block volume*: a VM's disk, sparse, sized and grown on request. It is
forked, snapshotted and sent with its dataset. Where it lives is the driver's business (a raw
file inside the dataset, or a zvol); ``volume_path`` says what a hypervisor opens.

Each driver declares its ``capabilities``; callers ask those, never the driver's name.

Drivers are synchronous and thread-safe for operations on different datasets; the agent
serialises operations on the same dataset.
"""

from __future__ import annotations

import builtins
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from pathlib import Path
from typing import BinaryIO, ClassVar

from homecloud.errors import UserError

# Components of dataset names. The agent validates user-facing names (homecloud.names) first;
# this check guards the drivers themselves against paths escaping the pool. A leading '.' is
# allowed for internal datasets (".partial-debian" while an image is being built).
_COMPONENT_RE = re.compile(r"[A-Za-z0-9._-][A-Za-z0-9._-]{0,127}")


def check_dataset_name(name: str) -> list[str]:
    """Split a dataset name into components, refusing anything that could leave the pool."""
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", "..") or not _COMPONENT_RE.fullmatch(part):
            raise UserError(f"invalid dataset name {name!r}")
    return parts


@dataclass(frozen=True)
class Dataset:
    name: str
    path: Path
    readonly: bool
    created: float  # seconds since the epoch


@dataclass(frozen=True)
class Snapshot:
    dataset: str
    name: str
    path: Path | None  # where its files can be read, for drivers that expose one
    created: float
    # Creation order among the dataset's snapshots: the file system's transaction number where
    # it has one (btrfs otransid, ZFS createtxg). Unlike ``created`` it never runs backwards
    # with the clock, nor ties within a second.
    order: int = 0


@dataclass(frozen=True)
class Volume:
    dataset: str
    path: Path  # what a hypervisor opens: a raw image file, or a block device
    size: int  # bytes the guest sees
    allocated: int  # bytes the pool holds for it now: less than size while it is sparse


@dataclass(frozen=True)
class Capabilities:
    """What a driver can do; the agent and users read this instead of the driver's name."""

    fast_fork: bool  # a fork shares data with its source instead of copying every byte
    send_receive: bool  # snapshots travel as streams (full ones)
    incremental_send: bool  # ... and as the difference from an earlier snapshot
    block_volumes: bool  # a dataset can hold a VM's disk
    enforced_readonly: bool  # the kernel refuses writes to a read-only dataset, not only a flag

    def as_dict(self) -> dict[str, bool]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


@dataclass(frozen=True)
class PoolUsage:
    driver: str
    path: Path
    size: int
    used: int
    free: int
    capabilities: Capabilities


class StorageDriver(ABC):
    """One copy-on-write backend. ``root`` is where the pool is mounted."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def fast_fork(self) -> bool:
        """False for drivers whose fork copies every byte; the agent warns the user about those."""
        return self.capabilities.fast_fork

    # -- datasets ----------------------------------------------------------------------------
    @abstractmethod
    def create(self, name: str) -> Dataset:
        """Create an empty dataset. Conflict if it exists; parents are created as needed."""

    @abstractmethod
    def fork(self, source: str, target: str, *, readonly: bool = False,
             snapshot: str | None = None) -> Dataset:
        """Clone ``source`` (or its snapshot ``snapshot``) into a new dataset ``target``."""

    @abstractmethod
    def get(self, name: str) -> Dataset:
        """Describe one dataset; NotFound if it does not exist."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[Dataset]:
        """Datasets whose name is ``prefix`` or lies below it (all when empty), sorted by name."""

    @abstractmethod
    def set_readonly(self, name: str, readonly: bool) -> None: ...

    @abstractmethod
    def rename(self, old: str, new: str) -> Dataset: ...

    @abstractmethod
    def destroy(self, name: str) -> None:
        """Remove a dataset and its snapshots. Removing one that does not exist is not an error
        (undo steps and reconcile call this on half-made work)."""

    # -- snapshots ---------------------------------------------------------------------------
    @abstractmethod
    def snapshot(self, name: str, snapshot: str) -> Snapshot: ...

    @abstractmethod
    # builtins.list: inside this class body, plain 'list' is the method above (mypy).
    def snapshots(self, name: str) -> builtins.list[Snapshot]:
        """The dataset's snapshots in the order they were made (``Snapshot.order``)."""

    @abstractmethod
    def rollback(self, name: str, snapshot: str) -> None:
        """Make the dataset's contents those of the snapshot again."""

    @abstractmethod
    def destroy_snapshot(self, name: str, snapshot: str) -> None: ...

    # -- streams -----------------------------------------------------------------------------
    @abstractmethod
    def send(self, name: str, snapshot: str, out: BinaryIO, *, parent: str | None = None) -> None:
        """Write a snapshot as a stream; with ``parent``, only what changed since it."""

    @abstractmethod
    def receive(self, name: str, snapshot: str, inp: BinaryIO) -> Snapshot:
        """Read a stream written by ``send`` of the same driver into ``name@snapshot``."""

    # -- block volumes -----------------------------------------------------------------------
    @abstractmethod
    def create_volume(self, name: str, size: str | int) -> Volume:
        """Create dataset ``name`` holding a sparse volume of ``size`` (bytes or "20G")."""

    @abstractmethod
    def volume(self, name: str) -> Volume:
        """Describe the volume in dataset ``name``; NotFound if there is none."""

    @abstractmethod
    def resize_volume(self, name: str, size: str | int) -> Volume:
        """Grow the volume in dataset ``name`` to ``size``; shrinking is refused."""

    def volume_path(self, name: str) -> Path:
        """What a hypervisor opens for the volume in dataset ``name``."""
        return self.volume(name).path

    # -- pool --------------------------------------------------------------------------------
    @abstractmethod
    def usage(self) -> PoolUsage: ...

    def exists(self, name: str) -> bool:
        from homecloud.errors import NotFound

        try:
            self.get(name)
        except NotFound:
            return False
        return True

    def path(self, name: str) -> Path:
        """Where the files of dataset ``name`` live (it need not exist yet)."""
        return self.root.joinpath(*check_dataset_name(name))
