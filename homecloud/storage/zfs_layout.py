"""How the zfs driver lays homecloud's datasets out in ZFS: names, command lines, and what a
listing of the pool says. Pure: no I/O here, the driver (zfs.py) runs what this module plans.

A pool is one ZFS file system, the *parent* (``tank/homecloud``), mounted at the pool path.
Dataset ``images/debian`` is the file system ``tank/homecloud/images/debian``, mounted below it
by inheritance. Groups (``images``) are file systems too, since ZFS needs the parents; a
dataset is told from a group by its id (the user property ``homecloud:id``), which it keeps
across renames and rollbacks.

File systems the user does not see live under ``<parent>/.meta`` (``mountpoint=none``, so
never mounted): ``work-*`` while a rollback or receive is being made, ``retired-*`` holding
snapshots of a dataset (``homecloud:of`` names its id) or of a removed one whose snapshots
still have clones.

Choices, and why:
- A fork clones a hidden snapshot ``source@fork:<id>`` that is marked for deferred destruction
  as soon as the clone exists: ZFS removes it by itself when the clone goes. Users cannot make
  a snapshot name with ':', so theirs never collide with these.
- Removing a dataset whose snapshots still have clones does not promote a clone (that would
  move the removed dataset's snapshots onto it). The dataset is retired instead: unmounted,
  moved under ``.meta``, every snapshot marked for deferred destruction; once the last clone
  is gone ZFS removes those snapshots and the next removal in the pool collects the empty
  file system.
- Rollback to the dataset's newest snapshot is ZFS's own rollback. ``zfs rollback -r`` to an
  older one would destroy the newer snapshots, so instead the dataset becomes a clone of the
  snapshot and its former file system is retired into the dataset's lineage, keeping the newer
  snapshots listed (and usable) under the dataset's name.
- A received snapshot lands in a fresh file system (a clone of the incremental stream's parent,
  or a new one), which becomes the dataset if there was none, or joins its lineage.
- Block volumes are sparse raw files in the dataset (as with every other driver), not zvols:
  a file system is forked, snapshotted, rolled back and sent exactly like the dataset it sits
  in, and needs no udev to publish a /dev/zvol link, which a container host lacks.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from homecloud.errors import Conflict
from homecloud.storage.mountinfo import parse_mounts
from homecloud.storage.tree import META_DIR, ancestors, check_snapshot_name, split_name

PROP_ID = "homecloud:id"  # a dataset's identity, set on the file system that is the dataset
PROP_OF = "homecloud:of"  # on a retired file system: the id of the dataset it holds snapshots of
FORK_PREFIX = "fork:"  # hidden snapshots that forks are cloned from
RETIRED = "retired"
WORK = "work"
UNSET = "-"  # what `zfs list` prints for an unset property

# Set on every dataset homecloud makes: lz4 costs little CPU, and a VM disk's unwritten or
# zeroed parts of a record then take no space and travel in streams as almost nothing.
DATASET_PROPS = {"compression": "lz4"}
# createtxg orders snapshots: creation is in whole seconds and follows the clock, backwards too.
LIST_COLUMNS = ("name", "type", "creation", "createtxg", "readonly", "origin", "defer_destroy",
                "guid", PROP_ID, PROP_OF)

# The start of a send stream: a dmu_replay_record (type 0, BEGIN) whose drr_begin carries the
# magic, the snapshot's guid and, for an incremental stream, its parent's guid.
DRR_BEGIN_MAGIC = 0x2F5BACBAC
STREAM_HEADER_SIZE = 8 + 8 + 8 + 8 + 4 + 4 + 8 + 8  # up to and including drr_fromguid


def new_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class ZfsEntry:
    """One line of the pool's listing: a file system or a snapshot."""

    name: str  # the full ZFS name: 'tank/homecloud/web' or 'tank/homecloud/web@s1'
    snapshot: bool
    created: float
    txg: int  # the transaction group that made it
    readonly: bool
    origin: str | None  # for a clone: the snapshot it was made from
    deferred: bool  # a snapshot marked for deferred destruction (kept only for its clones)
    guid: str
    id: str | None
    of: str | None

    @property
    def filesystem(self) -> str:
        return self.name.split("@", 1)[0]

    @property
    def snapshot_name(self) -> str:
        return self.name.split("@", 1)[1] if self.snapshot else ""

    @property
    def visible(self) -> bool:
        """A snapshot the user made (or received) and has not removed."""
        return self.snapshot and not self.deferred and ":" not in self.snapshot_name


def _prop(value: str) -> str | None:
    return None if value in (UNSET, "") else value


