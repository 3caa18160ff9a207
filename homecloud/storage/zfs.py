"""The zfs driver: datasets are ZFS file systems under one parent file system mounted at the
pool path; snapshots are ZFS snapshots; a fork is a clone. zfs_layout.py describes the layout
and the choices behind it (hidden fork snapshots, retired file systems, rollback by clone).

Snapshots, their removal and rollback to the newest one go through libzfs_core (pyzfs): one
ioctl each, and one call snapshots several datasets at the same instant (``snapshot_together``).
What creates, moves or removes mounts runs the ``zfs`` command through homecloud.tools, since
libzfs_core neither mounts nor unmounts; so do send and receive, and listings (libzfs_core has
no committed call for those).
"""

from __future__ import annotations

import builtins
import errno
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

from homecloud.errors import Conflict, HomecloudError, HostError, NotFound, UserError
from homecloud.storage.base import Capabilities, Dataset, PoolUsage, Snapshot, Volume
from homecloud.storage.failures import os_failure, pool_full, tool_failure
from homecloud.storage.file_volumes import FileVolumeDriver
from homecloud.storage.tree import ancestors, check_snapshot_name, split_name
from homecloud.storage.zfs_host import load_pyzfs, mounted_dataset, read_mountinfo, zfs_missing
from homecloud.storage.zfs_layout import (
    DATASET_PROPS,
    FORK_PREFIX,
    PROP_ID,
    PROP_OF,
    RETIRED,
    STREAM_HEADER_SIZE,
    WORK,
    Layout,
    PoolView,
    ZfsEntry,
    clone_argv,
    create_argv,
    destroy_argv,
    list_argv,
    meta_argv,
    mount_argv,
    mounts_below,
    new_id,
    parse_listing,
    parse_stream_header,
    receive_argv,
    rename_argv,
    send_argv,
    set_argv,
    usage_argv,
)
from homecloud.tools import pipe_tool, run_tool

log = logging.getLogger(__name__)

PACKAGE = "zfsutils-linux"
SNAPSHOT_DIR = (".zfs", "snapshot")
# Rounds of collecting retired file systems: removing one can free the next one's origin.
COLLECT_ROUNDS = 8


def zfs_failure(stderr: str, root: Path, action: str, error: type[HomecloudError] = HostError,
                *, missing: str | None = None, exists: str | None = None) -> HomecloudError:
    """Turn what the zfs command printed into the error the user sees."""
    text = stderr.lower()
    if "out of space" in text:
        return pool_full(root, action)
    if exists is not None and "already exists" in text:
        return Conflict(exists)
    if missing is not None and "does not exist" in text:
        return NotFound(missing)
    if "busy" in text:
        return Conflict(f"could not {action}: it is in use; stop what uses it and try again")
    return tool_failure(stderr, root, action, error)


def lzc_failure(exc: Exception, root: Path, action: str, *, exists: str | None = None,
                missing: str | None = None) -> HomecloudError:
    """Turn a libzfs_core error (its errno, or the first of its per-snapshot errors) into the
    error the user sees."""
    inner = getattr(exc, "errors", None) or [exc]
    code = getattr(inner[0], "errno", None) or errno.EIO
    return os_failure(OSError(code, getattr(inner[0], "message", None) or str(exc)), root,
                      action, exists=exists, missing=missing)


