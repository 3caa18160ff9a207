"""Block volumes kept as one sparse raw file, ``VOLUME_FILE``, inside their dataset.

Every driver whose datasets are file systems or directory trees (btrfs, zfs, reflink, copy)
keeps volumes this way, so forks, snapshots, renames and streams carry a volume like any other
file of its dataset (see volumes.py for why a raw sparse file).
"""

from __future__ import annotations

import os

from homecloud.errors import NotFound, UserError
from homecloud.sizes import format_size
from homecloud.storage.base import StorageDriver, Volume
from homecloud.storage.failures import free_bytes, os_failure, pool_full
from homecloud.storage.volumes import (
    VOLUME_FILE,
    check_growth,
    grow_volume_file,
    make_volume_file,
    volume_size,
)


class FileVolumeDriver(StorageDriver):
    """Volumes on top of a driver's datasets: create, describe and grow the volume file."""

    def create_volume(self, name: str, size: str | int) -> Volume:
        self.path(name)  # a bad name is the first thing to say
        nbytes = volume_size(size)
        action = f"create volume {name!r} of {format_size(nbytes)}"
        self._check_room(nbytes, action)
        self.create(name)
        try:
            try:
                make_volume_file(self.path(name) / VOLUME_FILE, nbytes)
            except OSError as exc:
                raise os_failure(exc, self.root, action) from exc
        except BaseException:
            self.destroy(name)
            raise
        return self.volume(name)

    def volume(self, name: str) -> Volume:
        path = self.get(name).path / VOLUME_FILE
        try:
            st = path.stat()
        except FileNotFoundError:
            raise NotFound(f"dataset {name!r} holds no volume") from None
        except OSError as exc:
            raise os_failure(exc, self.root, f"read volume {name!r}") from exc
        return Volume(dataset=name, path=path, size=st.st_size, allocated=self._allocated(st))

    def _allocated(self, st: os.stat_result) -> int:
        """Bytes the pool holds for a volume file with this stat."""
        return st.st_blocks * 512

    def resize_volume(self, name: str, size: str | int) -> Volume:
        nbytes = volume_size(size)
        current = self.volume(name)
        check_growth(name, current.size, nbytes)
        if nbytes == current.size:
            return current
        if self.get(name).readonly:
            raise UserError(f"cannot grow volume {name!r}: its dataset is read-only; make it "
                            "writable first")
        action = f"grow volume {name!r} to {format_size(nbytes)}"
        self._check_room(nbytes - current.size, action)
        try:
            grow_volume_file(current.path, nbytes)
        except OSError as exc:
            raise os_failure(exc, self.root, action) from exc
        return self.volume(name)

    def _check_room(self, added: int, action: str) -> None:
        """Refuse volume capacity the pool could never hold: a guest that fills its disk past
        the pool's free space would meet write errors it cannot explain. Volumes stay sparse,
        so several may together promise more than is free."""
        if added > free_bytes(self.root):
            raise pool_full(self.root, action)