def parse_listing(text: str) -> list[ZfsEntry]:
    """Entries from `zfs list -H -p -o LIST_COLUMNS`."""
    entries = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != len(LIST_COLUMNS):
            continue
        name, kind, creation, txg, readonly, origin, deferred, guid, ident, of = fields
        entries.append(ZfsEntry(
            name=name, snapshot=kind == "snapshot", created=float(creation), txg=int(txg),
            readonly=readonly == "on", origin=_prop(origin), deferred=deferred == "on",
            guid=guid, id=_prop(ident), of=_prop(of)))
    return entries


def dataset_mounted_at(mountinfo: str, path: str) -> str | None:
    """The ZFS file system mounted at ``path``, from /proc/self/mountinfo's text (the last
    mount there wins, as it hides the earlier ones)."""
    found = None
    for mount in parse_mounts(mountinfo):
        if mount.point == path:
            found = mount.source if mount.fstype == "zfs" else None
    return found


def mounts_below(mountinfo: str, path: str) -> list[str]:
    """Mount points strictly below ``path`` (a snapshot ZFS mounted on access under
    ``.zfs/snapshot``), deepest first: the order to unmount them in."""
    prefix = path.rstrip("/") + "/"
    found = [mount.point for mount in parse_mounts(mountinfo) if mount.point.startswith(prefix)]
    return sorted(found, key=lambda point: point.count("/"), reverse=True)


@dataclass(frozen=True)
class StreamHeader:
    toguid: str
    fromguid: str | None  # None for a full stream


def parse_stream_header(head: bytes) -> StreamHeader | None:
    """The guids at the start of a `zfs send` stream; None if ``head`` is not one."""
    if len(head) < STREAM_HEADER_SIZE:
        return None
    for order in ("<", ">"):  # written in the sender's byte order
        kind, = struct.unpack_from(order + "I", head, 0)
        magic, = struct.unpack_from(order + "Q", head, 8)
        if kind == 0 and magic == DRR_BEGIN_MAGIC:
            toguid, fromguid = struct.unpack_from(order + "QQ", head, 40)
            return StreamHeader(str(toguid), str(fromguid) if fromguid else None)
    return None


@dataclass(frozen=True)
class Layout:
    """Names in the pool whose parent file system is ``parent``."""

    parent: str

    @property
    def meta(self) -> str:
        return f"{self.parent}/{META_DIR}"

    def fs(self, name: str) -> str:
        return "/".join([self.parent, *split_name(name)])

    def snap(self, name: str, snapshot: str) -> str:
        return f"{self.fs(name)}@{check_snapshot_name(snapshot)}"

    def hidden(self, purpose: str) -> str:
        return f"{self.meta}/{purpose}-{new_id()}"

    def name_of(self, fs: str) -> str | None:
        """The dataset or group name of file system ``fs``; None for the parent, hidden ones
        and file systems of other pools."""
        prefix = self.parent + "/"
        if not fs.startswith(prefix) or fs == self.meta or fs.startswith(self.meta + "/"):
            return None
        return fs[len(prefix):]

    def retired(self, fs: str) -> bool:
        return fs.startswith(f"{self.meta}/{RETIRED}-")