class PrefixedStream(io.RawIOBase):
    """``head`` (bytes already read from ``rest``) followed by the rest of ``rest``."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def read_exactly(stream: BinaryIO, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class ZfsDriver(FileVolumeDriver):
    name = "zfs"
    capabilities = Capabilities(fast_fork=True, send_receive=True, incremental_send=True,
                                block_volumes=True, enforced_readonly=True)

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        missing = zfs_missing()
        if missing is not None:
            raise HostError(f"the zfs driver cannot run on this host: {missing}")
        parent = mounted_dataset(root)
        if parent is None:
            raise HostError(f"no ZFS file system is mounted at {root}: run 'zfs create -o "
                            f"mountpoint={root} POOL/homecloud' or set pool.driver to auto")
        lzc = load_pyzfs()
        assert lzc is not None  # zfs_missing said so
        self._lzc: ModuleType = lzc
        self.layout = Layout(parent)

    # -- running zfs ----------------------------------------------------------------------------
    def _zfs(self, argv: Sequence[str], action: str, *, missing: str | None = None,
             exists: str | None = None) -> str:
        result = run_tool(argv, package=PACKAGE)
        if not result.ok:
            raise zfs_failure(result.stderr, self.root, action, missing=missing, exists=exists)
        return result.stdout

    def _quietly(self, argv: Sequence[str]) -> None:
        """Clean-up that must not hide the error being handled; what fails is logged."""
        result = run_tool(argv, package=PACKAGE)
        if not result.ok:
            log.warning("%s: %s", " ".join(argv), result.first_error_line())

    def _view(self) -> PoolView:
        out = self._zfs(list_argv([self.layout.parent]), f"list the pool at {self.root}")
        return PoolView(self.layout, tuple(parse_listing(out)))

    def _head(self, view: PoolView, name: str) -> ZfsEntry:
        entry = view.dataset(name)
        if entry is None:
            raise NotFound(f"dataset {name!r} does not exist")
        return entry

    def _snapshot_entry(self, view: PoolView, name: str, snapshot: str) -> ZfsEntry:
        found = view.find_snapshot(self._head(view, name), snapshot)
        if found is None:
            raise NotFound(f"snapshot {name}@{snapshot} does not exist")
        return found

    def _ensure_meta(self, view: PoolView, action: str) -> None:
        if view.filesystem(self.layout.meta) is not None:
            return
        result = run_tool(meta_argv(self.layout), package=PACKAGE)
        if not result.ok and "already exists" not in result.stderr:
            raise zfs_failure(result.stderr, self.root, action)

    def _mount(self, name: str, action: str) -> None:
        """Mount a file system moved into place from under .meta (where nothing mounts)."""
        if not os.path.ismount(self.path(name)):
            self._zfs(mount_argv(self.layout.fs(name)), action)

    def _unmount_snapshots(self, name: str, action: str) -> None:
        """Unmount the snapshots of ``name`` that reading them mounted (under .zfs/snapshot):
        they would keep its file system from moving."""
        for point in mounts_below(read_mountinfo(), str(self.path(name) / SNAPSHOT_DIR[0])):
            result = run_tool(["umount", point], package="mount")
            if not result.ok:
                raise zfs_failure(result.stderr, self.root, action)

    def _undo_groups(self, view: PoolView, name: str) -> None:
        """Remove the groups made for ``name`` (those the listing ``view`` did not have)."""
        for ancestor in reversed(list(ancestors(name))):
            fs = self.layout.fs(ancestor)
            if view.filesystem(fs) is None:
                self._quietly(destroy_argv(fs))

    def _clear(self, in_the_way: str | None, action: str) -> None:
        if in_the_way is not None:  # an empty group where the dataset goes
            self._zfs(destroy_argv(in_the_way), action)

    def _describe(self, name: str, entry: ZfsEntry) -> Dataset:
        return Dataset(name=name, path=self.path(name), readonly=entry.readonly,
                       created=entry.created)

    def _describe_snapshot(self, name: str, head: ZfsEntry, entry: ZfsEntry) -> Snapshot:
        # Only the dataset's own file system is mounted; snapshots kept by retired ones have
        # no path (they can still be forked, rolled back to and sent).
        path = (self.path(name).joinpath(*SNAPSHOT_DIR, entry.snapshot_name)
                if entry.filesystem == head.name else None)
        return Snapshot(dataset=name, name=entry.snapshot_name, path=path, created=entry.created,
                        order=entry.txg)

    # -- libzfs_core ----------------------------------------------------------------------------
    def _lzc_snapshot(self, snapshots: list[str], action: str,
                      exists: str | None = None) -> None:
        try:
            self._lzc.lzc_snapshot([snap.encode() for snap in snapshots])
        except Exception as exc:
            raise lzc_failure(exc, self.root, action, exists=exists) from exc

    def _lzc_destroy(self, snapshots: list[str], action: str) -> None:
        """Destroy snapshots now, or when their last clone goes (deferred)."""
        if not snapshots:
            return
        try:
            self._lzc.lzc_destroy_snaps([snap.encode() for snap in snapshots], True)
        except Exception as exc:
            raise lzc_failure(exc, self.root, action) from exc

    # -- datasets -------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.root.joinpath(*split_name(name))

    def create(self, name: str) -> Dataset:
        fs = self.layout.fs(name)
        action = f"create dataset {name!r}"
        view = self._view()
        self._clear(view.check_creatable(name), action)
        ident = new_id()
        try:
            self._zfs(create_argv(fs, {**DATASET_PROPS, PROP_ID: ident, PROP_OF: ident}), action,
                      exists=f"dataset {name!r} already exists")
        except BaseException:
            self._undo_groups(view, name)
            raise
        return self.get(name)

    def fork(self, source: str, target: str, *, readonly: bool = False,
             snapshot: str | None = None) -> Dataset:
        fs = self.layout.fs(target)
        self.layout.fs(source)
        if snapshot is not None:
            check_snapshot_name(snapshot)
        view = self._view()
        head = self._head(view, source)
        origin = None if snapshot is None else self._snapshot_entry(view, source, snapshot)
        what = source if snapshot is None else f"{source}@{snapshot}"
        action = f"fork {what!r} to {target!r}"
        self._clear(view.check_creatable(target), action)
        hidden = None
        if origin is None:
            hidden = f"{head.name}@{FORK_PREFIX}{new_id()}"
            self._lzc_snapshot([hidden], action)
        ident = new_id()
        props = {**DATASET_PROPS, PROP_ID: ident, PROP_OF: ident,
                 **({"readonly": "on"} if readonly else {})}
        try:
            self._zfs(clone_argv(origin.name if origin else str(hidden), fs, props), action,
                      exists=f"dataset {target!r} already exists")
        except BaseException:
            self._undo_groups(view, target)
            if hidden is not None:
                self._quietly(destroy_argv(hidden))
            raise
        if hidden is not None:
            # Marked at once: ZFS removes the hidden snapshot when the fork goes.
            self._lzc_destroy([hidden], action)
        return self.get(target)

    def get(self, name: str) -> Dataset:
        fs = self.layout.fs(name)
        result = run_tool(list_argv([fs], recursive=False, types="filesystem"),
                          package=PACKAGE)
        entries = parse_listing(result.stdout) if result.ok else []
        if not entries or entries[0].id is None:
            if result.ok or "does not exist" in result.stderr:
                raise NotFound(f"dataset {name!r} does not exist")
            raise zfs_failure(result.stderr, self.root, f"read dataset {name!r}")
        return self._describe(name, entries[0])

    def list(self, prefix: str = "") -> list[Dataset]:
        if prefix:
            self.layout.fs(prefix)
        found = [self._describe(name, entry) for name, entry in self._view().datasets()
                 if not prefix or name == prefix or name.startswith(prefix + "/")]
        return sorted(found, key=lambda dataset: dataset.name)

    def set_readonly(self, name: str, readonly: bool) -> None:
        self.get(name)
        self._zfs(set_argv(self.layout.fs(name), {"readonly": "on" if readonly else "off"}),
                  f"change dataset {name!r}")

    def rename(self, old: str, new: str) -> Dataset:
        self.layout.fs(old)
        fs = self.layout.fs(new)
        view = self._view()
        head = self._head(view, old)
        if old == new:
            return self._describe(old, head)
        action = f"rename dataset {old!r} to {new!r}"
        self._clear(view.check_creatable(new), action)
        self._unmount_snapshots(old, action)
        try:
            self._zfs(rename_argv(head.name, fs), action,
                      exists=f"dataset {new!r} already exists")
        except BaseException:
            self._undo_groups(view, new)
            raise
        return self.get(new)

    def destroy(self, name: str) -> None:
        self.layout.fs(name)
        view = self._view()
        head = view.dataset(name)
        if head is None:
            return
        action = f"remove dataset {name!r}"
        cloned = {entry.origin for entry in view.entries if entry.origin}
        own = view.snapshots_on(head.name)
        if any(snap.name in cloned for snap in own):
            # Forks still need some of its snapshots: keep it, out of sight, until they go.
            # The move fails while the dataset is in use, before anything is lost.
            self._ensure_meta(view, action)
            retired = self.layout.hidden(RETIRED)
            self._unmount_snapshots(name, action)
            self._zfs(rename_argv(head.name, retired), action)
            self._lzc_destroy([f"{retired}@{snap.snapshot_name}" for snap in own], action)
        else:
            self._unmount_snapshots(name, action)
            self._zfs(destroy_argv(head.name, recursive=True), action)
        older = [snap.name for member in view.lineage(head)[1:]
                 for snap in view.snapshots_on(member.name)]
        self._lzc_destroy(older, action)
        self._collect()

    def _collect(self) -> None:
        """Destroy retired file systems that no longer hold a snapshot."""
        for _ in range(COLLECT_ROUNDS):
            found = self._view().collectable()
            if not found:
                return
            for fs in found:
                self._quietly(destroy_argv(fs))

    # -- snapshots ------------------------------------------------------------------------------
    def snapshot(self, name: str, snapshot: str) -> Snapshot:
        return self.snapshot_together([name], snapshot)[0]

    def snapshot_together(self, names: Sequence[str],
                          snapshot: str) -> builtins.list[Snapshot]:
        """Snapshot several datasets at one instant (one transaction group): all or none."""
        for name in names:
            self.layout.fs(name)
        check_snapshot_name(snapshot)
        view = self._view()
        heads = [self._head(view, name) for name in names]
        for name, head in zip(names, heads, strict=True):
            if view.find_snapshot(head, snapshot) is not None:
                raise Conflict(f"snapshot {name}@{snapshot} already exists")
        what = ", ".join(f"{name}@{snapshot}" for name in names)
        self._lzc_snapshot([f"{head.name}@{snapshot}" for head in heads], f"snapshot {what}",
                           exists=f"snapshot {what} already exists")
        after = self._view()
        return [self._describe_snapshot(name, head, self._snapshot_entry(after, name, snapshot))
                for name, head in zip(names, heads, strict=True)]

    def snapshots(self, name: str) -> builtins.list[Snapshot]:
        self.layout.fs(name)
        view = self._view()
        head = self._head(view, name)
        return [self._describe_snapshot(name, head, entry) for entry in view.snapshots(head)]

    def rollback(self, name: str, snapshot: str) -> None:
        fs = self.layout.fs(name)
        check_snapshot_name(snapshot)
        view = self._view()
        head = self._head(view, name)
        target = self._snapshot_entry(view, name, snapshot)
        action = f"roll {name!r} back to {name}@{snapshot}"
        own = view.snapshots_on(head.name)
        if own and own[-1].name == target.name:
            try:
                self._lzc.lzc_rollback_to(fs.encode(), target.name.encode())
            except Exception as exc:
                raise lzc_failure(exc, self.root, action) from exc
            return
        # An older snapshot: the dataset becomes a clone of it, and its file system, with the
        # newer snapshots, is retired into its lineage (zfs_layout.py).
        self._ensure_meta(view, action)
        work, retired = self.layout.hidden(WORK), self.layout.hidden(RETIRED)
        props = {**DATASET_PROPS, PROP_ID: str(head.id), PROP_OF: str(head.id),
                 "readonly": "on" if head.readonly else "off"}
        self._unmount_snapshots(name, action)
        self._zfs(clone_argv(target.name, work, props), action)
        moved: list[tuple[str, str]] = []
        try:
            for old, new in ((head.name, retired), (work, fs)):
                self._zfs(rename_argv(old, new), action)  # the first fails while in use
                moved.append((old, new))
            self._mount(name, action)
        except BaseException:
            for old, new in reversed(moved):
                self._quietly(rename_argv(new, old))
            self._quietly(destroy_argv(work))
            if moved:
                self._quietly(mount_argv(fs))
            raise
        self._collect()

    def destroy_snapshot(self, name: str, snapshot: str) -> None:
        """Remove ``name@snapshot``; one that does not exist is not an error (undo steps)."""
        self.layout.fs(name)
        check_snapshot_name(snapshot)
        view = self._view()
        head = view.dataset(name)
        entry = None if head is None else view.find_snapshot(head, snapshot)
        if entry is None:
            return
        action = f"remove snapshot {name}@{snapshot}"
        gone = entry.name
        if any(other.origin == entry.name for other in view.entries):
            # Forks still need it: out of sight under a name users cannot take, it waits for
            # them (and frees its name for a new snapshot).
            gone = f"{entry.filesystem}@removed:{new_id()}"
            self._zfs(rename_argv(entry.name, gone), action)
        self._lzc_destroy([gone], action)
        self._collect()

    # -- streams --------------------------------------------------------------------------------
    def send(self, name: str, snapshot: str, out: BinaryIO, *, parent: str | None = None) -> None:
        self.layout.fs(name)
        check_snapshot_name(snapshot)
        view = self._view()
        entry = self._snapshot_entry(view, name, snapshot)
        base = None if parent is None else self._snapshot_entry(view, name, parent)
        result = pipe_tool(send_argv(entry.name, base.name if base else None), out=out)
        if not result.ok:
            raise zfs_failure(result.stderr, self.root, f"send {name}@{snapshot}")

    def receive(self, name: str, snapshot: str, inp: BinaryIO) -> Snapshot:
        fs = self.layout.fs(name)
        check_snapshot_name(snapshot)
        action = f"receive {name}@{snapshot}"
        view = self._view()
        head = view.dataset(name)
        if head is not None and view.find_snapshot(head, snapshot) is not None:
            raise Conflict(f"snapshot {name}@{snapshot} already exists")
        in_the_way = view.check_creatable(name) if head is None else None
        start = read_exactly(inp, STREAM_HEADER_SIZE)
        header = parse_stream_header(start)
        if header is None:
            raise UserError(f"could not {action}: the stream is not a zfs send stream")
        base = None
        if header.fromguid is not None:
            base = view.by_guid(header.fromguid)
            if base is None:
                raise UserError(f"could not {action}: its parent snapshot is not in the pool; "
                                "receive its parent snapshot first")
        self._ensure_meta(view, action)
        ident = str(head.id) if head is not None else new_id()
        work = self.layout.hidden(WORK)
        landed = False
        try:
            stream = io.BufferedReader(PrefixedStream(start, inp))
            props = {**DATASET_PROPS, PROP_ID: ident, PROP_OF: ident}
            result = pipe_tool(receive_argv(f"{work}@{snapshot}", props,
                                            base.name if base else None),
                               inp=stream)
            if not result.ok:
                raise zfs_failure(result.stderr, self.root, action, UserError)
            if head is None:
                self._clear(in_the_way, action)
                self._zfs(rename_argv(work, fs), action)
                landed = True
                self._mount(name, action)
            else:
                self._zfs(rename_argv(work, self.layout.hidden(RETIRED)), action)
        except BaseException:
            leftover = fs if landed else work
            if self._exists(leftover):
                self._quietly(destroy_argv(leftover, recursive=True))
            if head is None:
                self._undo_groups(view, name)
            raise
        after = self._view()
        return self._describe_snapshot(name, self._head(after, name),
                                       self._snapshot_entry(after, name, snapshot))

    def _exists(self, fs: str) -> bool:
        return bool(self._lzc.lzc_exists(fs.encode()))

    # -- pool -----------------------------------------------------------------------------------
    def _sync(self, action: str) -> None:
        """Write the open transaction group: ZFS counts space taken or freed only then."""
        try:
            self._lzc.lzc_sync(self.layout.parent.split("/")[0].encode(), False)
        except Exception as exc:
            raise lzc_failure(exc, self.root, action) from exc

    def volume(self, name: str) -> Volume:
        self._sync(f"read volume {name!r}")
        return super().volume(name)

    def _allocated(self, st: os.stat_result) -> int:
        # ZFS counts one sector for the file's dnode in st_blocks, even for an empty file.
        return max(st.st_blocks - 1, 0) * 512

    def usage(self) -> PoolUsage:
        action = f"read the usage of the pool at {self.root}"
        self._sync(action)
        out = self._zfs(usage_argv(self.layout.parent), action)
        used, free = (int(value) for value in out.split())
        return PoolUsage(driver=self.name, path=self.root, size=used + free, used=used,
                         free=free, capabilities=self.capabilities)
