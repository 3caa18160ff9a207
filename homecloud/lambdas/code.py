"""A lambda's code in the pool: each deployment a read-only dataset of its own
(lambdas/NAME.VERSION), written whole before the record points at it, so no request ever runs
a half-written lambda."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from homecloud.errors import UserError
from homecloud.lambdas import DATASET_PREFIX
from homecloud.storage.base import StorageDriver

MAX_CODE = 256 << 20  # bytes of code one lambda may deploy


def dataset_name(name: str, version: int) -> str:
    return f"{DATASET_PREFIX}/{name}.{version}"


def versions(pool: StorageDriver, name: str) -> list[int]:
    """The versions of ``name``'s code in the pool."""
    prefix = f"{DATASET_PREFIX}/{name}."
    return sorted(int(d.name[len(prefix):]) for d in pool.list(DATASET_PREFIX)
                  if d.name.startswith(prefix) and d.name[len(prefix):].isdigit())


def serving_version(pool: StorageDriver, name: str) -> int:
    """The version that serves: the newest in the pool (older ones are kept only while a
    deployment switches over); 0 if there is none."""
    return max([0, *versions(pool, name)])


def _executable(path: Path) -> bool:
    mode = path.lstat().st_mode
    return stat.S_ISREG(mode) and bool(mode & 0o111)


def entry_of(source: Path) -> str:
    """The file a request runs: ``source`` itself, or the one executable at the top of the
    folder ``source``. One clear error otherwise."""
    if not source.is_absolute():
        raise UserError(f"path {str(source)!r} must be absolute (the agent reads it on the host)")
    if not source.exists():
        raise UserError(f"{source}: no such file or folder")
    if source.is_dir():
        found = sorted(p.name for p in source.iterdir() if _executable(p))
        if len(found) != 1:
            what = "no executable file" if not found else f"{len(found)} executables"
            raise UserError(f"{source} has {what} at its top; a lambda folder has exactly one "
                            "(chmod +x it)")
        return found[0]
    if not _executable(source):
        raise UserError(f"{source} is not executable: `chmod +x {source}` (a script needs a "
                        "#! line)")
    return source.name


def _size(source: Path) -> int:
    if source.is_file():
        return source.stat().st_size
    return sum(p.lstat().st_size for p in source.rglob("*"))


def store_code(pool: StorageDriver, name: str, version: int, source: Path) -> Path:
    """Copy ``source`` into a new read-only dataset; its path. Nothing is left on failure."""
    if _size(source) > MAX_CODE:
        raise UserError(f"{source} is over {MAX_CODE >> 20} MiB: a lambda's code must be "
                        "smaller")
    target = dataset_name(name, version)
    path = pool.create(target).path
    try:
        if source.is_dir():
            shutil.copytree(source, path, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(source, path / source.name)
        # Readable by the dynamic user each request runs as; nobody may write.
        for root, dirs, files in os.walk(path):
            for entry in dirs + files:
                item = Path(root) / entry
                if not item.is_symlink():
                    mode = item.lstat().st_mode
                    extra = 0o555 if stat.S_ISDIR(mode) or mode & 0o111 else 0o444
                    os.chmod(item, extra)
        os.chmod(path, 0o555)
        pool.set_readonly(target, True)
    except BaseException:
        pool.destroy(target)
        raise
    return path


def remove_code(pool: StorageDriver, name: str, keep: tuple[int, ...] = ()) -> None:
    """Every version of ``name``'s code but ``keep``."""
    for version in versions(pool, name):
        if version not in keep:
            pool.destroy(dataset_name(name, version))
