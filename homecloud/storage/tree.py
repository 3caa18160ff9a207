"""What the btrfs, reflink and copy drivers share: datasets laid out as directory trees.

Layout under the pool root::

    <group>/<dataset>                 the dataset's files (a btrfs subvolume or a directory)
    .snapshots/<dataset>/<snapshot>   its snapshots
    .work/                            transient trees (a rollback or receive in progress)

Groups (``images`` in ``images/debian``) are plain directories made on demand. Datasets never
nest: a dataset's ancestors are groups, so forking a dataset never drags another one along, and
the directory drivers (which copy whole trees) behave exactly like btrfs. Subclasses supply the
primitives (is this a dataset, make one, clone a tree, remove a tree, describe one).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from abc import abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from homecloud.errors import Conflict, NotFound, UserError
from homecloud.storage.base import Dataset, PoolUsage, Snapshot, check_dataset_name
from homecloud.storage.failures import os_failure
from homecloud.storage.file_volumes import FileVolumeDriver
from homecloud.storage.fsutil import exchange, rename_noreplace

SNAPSHOTS_DIR = ".snapshots"
WORK_DIR = ".work"
META_DIR = ".meta"
# First components the drivers keep for their own bookkeeping.
RESERVED = frozenset({SNAPSHOTS_DIR, WORK_DIR, META_DIR})


def split_name(name: str) -> list[str]:
    """Components of a dataset name, refusing names that leave the pool or hit reserved dirs."""
    parts = check_dataset_name(name)
    if parts[0] in RESERVED:
        raise UserError(f"invalid dataset name {name!r}: {parts[0]!r} is reserved for the "
                        "pool's own bookkeeping")
    return parts


def check_snapshot_name(snapshot: str) -> str:
    try:
        parts = check_dataset_name(snapshot)
    except UserError:
        parts = []
    if len(parts) != 1:
        raise UserError(f"invalid snapshot name {snapshot!r}: use letters, digits, '.', '_' "
                        "and '-'")
    return snapshot


def ancestors(name: str) -> Iterator[str]:
    """'a/b/c' -> 'a', 'a/b'."""
    parts = name.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


class TreeDriver(FileVolumeDriver):
    """A pool whose datasets are directory trees under ``root`` (see the module docstring)."""

    # -- primitives supplied by each driver -------------------------------------------------
    @abstractmethod
    def _is_dataset(self, name: str, path: Path) -> bool:
        """Whether the (validated) dataset ``name`` at ``path`` exists."""

    @abstractmethod
    def _make(self, name: str, path: Path) -> None:
        """Create the empty dataset ``name`` at ``path`` (its parent exists, it does not)."""

    @abstractmethod
    def _clone(self, src: Path, dst: Path, *, readonly: bool, action: str) -> None:
        """Clone the tree at ``src`` to ``dst`` (which does not exist). On failure raise a user
        error and leave nothing at ``dst``."""

    @abstractmethod
    def _remove_tree(self, path: Path) -> None:
        """Remove a dataset's or snapshot's tree; a missing one is not an error."""

    @abstractmethod
    def _describe(self, name: str, path: Path) -> Dataset: ...

    @abstractmethod
    def _describe_snapshot(self, name: str, snapshot: str, path: Path) -> Snapshot: ...

    @abstractmethod
    def _is_snapshot(self, path: Path) -> bool: ...

    @abstractmethod
    def _receive_into(self, work: Path, inp: BinaryIO, action: str) -> Path:
        """Read a send stream into the empty directory ``work``; return the received tree."""

    @abstractmethod
    def _land_received(self, received: Path, dst: Path, action: str) -> None:
        """Move a received tree to its snapshot path ``dst``."""

    # Bookkeeping hooks: drivers that keep metadata beside the trees override these.
    def _claim(self, name: str, readonly: bool) -> None:
        """Record that ``name`` is being made (before its tree exists)."""

    def _release(self, name: str) -> None:
        """Undo ``_claim`` after a failure, and forget ``name`` once its tree is gone."""

    def _moved(self, old: str, new: str) -> None:
        """Move the bookkeeping of ``old`` to ``new`` after its tree moved."""

    def _snapshot_made(self, path: Path) -> None:
        """Called once a snapshot's tree is complete."""

    def _move(self, src: Path, dst: Path) -> None:
        rename_noreplace(src, dst)

    def _swap(self, new: Path, path: Path) -> None:
        """Put the tree at ``new`` in place of the dataset at ``path``; ``new`` gets the old."""
        exchange(new, path)

    # -- paths --------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.root.joinpath(*split_name(name))

    def snapshot_dir(self, name: str) -> Path:
        return self.root.joinpath(SNAPSHOTS_DIR, *split_name(name))

    def snapshot_path(self, name: str, snapshot: str) -> Path:
        return self.snapshot_dir(name) / check_snapshot_name(snapshot)

    def _work_path(self, purpose: str, action: str) -> Path:
        """A fresh path in the pool's work directory (on the same file system as datasets, so
        finished trees move into place by rename)."""
        work = self.root / WORK_DIR
        try:
            work.mkdir(exist_ok=True)
        except OSError as exc:
            raise os_failure(exc, self.root, action) from exc
        return work / f"{purpose}-{uuid.uuid4().hex[:12]}"

    def _require(self, name: str) -> Path:
        path = self.path(name)
        if not self._is_dataset(name, path):
            raise NotFound(f"dataset {name!r} does not exist")
        return path

    def _require_snapshot(self, name: str, snapshot: str) -> Path:
        path = self.snapshot_path(name, snapshot)
        if not self._is_snapshot(path):
            self._require(name)
            raise NotFound(f"snapshot {name}@{snapshot} does not exist")
        return path

    def _make_parent(self, path: Path, action: str) -> list[Path]:
        """Make the parent directories of ``path``; return those made, outermost first."""
        missing: list[Path] = []
        parent = path.parent
        while not parent.is_dir():
            missing.append(parent)
            parent = parent.parent
        made: list[Path] = []
        for directory in reversed(missing):
            try:
                directory.mkdir()
            except FileExistsError:
                if not directory.is_dir():
                    self._undo_parents(made)
                    raise Conflict(f"could not {action}: a file is in the way at "
                                   f"{directory}") from None
            except OSError as exc:
                self._undo_parents(made)
                raise os_failure(exc, self.root, action) from exc
            else:
                made.append(directory)
        return made

    def _undo_parents(self, made: list[Path]) -> None:
        """Remove directories ``_make_parent`` made, unless something else moved in."""
        for directory in reversed(made):
            try:
                directory.rmdir()
            except OSError:
                return

    def _prepare(self, name: str, action: str) -> tuple[Path, list[Path]]:
        """Check that dataset ``name`` can be made and make its parent directories; return its
        path and the directories made (to undo them on failure)."""
        path = self._check_creatable(name)
        return path, self._make_parent(path, action)

    def _check_creatable(self, name: str) -> Path:
        path = self.path(name)
        for ancestor in ancestors(name):
            if self._is_dataset(ancestor, self.root / ancestor):
                raise Conflict(f"cannot create dataset {name!r} inside dataset {ancestor!r}: "
                               "datasets do not nest")
        if self._is_dataset(name, path):
            raise Conflict(f"dataset {name!r} already exists")
        if os.path.lexists(path):
            self._clear_stale(name, path)
        return path

    def _clear_stale(self, name: str, path: Path) -> None:
        """An empty directory left where a group was may be reused; anything else is in the way."""
        try:
            path.rmdir()
        except OSError as exc:
            raise Conflict(f"cannot create dataset {name!r}: {path} is in the way (it holds "
                           "other datasets or files)") from exc

    # -- datasets -------------------------------------------------------------------------------
    def create(self, name: str) -> Dataset:
        return self._materialise(name, False, f"create dataset {name!r}",
                                 lambda path: self._make(name, path))

    def fork(self, source: str, target: str, *, readonly: bool = False,
             snapshot: str | None = None) -> Dataset:
        if snapshot is None:
            src, what = self._require(source), source
        else:
            src, what = self._require_snapshot(source, snapshot), f"{source}@{snapshot}"
        action = f"fork {what!r} to {target!r}"
        return self._materialise(target, readonly, action, lambda dst: self._clone(
            src, dst, readonly=readonly, action=action))

    def _materialise(self, name: str, readonly: bool, action: str,
                     make: Callable[[Path], None]) -> Dataset:
        """Claim dataset ``name`` and have ``make`` build its tree at its path; if that fails,
        drop the claim and the parent directories made for it."""
        path, made = self._prepare(name, action)
        try:
            self._claim(name, readonly)
            try:
                make(path)
            except BaseException:
                self._release(name)
                raise
        except BaseException:
            self._undo_parents(made)
            raise
        return self._describe(name, path)

    def get(self, name: str) -> Dataset:
        return self._describe(name, self._require(name))

    def rename(self, old: str, new: str) -> Dataset:
        src = self._require(old)
        if old == new:
            return self._describe(old, src)
        action = f"rename dataset {old!r} to {new!r}"
        dst, made = self._prepare(new, action)
        try:
            self._move(src, dst)
        except OSError as exc:
            self._undo_parents(made)
            raise os_failure(exc, self.root, action,
                             exists=f"dataset {new!r} already exists") from exc
        try:
            self._move_snapshots(old, new, action)
            self._moved(old, new)
        except BaseException:
            self._move(dst, src)
            self._undo_parents(made)
            raise
        return self._describe(new, dst)

    def _move_snapshots(self, old: str, new: str, action: str) -> None:
        src, dst = self.snapshot_dir(old), self.snapshot_dir(new)
        if not src.exists():
            return
        self._make_parent(dst, action)
        if os.path.lexists(dst):
            self._clear_stale(new, dst)
        try:
            rename_noreplace(src, dst)
        except OSError as exc:
            raise os_failure(exc, self.root, action) from exc

    def destroy(self, name: str) -> None:
        path = self.path(name)
        if not self._is_dataset(name, path):
            return
        self._destroy_snapshots(name)
        self._remove_tree(path)
        self._release(name)

    def _destroy_snapshots(self, name: str) -> None:
        directory = self.snapshot_dir(name)
        for path in self._snapshot_paths(directory):
            self._remove_tree(path)
        with contextlib.suppress(FileNotFoundError):
            directory.rmdir()

    def _snapshot_paths(self, directory: Path) -> list[Path]:
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return []
        return [Path(entry.path) for entry in entries if self._is_snapshot(Path(entry.path))]

    # -- snapshots ------------------------------------------------------------------------------
    def snapshot(self, name: str, snapshot: str) -> Snapshot:
        src = self._require(name)
        dst = self.snapshot_path(name, snapshot)
        action = f"snapshot {name}@{snapshot}"
        if os.path.lexists(dst):
            raise Conflict(f"snapshot {name}@{snapshot} already exists")
        made = self._make_parent(dst, action)
        try:
            self._clone(src, dst, readonly=True, action=action)
        except BaseException:
            self._undo_parents(made)
            raise
        self._snapshot_made(dst)
        return self._describe_snapshot(name, snapshot, dst)

    def snapshots(self, name: str) -> list[Snapshot]:
        self._require(name)
        found = [self._describe_snapshot(name, path.name, path)
                 for path in self._snapshot_paths(self.snapshot_dir(name))]
        return sorted(found, key=lambda snap: (snap.order, snap.name))

    def rollback(self, name: str, snapshot: str) -> None:
        path = self._require(name)
        src = self._require_snapshot(name, snapshot)
        action = f"roll {name!r} back to {name}@{snapshot}"
        work = self._work_path("rollback", action)
        self._clone(src, work, readonly=False, action=action)
        try:
            self._swap(work, path)
        except OSError as exc:
            self._remove_tree(work)
            raise os_failure(exc, self.root, action) from exc
        # ``work`` now holds the contents the dataset had before the rollback.
        self._remove_tree(work)

    def destroy_snapshot(self, name: str, snapshot: str) -> None:
        """Remove ``name@snapshot``; one that does not exist is not an error (undo steps)."""
        path = self.snapshot_path(name, snapshot)
        if self._is_snapshot(path):
            self._remove_tree(path)

    # -- streams --------------------------------------------------------------------------------
    def receive(self, name: str, snapshot: str, inp: BinaryIO) -> Snapshot:
        dst = self.snapshot_path(name, snapshot)
        action = f"receive {name}@{snapshot}"
        if os.path.lexists(dst):
            raise Conflict(f"snapshot {name}@{snapshot} already exists")
        if not self._is_dataset(name, self.path(name)):
            self._check_creatable(name)  # refuse early what could not become a dataset
        work = self._work_path("receive", action)
        made: list[Path] = []
        try:
            try:
                work.mkdir()
            except OSError as exc:
                raise os_failure(exc, self.root, action) from exc
            received = self._receive_into(work, inp, action)
            made = self._make_parent(dst, action)
            self._land_received(received, dst, action)
        except BaseException:
            self._undo_parents(made)
            raise
        finally:
            self._remove_tree(work)
        if not self._is_dataset(name, self.path(name)):
            try:
                self.fork(name, name, snapshot=snapshot)
            except BaseException:
                self._remove_tree(dst)
                self._undo_parents(made)
                raise
        return self._describe_snapshot(name, snapshot, dst)

    # -- pool -----------------------------------------------------------------------------------
    def usage(self) -> PoolUsage:
        try:
            st = os.statvfs(self.root)
        except OSError as exc:
            raise os_failure(exc, self.root, f"read the usage of the pool at {self.root}") from exc
        size = st.f_blocks * st.f_frsize
        free = st.f_bavail * st.f_frsize
        return PoolUsage(driver=self.name, path=self.root, size=size, used=size - free, free=free,
                         capabilities=self.capabilities)


def remove_plain_tree(path: Path) -> None:
    """rm -rf that tolerates a missing path (for the directory drivers' trees)."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except NotADirectoryError:
        path.unlink(missing_ok=True)
