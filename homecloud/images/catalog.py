"""The images a host has: rows in the state database backed by read-only datasets.

Building and importing write the dataset (homecloud.images.recipes / importer); this module keeps
the record, refuses what would clash (a name in use, an image an instance still uses) and lists
what exists.
"""

from __future__ import annotations

import builtins
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from homecloud.errors import Conflict, NotFound
from homecloud.images.machineimage import machine_image_problem
from homecloud.images.vmimage import read_vm_image
from homecloud.names import validate_name
from homecloud.state.store import Schema, Store
from homecloud.storage.base import StorageDriver

IMAGE_PREFIX = "images"
SCHEMA = Schema("images", (
    """
    CREATE TABLE images (
        name        TEXT PRIMARY KEY,
        dataset     TEXT NOT NULL,
        source      TEXT NOT NULL,       -- 'build:debian/bookworm' or 'import:/path'
        created     REAL NOT NULL,
        size_bytes  INTEGER NOT NULL DEFAULT 0
    );
    """,
))


@dataclass(frozen=True)
class ImageInfo:
    name: str
    dataset: str
    source: str
    created: float
    size_bytes: int
    path: str
    vm: bool  # boots as a VM (its dataset holds vm.json), not as a container
    machines: list[str]  # the VM machine types it boots as ("microvm", "q35"); [] if not a VM
    bare_metal: bool = False  # a tree with its own kernel: `hc machine add` can install it


def image_dataset(name: str) -> str:
    return f"{IMAGE_PREFIX}/{name}"


def _tree_size(path: Path) -> int:
    """Apparent size of an image's files (shared extents are counted once per image)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for entry in path.rglob("*"):
        try:
            st = entry.lstat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        total += st.st_blocks * 512
    return total


class ImageCatalog:
    def __init__(self, store: Store, pool: StorageDriver) -> None:
        store.require(SCHEMA)
        self.store = store
        self.pool = pool

    def _info(self, row: Any) -> ImageInfo:
        path = self.pool.path(row["dataset"])
        vm = read_vm_image(path)
        return ImageInfo(name=row["name"], dataset=row["dataset"], source=row["source"],
                         created=row["created"], size_bytes=row["size_bytes"], path=str(path),
                         vm=vm is not None, machines=list(vm.machines) if vm else [],
                         bare_metal=vm is None and machine_image_problem(row["name"], path) is None)

    def list(self) -> list[ImageInfo]:
        rows = self.store.query("SELECT * FROM images ORDER BY name")
        return [self._info(row) for row in rows]

    def get(self, name: str) -> ImageInfo:
        validate_name(name, "image name")
        rows = self.store.query("SELECT * FROM images WHERE name = ?", (name,))
        if not rows:
            raise NotFound(f"no image named {name!r}; see `hc image ls`, or build one with "
                           f"`hc image build {name}`")
        return self._info(rows[0])

    def check_new_name(self, name: str) -> None:
        """Refuse a name that is invalid or already taken, before any work starts."""
        validate_name(name, "image name")
        taken = self.store.query("SELECT 1 FROM images WHERE name = ?", (name,))
        if taken or self.pool.exists(image_dataset(name)):
            raise Conflict(f"image {name!r} already exists; remove it first with "
                           f"`hc image rm {name}`")

    def record(self, name: str, source: str, created: float | None = None) -> ImageInfo:
        """Record a dataset published as ``images/<name>`` (``created``: when, if not now)."""
        dataset = image_dataset(name)
        size = _tree_size(self.pool.path(dataset))
        self.store.execute(
            "INSERT INTO images (name, dataset, source, created, size_bytes) VALUES (?,?,?,?,?)",
            (name, dataset, source, created or time.time(), size))
        return self.get(name)

    def users(self, name: str) -> builtins.list[str]:
        rows = self.store.query("SELECT name FROM instances WHERE image = ? ORDER BY name", (name,))
        return [row["name"] for row in rows]

    def remove(self, name: str) -> None:
        info = self.get(name)
        users = self.users(name)
        if users:
            raise Conflict(f"image {name!r} is in use by {', '.join(users)}; remove "
                           f"{'them' if len(users) > 1 else 'it'} first with `hc rm`")
        self.pool.destroy(info.dataset)
        self.store.execute("DELETE FROM images WHERE name = ?", (name,))
