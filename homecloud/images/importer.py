"""`hc image import NAME PATH`: a root file system from a tarball or a directory, or a VM disk.

Tarballs are extracted by homecloud.images.extract (safe, member by member); directories are
copied by one ``cp -a --reflink=auto`` (owners, modes, xattrs, symlinks, hardlinks, devices; on
btrfs the data is shared, not copied). Either way the image is written into a partial dataset and
published only when complete (homecloud.images.publish): on any failure nothing is left.
A qcow2 or raw disk becomes a VM image (homecloud.images.diskimport).
"""

from __future__ import annotations

import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from homecloud.errors import UserError
from homecloud.images.archive import HEAD_SIZE, Compression, detect_compression, open_decompressed
from homecloud.images.diskformat import PARTITION_TABLE_BYTES
from homecloud.images.diskimport import import_disk, inspect_disk, sniff_disk
from homecloud.images.extract import extract_tar
from homecloud.images.members import UnsafeMember
from homecloud.images.progress import Progress, ProgressCallback, ignore_progress
from homecloud.images.publish import out_of_space, publish_image
from homecloud.images.tools import mentions_full_disk
from homecloud.names import validate_name
from homecloud.storage.base import Dataset, StorageDriver
from homecloud.tools import follow_tool, require_tool

FORMATS = ".tar, .tar.gz, .tar.xz, .tar.zst or .tar.bz2"
DISK_FORMATS = "qcow2, or raw with a partition table"
_MIN_STEP = 64 << 10  # report progress at most every 64 KiB read...
_STEPS = 200  # ...and at most this many times


@dataclass
class _Meter:
    """Turns a growing count into throttled Progress reports."""

    progress: ProgressCallback
    phase: str
    total: int
    message: str
    step: int = 1
    _reported: int = field(default=-1, init=False)

    def update(self, done: int) -> None:
        done = min(done, self.total)
        due = self._reported < 0 or done - self._reported >= self.step or done == self.total
        if due and done != self._reported:
            self.progress(Progress(self.phase, done, self.total, self.message))
            self._reported = done


def inspect_source(source: Path) -> Compression | str | None:
    """The tarball's compression, "qcow2" or "raw" for a VM disk, or None for a directory;
    UserError for anything else."""
    try:
        mode = os.stat(source).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(f"no such file or directory: {source}") from None
    except PermissionError:
        raise UserError(f"cannot read {source}: permission denied") from None
    if stat.S_ISDIR(mode):
        return None
    compression = None
    if stat.S_ISREG(mode):
        with open(source, "rb") as file:
            head = file.read(max(HEAD_SIZE, PARTITION_TABLE_BYTES))
        compression = detect_compression(head[:HEAD_SIZE])
        if compression is None:
            return sniff_disk(source, head) or _not_an_image(source)
    if compression is None:
        _not_an_image(source)
    return compression


def _not_an_image(source: Path) -> NoReturn:
    raise UserError(f"{source} is neither a directory nor a tarball ({FORMATS}) nor a VM disk "
                    f"({DISK_FORMATS})")


def _extract_tarball(source: Path, compression: Compression, root: Path,
                     progress: ProgressCallback) -> None:
    with open(source, "rb", buffering=0) as raw:
        fd = raw.fileno()
        total = os.fstat(fd).st_size
        meter = _Meter(progress, "extract", total, f"extracting {source.name}",
                       step=max(total // _STEPS, _MIN_STEP))
        meter.update(0)
        try:
            # Progress is how far the source file has been read: its offset, shared with zstd.
            with open_decompressed(raw, compression) as stream:
                extract_tar(stream, root, lambda: meter.update(os.lseek(fd, 0, os.SEEK_CUR)))
        except UnsafeMember as exc:
            raise UserError(f"refusing to import {source}: {exc.message}") from exc
        except tarfile.TarError as exc:
            raise UserError(f"{source} is not a valid tarball (truncated or corrupt): "
                            f"{exc}") from exc
        meter.update(total)


def _count_entries(directory: Path) -> int:
    count = 1
    for _, dirs, files in os.walk(directory):
        count += len(dirs) + len(files)
    return count


def _copy_directory(source: Path, root: Path, progress: ProgressCallback) -> None:
    cp = require_tool("cp", "coreutils")
    progress(Progress("scan", 0, None, f"counting files in {source}"))
    total = _count_entries(source)
    meter = _Meter(progress, "copy", total, f"copying {source}", step=max(total // _STEPS, 1))
    copied = 0

    def on_line(_: str) -> None:  # `cp -v` prints one line per file copied
        nonlocal copied
        copied += 1
        meter.update(copied)

    result = follow_tool([cp, "-a", "-v", "--reflink=auto", "--", f"{source}/.", f"{root}/"],
                      on_line)
    if result.returncode != 0:
        if mentions_full_disk(result.tail):
            raise out_of_space(f"copying {source}")
        errors = [line for line in result.tail if line.startswith("cp:")]
        raise UserError(f"copying {source} failed: "
                        f"{errors[-1] if errors else f'cp exited with {result.returncode}'}")
    meter.update(total)


def import_image(pool: StorageDriver, name: str, source: Path,
                 progress: ProgressCallback = ignore_progress) -> Dataset:
    """Import ``source`` (a directory, a tarball or a VM disk) as the read-only image
    ``images/<name>``.

    Synchronous; the agent runs it in a worker thread. Raises UserError for a bad name or source,
    Conflict if the image exists, PoolFull if it does not fit; nothing is left behind on failure
    (a progress callback that raises cancels the import the same way).
    """
    validate_name(name, "image name")
    compression = inspect_source(source)
    if isinstance(compression, str):
        return import_disk(pool, name, inspect_disk(source, compression), progress)

    def fill(dataset: Dataset) -> None:
        if compression is None:
            _copy_directory(source, dataset.path, progress)
        else:
            _extract_tarball(source, compression, dataset.path, progress)

    return publish_image(pool, name, fill, action="import")