@dataclass(frozen=True)
class PoolView:
    """What one listing of the pool says, read the way homecloud reads it."""

    layout: Layout
    entries: tuple[ZfsEntry, ...]

    def filesystem(self, fs: str) -> ZfsEntry | None:
        for entry in self.entries:
            if not entry.snapshot and entry.name == fs:
                return entry
        return None

    def dataset(self, name: str) -> ZfsEntry | None:
        """The file system that is dataset ``name`` (not a group), if any."""
        entry = self.filesystem(self.layout.fs(name))
        return entry if entry is not None and entry.id is not None else None

    def datasets(self) -> Iterator[tuple[str, ZfsEntry]]:
        for entry in self.entries:
            name = None if entry.snapshot else self.layout.name_of(entry.name)
            if name is not None and entry.id is not None:
                yield name, entry

    def children(self, fs: str) -> list[ZfsEntry]:
        return [entry for entry in self.entries
                if not entry.snapshot and entry.name.startswith(fs + "/")]

    def snapshots_on(self, fs: str) -> list[ZfsEntry]:
        """Every snapshot of file system ``fs`` (hidden and deferred ones too), oldest first."""
        return sorted((entry for entry in self.entries
                       if entry.snapshot and entry.filesystem == fs),
                      key=lambda entry: entry.txg)

    def lineage(self, head: ZfsEntry) -> list[ZfsEntry]:
        """The dataset's file system and the retired ones holding its older snapshots."""
        retired = [entry for entry in self.entries
                   if not entry.snapshot and self.layout.retired(entry.name)
                   and entry.of is not None and entry.of == head.id]
        return [head, *retired]

    def snapshots(self, head: ZfsEntry) -> list[ZfsEntry]:
        """The dataset's snapshots as the user sees them, oldest first."""
        members = {member.name for member in self.lineage(head)}
        found = [entry for entry in self.entries
                 if entry.visible and entry.filesystem in members]
        return sorted(found, key=lambda entry: entry.txg)

    def find_snapshot(self, head: ZfsEntry, snapshot: str) -> ZfsEntry | None:
        for entry in self.snapshots(head):
            if entry.snapshot_name == snapshot:
                return entry
        return None

    def by_guid(self, guid: str) -> ZfsEntry | None:
        """A snapshot the user can see with this guid (the parent of an incremental stream)."""
        for entry in self.entries:
            if entry.visible and entry.guid == guid:
                return entry
        return None

    def collectable(self) -> list[str]:
        """Retired file systems that hold no snapshot any more: nothing needs them."""
        with_snapshots = {entry.filesystem for entry in self.entries if entry.snapshot}
        return [entry.name for entry in self.entries
                if not entry.snapshot and self.layout.retired(entry.name)
                and entry.name not in with_snapshots]

    def check_creatable(self, name: str) -> str | None:
        """Refuse a dataset that would nest in another or sit where a group holds others;
        return the file system of an empty group in the way (to be replaced), if any."""
        for ancestor in ancestors(name):
            if self.dataset(ancestor) is not None:
                raise Conflict(f"cannot create dataset {name!r} inside dataset {ancestor!r}: "
                               "datasets do not nest")
        fs = self.layout.fs(name)
        existing = self.filesystem(fs)
        if existing is None:
            return None
        if existing.id is not None:
            raise Conflict(f"dataset {name!r} already exists")
        if self.children(fs):
            raise Conflict(f"cannot create dataset {name!r}: the group {name!r} is in the way "
                           "(it holds other datasets)")
        return fs


# -- command lines ---------------------------------------------------------------------------
def props_args(props: dict[str, str]) -> list[str]:
    return [arg for key, value in props.items() for arg in ("-o", f"{key}={value}")]


def list_argv(roots: Sequence[str], *, recursive: bool = True,
              types: str = "filesystem,snapshot") -> list[str]:
    return ["zfs", "list", "-H", "-p", *(["-r"] if recursive else []), "-t", types,
            "-o", ",".join(LIST_COLUMNS), *roots]


def create_argv(fs: str, props: dict[str, str]) -> list[str]:
    # -p makes the missing groups; -o applies to ``fs`` alone.
    return ["zfs", "create", "-p", *props_args(props), fs]


def clone_argv(snapshot: str, fs: str, props: dict[str, str]) -> list[str]:
    return ["zfs", "clone", "-p", *props_args(props), snapshot, fs]


def rename_argv(old: str, new: str) -> list[str]:
    # -p makes the missing groups (for a file system; a snapshot is renamed without it).
    return ["zfs", "rename", *([] if "@" in old else ["-p"]), old, new]


def mount_argv(fs: str) -> list[str]:
    return ["zfs", "mount", fs]


def set_argv(fs: str, props: dict[str, str]) -> list[str]:
    return ["zfs", "set", *(f"{key}={value}" for key, value in props.items()), fs]


def destroy_argv(fs: str, *, recursive: bool = False) -> list[str]:
    # -r takes the file system's snapshots along; it fails, changing nothing, while one of
    # them has a clone.
    return ["zfs", "destroy", *(["-r"] if recursive else []), fs]


def send_argv(snapshot: str, parent: str | None) -> list[str]:
    # -L and -c keep large and compressed blocks as they are on disk; holes are never sent.
    return ["zfs", "send", "-L", "-c", *(["-i", parent] if parent else []), snapshot]


def receive_argv(snapshot: str, props: dict[str, str], origin: str | None) -> list[str]:
    """Receive into the new file system of ``snapshot``, unmounted (-u); an incremental stream
    lands as a clone of its parent snapshot ``origin``."""
    origin_args = ["-o", f"origin={origin}"] if origin else []
    return ["zfs", "receive", "-u", *origin_args, *props_args(props), snapshot]


def usage_argv(fs: str) -> list[str]:
    return ["zfs", "get", "-H", "-p", "-o", "value", "used,available", fs]


def meta_argv(layout: Layout) -> list[str]:
    return ["zfs", "create", "-o", "mountpoint=none", "-o", "canmount=off", layout.meta]
