"""The btrfs driver: datasets are subvolumes, snapshots read-only subvolumes.

Everything on the hot path (create, fork, snapshot, get, list, destroy) is an ioctl through
btrfsutil: a subprocess would cost more than the snapshot itself. Only send and receive run
``btrfs``, whose stream format has no library.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

import btrfsutil

from homecloud.errors import NotFound, PoolFull, UserError
from homecloud.storage.base import Capabilities, Dataset, Snapshot, Volume
from homecloud.storage.failures import os_failure, tool_failure
from homecloud.storage.tree import RESERVED, TreeDriver
from homecloud.tools import pipe_tool

# A subvolume's root directory always has this inode number (BTRFS_FIRST_FREE_OBJECTID).
SUBVOLUME_INODE = 256
SUBVOL_RDONLY = 1  # BTRFS_ROOT_SUBVOL_RDONLY in SubvolumeInfo.flags
CLEANER_TIMEOUT = 60.0

T = TypeVar("T")


def is_subvolume(path: Path) -> bool:
    """Like btrfsutil.is_subvolume, but False (not an exception) for a missing path."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return st.st_ino == SUBVOLUME_INODE and stat.S_ISDIR(st.st_mode)


class BtrfsDriver(TreeDriver):
    name = "btrfs"
    capabilities = Capabilities(fast_fork=True, send_receive=True, incremental_send=True,
                                block_volumes=True, enforced_readonly=True)

    def _call(self, action: str, fn: Callable[[], T], *, missing: str | None = None,
              exists: str | None = None) -> T:
        try:
            return fn()
        except OSError as exc:
            raise os_failure(exc, self.root, action, missing=missing, exists=exists) from exc

    # -- primitives ---------------------------------------------------------------------------
    def _is_dataset(self, name: str, path: Path) -> bool:
        return is_subvolume(path)

    def _is_snapshot(self, path: Path) -> bool:
        return is_subvolume(path)

    def _make(self, name: str, path: Path) -> None:
        self._call(f"create dataset {name!r}", lambda: btrfsutil.create_subvolume(path),
                   exists=f"dataset {name!r} already exists")

    def _clone(self, src: Path, dst: Path, *, readonly: bool, action: str) -> None:
        self._call(action, lambda: btrfsutil.create_snapshot(src, dst, read_only=readonly),
                   missing=f"could not {action}: the source no longer exists",
                   exists=f"could not {action}: {dst} already exists")

    def _remove_tree(self, path: Path) -> None:
        if is_subvolume(path):
            self._delete_subvolume(path)
        elif path.is_dir():
            # A plain directory (a receive's work dir) that may hold subvolumes.
            for entry in os.scandir(path):
                self._remove_tree(Path(entry.path))
            path.rmdir()
        elif os.path.lexists(path):
            path.unlink()

    def _delete_subvolume(self, path: Path) -> None:
        action = f"remove {path}"
        try:
            btrfsutil.delete_subvolume(path, recursive=True)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return
            if exc.errno != errno.EROFS:
                raise os_failure(exc, self.root, action) from exc
            # Subvolumes nested in a read-only one (made by a workload) need it writable.
            self._call(action, lambda: btrfsutil.set_subvolume_read_only(path, False))
            self._call(action, lambda: btrfsutil.delete_subvolume(path, recursive=True))

    def _info(self, path: Path, missing: str) -> btrfsutil.SubvolumeInfo:
        try:
            return btrfsutil.subvolume_info(path)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EINVAL, errno.ENOTDIR):
                raise NotFound(missing) from exc
            raise os_failure(exc, self.root, f"read {path}") from exc

    def _describe(self, name: str, path: Path) -> Dataset:
        info = self._info(path, f"dataset {name!r} does not exist")
        return Dataset(name=name, path=path, readonly=bool(info.flags & SUBVOL_RDONLY),
                       created=info.otime)

    def _describe_snapshot(self, name: str, snapshot: str, path: Path) -> Snapshot:
        info = self._info(path, f"snapshot {name}@{snapshot} does not exist")
        return Snapshot(dataset=name, name=snapshot, path=path, created=info.otime,
                        order=info.otransid)

    def _readonly(self, path: Path) -> bool:
        return bool(self._call(f"read {path}", lambda: btrfsutil.get_subvolume_read_only(path)))

    def _set_readonly(self, path: Path, readonly: bool) -> None:
        self._call(f"change {path}", lambda: btrfsutil.set_subvolume_read_only(path, readonly))

    def _move(self, src: Path, dst: Path) -> None:
        # Moving a read-only subvolume to another directory rewrites its '..': the kernel
        # refuses (EROFS), so lift the flag for the move.
        if src.parent == dst.parent:
            super()._move(src, dst)
            return
        with self._readonly_lifted(src, moved_to=dst):
            super()._move(src, dst)

    def _swap(self, new: Path, path: Path) -> None:
        with self._readonly_lifted(path):  # both move directories, see _move
            super()._swap(new, path)

    @contextlib.contextmanager
    def _readonly_lifted(self, path: Path, *, moved_to: Path | None = None) -> Iterator[None]:
        """Make the subvolume at ``path`` writable for the body if it is read-only, and
        read-only again afterwards: at ``moved_to`` if the body moved it there."""
        readonly = self._readonly(path)
        if readonly:
            self._set_readonly(path, False)
        try:
            yield
        finally:
            if readonly:
                now = moved_to if moved_to is not None and is_subvolume(moved_to) else path
                self._set_readonly(now, True)

    # -- space ----------------------------------------------------------------------------------
    def _when_space_frees(self, operation: Callable[[], T]) -> T:
        """Run ``operation``; if the pool is full while destroyed subvolumes still await the
        cleaner (btrfs frees them in the background), wait for it and try once more, so
        `hc rm` followed by `hc run` does not fail on space that is about to be free."""
        try:
            return operation()
        except PoolFull:
            if not self._wait_for_cleaner():
                raise
        return operation()

    def _wait_for_cleaner(self) -> bool:
        """Wait (up to CLEANER_TIMEOUT) until no deleted subvolume awaits cleaning; return
        whether there was any."""
        try:
            pending = btrfsutil.deleted_subvolumes(self.root)
            if not pending:
                return False
            deadline = time.monotonic() + CLEANER_TIMEOUT
            while pending and time.monotonic() < deadline:
                btrfsutil.sync(self.root)  # commit, so the cleaner runs and space is counted
                time.sleep(0.1)
                pending = btrfsutil.deleted_subvolumes(self.root)
        except OSError:
            return False
        return True

    def create(self, name: str) -> Dataset:
        return self._when_space_frees(lambda: super(BtrfsDriver, self).create(name))

    def fork(self, source: str, target: str, *, readonly: bool = False,
             snapshot: str | None = None) -> Dataset:
        return self._when_space_frees(lambda: super(BtrfsDriver, self).fork(
            source, target, readonly=readonly, snapshot=snapshot))

    def snapshot(self, name: str, snapshot: str) -> Snapshot:
        return self._when_space_frees(lambda: super(BtrfsDriver, self).snapshot(name, snapshot))

    def create_volume(self, name: str, size: str | int) -> Volume:
        return self._when_space_frees(lambda: super(BtrfsDriver, self).create_volume(name, size))

    def resize_volume(self, name: str, size: str | int) -> Volume:
        return self._when_space_frees(lambda: super(BtrfsDriver, self).resize_volume(name, size))

    # -- datasets -------------------------------------------------------------------------------
    def list(self, prefix: str = "") -> list[Dataset]:
        if prefix:
            start = self.path(prefix)
            if is_subvolume(start):
                return [self._describe(prefix, start)]
            found = self._walk(start, prefix)
        else:
            found = self._walk(self.root, "")
        return sorted((self._describe(name, path) for name, path in found),
                      key=lambda dataset: dataset.name)

    def _walk(self, directory: Path, name: str) -> Iterator[tuple[str, Path]]:
        """Datasets at or under the group ``directory`` (named ``name``); groups are descended,
        datasets are not (what a workload nests inside its dataset is not a dataset)."""
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if not name and entry.name in RESERVED:
                continue
            if not entry.is_dir(follow_symlinks=False):
                continue
            child = f"{name}/{entry.name}" if name else entry.name
            path = Path(entry.path)
            if is_subvolume(path):
                yield child, path
            else:
                yield from self._walk(path, child)

    def set_readonly(self, name: str, readonly: bool) -> None:
        self._set_readonly(self._require(name), readonly)

    # -- streams --------------------------------------------------------------------------------
    def send(self, name: str, snapshot: str, out: BinaryIO, *, parent: str | None = None) -> None:
        path = self._require_snapshot(name, snapshot)
        argv = ["btrfs", "send", "-q"]
        if parent is not None:
            argv += ["-p", str(self._require_snapshot(name, parent))]
        result = pipe_tool([*argv, str(path)], out=out)
        if not result.ok:
            raise tool_failure(result.stderr, self.root, f"send {name}@{snapshot}")

    def _receive_into(self, work: Path, inp: BinaryIO, action: str) -> Path:
        # btrfs receive names the subvolume after the sender's snapshot, so it lands in a
        # private directory first.
        result = pipe_tool(["btrfs", "receive", "-q", str(work)], inp=inp)
        received = [Path(entry.path) for entry in os.scandir(work)]
        if not result.ok:
            hint = ("; receive its parent snapshot first" if "parent" in result.stderr else "")
            error = tool_failure(result.stderr, self.root, action, UserError)
            raise type(error)(error.message + hint)
        if len(received) != 1 or not is_subvolume(received[0]):
            raise UserError(f"could not {action}: the stream did not hold one btrfs snapshot")
        return received[0]

    def _land_received(self, received: Path, dst: Path, action: str) -> None:
        # A read-only subvolume cannot move to another directory; a read-only snapshot of it
        # can be made anywhere and keeps the received UUID that later incremental streams
        # look their parent up by.
        self._clone(received, dst, readonly=True, action=action)

