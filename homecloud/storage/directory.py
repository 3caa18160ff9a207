"""Drivers whose datasets are plain directories, cloned by ``cp``: reflink and copy.

What btrfs keeps in the subvolume (read-only flag, creation time) lives here in a small JSON
file per dataset, ``.meta/<dataset>.json``, written before the tree is made: a dataset exists
exactly when its metadata does, so a fork that crashed halfway is still a dataset that
``destroy`` removes. A snapshot's creation time is the modification time of its top directory,
set when it is made (tar carries it along on send/receive).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, ClassVar

from homecloud.errors import Conflict, UserError
from homecloud.storage.base import Dataset, Snapshot
from homecloud.storage.failures import os_failure, tool_failure
from homecloud.storage.fsutil import rename_noreplace
from homecloud.storage.tree import META_DIR, TreeDriver, remove_plain_tree, split_name
from homecloud.tools import pipe_tool, run_tool

META_SUFFIX = ".json"
# Keep ownership, modes, xattrs and ACLs of a root file system across send/receive.
TAR_OPTIONS = ("--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls")


class DirectoryDriver(TreeDriver):
    """Datasets as directories; subclasses say how ``cp`` clones a tree."""

    copy_command: ClassVar[tuple[str, ...]]

    # -- metadata -------------------------------------------------------------------------------
    def _meta_path(self, name: str) -> Path:
        *groups, leaf = split_name(name)
        return self.root.joinpath(META_DIR, *groups, leaf + META_SUFFIX)

    def _read_meta(self, name: str) -> dict[str, object]:
        try:
            data = json.loads(self._meta_path(name).read_text() or "{}")
        except FileNotFoundError:
            return {}
        except ValueError:
            data = {}  # a claim interrupted before its first write: defaults
        return data if isinstance(data, dict) else {}

    def _write_meta(self, name: str, data: dict[str, object], action: str) -> None:
        path = self._meta_path(name)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.write_text(json.dumps(data))
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise os_failure(exc, self.root, action) from exc

    def _claim(self, name: str, readonly: bool) -> None:
        path = self._meta_path(name)
        action = f"create dataset {name!r}"
        for attempt in (1, 2):
            self._make_parent(path, action)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                break
            except FileExistsError as exc:
                raise Conflict(f"dataset {name!r} already exists") from exc
            except FileNotFoundError:
                # A concurrent _release pruned the group directory between mkdir and open.
                if attempt == 2:
                    raise
            except OSError as exc:
                self._prune_meta(path)
                raise os_failure(exc, self.root, action) from exc
        try:
            with os.fdopen(fd, "w") as meta:
                json.dump({"readonly": readonly, "created": time.time()}, meta)
        except OSError as exc:
            self._release(name)
            raise os_failure(exc, self.root, action) from exc

    def _release(self, name: str) -> None:
        path = self._meta_path(name)
        path.unlink(missing_ok=True)
        self._prune_meta(path)

    def _prune_meta(self, path: Path) -> None:
        """Remove the group directories above ``path`` in .meta that are now empty."""
        top = self.root / META_DIR
        for directory in path.parents:
            if directory == top:
                return
            try:
                directory.rmdir()
            except OSError:
                return

    def _moved(self, old: str, new: str) -> None:
        dst = self._meta_path(new)
        self._make_parent(dst, f"rename dataset {old!r} to {new!r}")
        rename_noreplace(self._meta_path(old), dst)

    # -- primitives -----------------------------------------------------------------------------
    def _is_dataset(self, name: str, path: Path) -> bool:
        return self._meta_path(name).exists()

    def _is_snapshot(self, path: Path) -> bool:
        return path.is_dir() and not path.is_symlink()

    def _make(self, name: str, path: Path) -> None:
        try:
            path.mkdir()
        except OSError as exc:
            raise os_failure(exc, self.root, f"create dataset {name!r}") from exc

    def _clone(self, src: Path, dst: Path, *, readonly: bool, action: str) -> None:
        # readonly is recorded in the metadata by _claim; the tree itself stays writable.
        result = run_tool([*self.copy_command, "--no-target-directory", str(src), str(dst)])
        if not result.ok:
            remove_plain_tree(dst)
            raise tool_failure(result.stderr, self.root, action)

    def _remove_tree(self, path: Path) -> None:
        try:
            remove_plain_tree(path)
        except OSError as exc:
            raise os_failure(exc, self.root, f"remove {path}") from exc

    def _snapshot_made(self, path: Path) -> None:
        os.utime(path)  # cp -a kept the dataset's mtime; the snapshot's is its creation time

    def _describe(self, name: str, path: Path) -> Dataset:
        meta = self._read_meta(name)
        created = meta.get("created")
        return Dataset(name=name, path=path, readonly=bool(meta.get("readonly", False)),
                       created=float(created) if isinstance(created, int | float) else 0.0)

    def _describe_snapshot(self, name: str, snapshot: str, path: Path) -> Snapshot:
        # No transaction numbers here: nanoseconds of the creation time order them.
        made = path.stat()
        return Snapshot(dataset=name, name=snapshot, path=path, created=made.st_mtime,
                        order=made.st_mtime_ns)

    # -- datasets -------------------------------------------------------------------------------
    def list(self, prefix: str = "") -> list[Dataset]:
        if prefix and self._is_dataset(prefix, self.path(prefix)):
            return [self.get(prefix)]
        top = self.root.joinpath(META_DIR, *split_name(prefix)) if prefix else self.root / META_DIR
        names = sorted(self._walk_meta(top, prefix))
        return [self._describe(name, self.path(name)) for name in names]

    def _walk_meta(self, directory: Path, name: str) -> Iterator[str]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            child = f"{name}/{entry.name}" if name else entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk_meta(Path(entry.path), child)
            elif entry.name.endswith(META_SUFFIX) and not entry.name.endswith(".tmp"):
                yield child[: -len(META_SUFFIX)]

    def set_readonly(self, name: str, readonly: bool) -> None:
        self._require(name)
        self._write_meta(name, {**self._read_meta(name), "readonly": readonly},
                         f"change dataset {name!r}")

    # -- streams --------------------------------------------------------------------------------
    def send(self, name: str, snapshot: str, out: BinaryIO, *, parent: str | None = None) -> None:
        path = self._require_snapshot(name, snapshot)
        if parent is not None and not self.capabilities.incremental_send:
            raise UserError(f"incremental send needs the btrfs or zfs driver; this pool uses "
                            f"{self.name}: send {name}@{snapshot} in full instead")
        result = pipe_tool(["tar", "-C", str(path), "--create", "--file=-", "--sparse",
                            *TAR_OPTIONS, "."], out=out)
        if not result.ok:
            raise tool_failure(result.stderr, self.root, f"send {name}@{snapshot}")

    def _receive_into(self, work: Path, inp: BinaryIO, action: str) -> Path:
        tree = work / "tree"
        tree.mkdir()
        result = pipe_tool(["tar", "-C", str(tree), "--extract", "--file=-",
                            "--same-owner", "--same-permissions", *TAR_OPTIONS], inp=inp)
        if not result.ok:
            raise tool_failure(result.stderr, self.root, action, UserError)
        return tree

    def _land_received(self, received: Path, dst: Path, action: str) -> None:
        try:
            rename_noreplace(received, dst)
        except OSError as exc:
            raise os_failure(exc, self.root, action,
                             exists=f"snapshot {dst.name} already exists") from exc

