"""The same tests against every storage driver, each on its own real file system:
btrfs (loop file), reflink (XFS with reflink=1 on a loop file) and copy (a plain directory, or a
tmpfs for the full-pool test). Tests of what every dataset does run twice: with the data as
files in the dataset, and as blocks in a volume (a VM's disk) the dataset holds."""

from __future__ import annotations

import errno
import io
import os
import time
from pathlib import Path

import pytest

from homecloud.errors import Conflict, NotFound, PoolFull, UserError
from homecloud.storage.base import Dataset, StorageDriver
from homecloud.storage.volumes import VOLUME_FILE

pytestmark = pytest.mark.system

BAD_NAMES = ["", "..", "/", "/etc", "a/../b", "a//b", "a/", ".", "a/.", "x y", ".snapshots",
             ".meta/x", ".work"]
BAD_SNAPSHOT_NAMES = ["", "..", ".", "a/b", "/s", "s p"]


def pool_tree(root: Path) -> list[str]:
    """Everything under the pool root, except empty bookkeeping directories (.work etc.)."""
    found = []
    for directory, dirs, files in os.walk(root):
        rel = Path(directory).relative_to(root)
        for name in files:
            found.append(str(rel / name))
        for name in dirs:
            path = Path(directory, name)
            if not (rel == Path(".") and name.startswith(".") and not any(path.iterdir())):
                found.append(str(rel / name) + "/")
    return sorted(found)


def names(datasets: list) -> list[str]:
    return [dataset.name for dataset in datasets]


def write(driver: StorageDriver, dataset: str, rel: str, text: str) -> None:
    path = driver.path(dataset) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def read(driver: StorageDriver, dataset: str, rel: str) -> str:
    return (driver.path(dataset) / rel).read_text()


class Files:
    """Test data as files in a dataset's tree (or a snapshot's)."""

    def make(self, pool: StorageDriver, name: str) -> Dataset:
        return pool.create(name)

    def write_tree(self, tree: Path, rel: str, text: str) -> None:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)

    def read_tree(self, tree: Path, rel: str) -> str:
        return (tree / rel).read_text()

    def has_tree(self, tree: Path, rel: str) -> bool:
        return (tree / rel).exists()

    def write(self, pool: StorageDriver, dataset: str, rel: str, text: str) -> None:
        self.write_tree(pool.path(dataset), rel, text)

    def read(self, pool: StorageDriver, dataset: str, rel: str) -> str:
        return self.read_tree(pool.path(dataset), rel)


class VolumeBlocks(Files):
    """Test data as records in the volume a dataset holds: a slot of the volume per name,
    holding the text's length and the text (an empty slot is a missing name)."""

    SIZE = 16 << 20
    SLOT = 512 << 10

    def __init__(self) -> None:
        self.slots: dict[str, int] = {}

    def make(self, pool: StorageDriver, name: str) -> Dataset:
        pool.create_volume(name, self.SIZE)
        return pool.get(name)

    def _offset(self, rel: str) -> int:
        offset = self.slots.setdefault(rel, len(self.slots)) * self.SLOT
        assert offset + self.SLOT <= self.SIZE, "more names than the test volume has slots"
        return offset

    def write_tree(self, tree: Path, rel: str, text: str) -> None:
        data = text.encode()
        assert len(data) + 4 <= self.SLOT
        with (tree / VOLUME_FILE).open("r+b") as volume:
            volume.seek(self._offset(rel))
            volume.write(len(data).to_bytes(4, "big") + data)

    def read_tree(self, tree: Path, rel: str) -> str:
        with (tree / VOLUME_FILE).open("rb") as volume:
            volume.seek(self._offset(rel))
            length = int.from_bytes(volume.read(4), "big")
            if not length:
                raise FileNotFoundError(f"{rel} is not in the volume")
            return volume.read(length).decode()

    def has_tree(self, tree: Path, rel: str) -> bool:
        try:
            self.read_tree(tree, rel)
        except FileNotFoundError:
            return False
        return True


@pytest.fixture(params=["files", "volume"])
def layout(request: pytest.FixtureRequest) -> Files:
    """Where a test keeps its data: files in the dataset, or a volume in it."""
    return Files() if request.param == "files" else VolumeBlocks()


# -- datasets ---------------------------------------------------------------------------------
def test_create_get_list_destroy(pool: StorageDriver, layout: Files) -> None:
    before = time.time()
    created = layout.make(pool, "images/debian")
    assert created.name == "images/debian"
    assert created.path == pool.root / "images" / "debian" and created.path.is_dir()
    assert not created.readonly
    assert before - 2 <= created.created <= time.time() + 2
    assert pool.get("images/debian") == created
    layout.make(pool, "instances/web")
    layout.make(pool, "top")
    assert names(pool.list()) == ["images/debian", "instances/web", "top"]
    assert names(pool.list("images")) == ["images/debian"]
    assert names(pool.list("images/debian")) == ["images/debian"]
    assert pool.list("nothing") == []
    assert pool.exists("top") and not pool.exists("images")

    pool.destroy("images/debian")
    assert not created.path.exists()
    with pytest.raises(NotFound, match="dataset 'images/debian' does not exist"):
        pool.get("images/debian")
    assert names(pool.list()) == ["instances/web", "top"]


def test_create_existing_is_a_conflict(pool: StorageDriver, layout: Files) -> None:
    layout.make(pool, "a")
    layout.write(pool, "a", "f", "kept")
    with pytest.raises(Conflict, match="dataset 'a' already exists"):
        layout.make(pool, "a")
    assert layout.read(pool, "a", "f") == "kept"


def test_datasets_do_not_nest(pool: StorageDriver, layout: Files) -> None:
    layout.make(pool, "a")
    layout.make(pool, "g/x")
    tree = pool_tree(pool.root)
    with pytest.raises(Conflict, match="inside dataset 'a'"):
        layout.make(pool, "a/b")
    with pytest.raises(Conflict, match="inside dataset 'a'"):
        pool.fork("g/x", "a/b/c")
    with pytest.raises(Conflict, match="is in the way"):
        layout.make(pool, "g")
    assert pool_tree(pool.root) == tree


def test_fork_is_an_independent_copy(pool: StorageDriver) -> None:
    pool.create("images/base")
    write(pool, "images/base", "etc/hostname", "base")
    os.symlink("hostname", pool.path("images/base") / "etc" / "link")
    os.chown(pool.path("images/base") / "etc" / "hostname", 1234, 5678)
    pool.set_readonly("images/base", True)

    fork = pool.fork("images/base", "instances/web")
    assert fork.name == "instances/web" and not fork.readonly
    assert read(pool, "instances/web", "etc/hostname") == "base"
    st = (fork.path / "etc" / "hostname").stat()
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert os.readlink(fork.path / "etc" / "link") == "hostname"
    write(pool, "instances/web", "etc/hostname", "web")  # writable although the image is not
    assert read(pool, "images/base", "etc/hostname") == "base"

    frozen = pool.fork("images/base", "images/copy", readonly=True)
    assert frozen.readonly and pool.get("images/copy").readonly


def test_fork_of_missing_source_creates_nothing(pool: StorageDriver, layout: Files) -> None:
    layout.make(pool, "a")
    tree = pool_tree(pool.root)
    with pytest.raises(NotFound, match="dataset 'nope' does not exist"):
        pool.fork("nope", "instances/x")
    with pytest.raises(NotFound, match="snapshot a@nope does not exist"):
        pool.fork("a", "instances/x", snapshot="nope")
    with pytest.raises(Conflict, match="dataset 'a' already exists"):
        pool.fork("a", "a")
    assert pool_tree(pool.root) == tree


def test_set_readonly(pool: StorageDriver, layout: Files) -> None:
    layout.make(pool, "a")
    pool.set_readonly("a", True)
    assert pool.get("a").readonly
    pool.set_readonly("a", False)
    assert not pool.get("a").readonly
    with pytest.raises(NotFound):
        pool.set_readonly("missing", True)


def test_rename_moves_snapshots_and_keeps_flags(pool: StorageDriver, layout: Files) -> None:
    layout.make(pool, "images/old")
    layout.write(pool, "images/old", "f", "v1")
    pool.snapshot("images/old", "s1")
    pool.set_readonly("images/old", True)

    renamed = pool.rename("images/old", "archive/new")
    assert renamed.name == "archive/new" and renamed.readonly
    assert layout.read(pool, "archive/new", "f") == "v1"
    assert not pool.exists("images/old")
    assert [snap.name for snap in pool.snapshots("archive/new")] == ["s1"]
    assert names(pool.list()) == ["archive/new"]

    layout.make(pool, "other")
    with pytest.raises(Conflict, match="dataset 'other' already exists"):
        pool.rename("archive/new", "other")
    with pytest.raises(NotFound):
        pool.rename("missing", "x")
    with pytest.raises(Conflict, match="datasets do not nest"):
        pool.rename("archive/new", "archive/new/inner")
    assert pool.get("archive/new").readonly


def test_destroy_missing_is_not_an_error(pool: StorageDriver, layout: Files) -> None:
    pool.destroy("never/existed")
    pool.destroy_snapshot("never", "existed")
    layout.make(pool, "a")
    pool.destroy_snapshot("a", "nope")
    assert names(pool.list()) == ["a"]


def test_destroy_removes_snapshots_and_readonly_datasets(pool: StorageDriver,
                                                         layout: Files) -> None:
    layout.make(pool, "images/a")
    layout.write(pool, "images/a", "f", "x")
    pool.snapshot("images/a", "s1")
    pool.snapshot("images/a", "s2")
    pool.set_readonly("images/a", True)
    pool.destroy("images/a")
    assert pool.list() == []
    assert not any(p for p in pool_tree(pool.root) if not p.endswith("/"))
    layout.make(pool, "images/a")  # the name is free again, with no old snapshots
    assert pool.snapshots("images/a") == []


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_dataset_names_are_refused(pool: StorageDriver, bad: str) -> None:
    pool.create("good")
    tree = pool_tree(pool.root)
    calls = [lambda: pool.create(bad), lambda: pool.fork("good", bad),
             lambda: pool.rename("good", bad), lambda: pool.fork(bad, "other"),
             lambda: pool.snapshot(bad, "s"), lambda: pool.destroy(bad),
             lambda: pool.receive(bad, "s", io.BytesIO(b""))]
    for call in calls:
        with pytest.raises(UserError, match="invalid dataset name"):
            call()
    assert pool_tree(pool.root) == tree


@pytest.mark.parametrize("bad", BAD_SNAPSHOT_NAMES)
def test_bad_snapshot_names_are_refused(pool: StorageDriver, bad: str) -> None:
    pool.create("good")
    tree = pool_tree(pool.root)
    for call in (lambda: pool.snapshot("good", bad), lambda: pool.rollback("good", bad),
                 lambda: pool.fork("good", "x", snapshot=bad),
                 lambda: pool.receive("good", bad, io.BytesIO(b""))):
        with pytest.raises(UserError, match="invalid snapshot name"):
            call()
    assert pool_tree(pool.root) == tree


# -- snapshots --------------------------------------------------------------------------------
def test_snapshot_rollback_destroy(pool: StorageDriver, layout: Files) -> None:
    layout.make(pool, "web")
    layout.write(pool, "web", "f", "v1")
    before = time.time()
    snap = pool.snapshot("web", "s1")
    assert (snap.dataset, snap.name) == ("web", "s1")
    assert before - 2 <= snap.created <= time.time() + 2
    assert snap.path is not None and layout.read_tree(snap.path, "f") == "v1"
    layout.write(pool, "web", "f", "v2")
    layout.write(pool, "web", "new", "x")
    pool.snapshot("web", "s2")
    assert [s.name for s in pool.snapshots("web")] == ["s1", "s2"]
    with pytest.raises(Conflict, match="snapshot web@s1 already exists"):
        pool.snapshot("web", "s1")

    pool.set_readonly("web", True)
    pool.rollback("web", "s1")
    assert layout.read(pool, "web", "f") == "v1"
    assert not layout.has_tree(pool.path("web"), "new")
    assert pool.get("web").readonly  # a rollback keeps the flag
    assert [s.name for s in pool.snapshots("web")] == ["s1", "s2"]
    pool.rollback("web", "s2")
    assert layout.read(pool, "web", "new") == "x"

    fork = pool.fork("web", "from-snap", snapshot="s1")
    assert layout.read_tree(fork.path, "f") == "v1" and not fork.readonly

    pool.destroy_snapshot("web", "s1")
    assert [s.name for s in pool.snapshots("web")] == ["s2"]
    with pytest.raises(NotFound, match="snapshot web@s1 does not exist"):
        pool.rollback("web", "s1")
    with pytest.raises(NotFound, match="dataset 'nope' does not exist"):
        pool.snapshot("nope", "s")
    with pytest.raises(NotFound, match="dataset 'nope' does not exist"):
        pool.snapshots("nope")
    assert names(pool.list()) == ["from-snap", "web"]  # no trace of the rollbacks


def test_snapshots_list_in_the_order_they_were_made(pool: StorageDriver) -> None:
    """Whatever their names and however close together: the one made last is listed last
    (creation times are whole seconds on btrfs and ZFS, and follow the clock backwards)."""
    pool.create("web")
    for name in ("zz", "mm", "aa", "b0"):
        pool.snapshot("web", name)
    listed = pool.snapshots("web")
    assert [s.name for s in listed] == ["zz", "mm", "aa", "b0"]
    assert [s.order for s in listed] == sorted(s.order for s in listed)


# -- streams ----------------------------------------------------------------------------------
def test_send_receive_round_trip(pool: StorageDriver, tmp_path: Path) -> None:
    pool.create("images/src")
    write(pool, "images/src", "etc/os-release", "ID=test")
    os.chown(pool.path("images/src") / "etc" / "os-release", 42, 43)
    pool.snapshot("images/src", "s1")

    stream = tmp_path / "s1.stream"
    with stream.open("wb") as out:
        pool.send("images/src", "s1", out)
    assert stream.stat().st_size > 0

    with stream.open("rb") as inp:
        received = pool.receive("copies/src", "r1", inp)
    assert (received.dataset, received.name) == ("copies/src", "r1")
    copy = pool.get("copies/src")
    assert not copy.readonly
    assert read(pool, "copies/src", "etc/os-release") == "ID=test"
    assert (copy.path / "etc" / "os-release").stat().st_uid == 42
    write(pool, "copies/src", "etc/os-release", "changed")  # writable
    assert [s.name for s in pool.snapshots("copies/src")] == ["r1"]

    # A second receive into an existing dataset adds the snapshot, leaving the dataset alone.
    buffer = io.BytesIO()
    pool.send("images/src", "s1", buffer)
    buffer.seek(0)
    pool.receive("copies/src", "r2", buffer)
    assert read(pool, "copies/src", "etc/os-release") == "changed"
    assert [s.name for s in pool.snapshots("copies/src")] == ["r1", "r2"]

    tree = pool_tree(pool.root)
    with stream.open("rb") as inp, pytest.raises(Conflict, match="copies/src@r1 already exists"):
        pool.receive("copies/src", "r1", inp)
    assert pool_tree(pool.root) == tree


def test_receive_of_garbage_leaves_nothing(pool: StorageDriver) -> None:
    pool.create("a")
    tree = pool_tree(pool.root)
    with pytest.raises(UserError, match="could not receive copies/b@s1"):
        pool.receive("copies/b", "s1", io.BytesIO(b"this is not a stream" * 100))
    with pytest.raises(UserError, match="could not receive copies/b@s1"):
        pool.receive("copies/b", "s1", io.BytesIO(b""))
    assert pool_tree(pool.root) == tree
    assert names(pool.list()) == ["a"]


def test_send_of_missing_snapshot(pool: StorageDriver) -> None:
    pool.create("a")
    with pytest.raises(NotFound, match="snapshot a@nope does not exist"):
        pool.send("a", "nope", io.BytesIO())


def test_incremental_send(pool: StorageDriver, layout: Files) -> None:
    layout.make(pool, "db")
    layout.write(pool, "db", "f", "v1")
    pool.snapshot("db", "s1")
    layout.write(pool, "db", "f", "v2")
    layout.write(pool, "db", "g", "new")
    pool.snapshot("db", "s2")
    if not pool.capabilities.incremental_send:
        with pytest.raises(UserError, match="incremental send needs the btrfs or zfs driver"):
            pool.send("db", "s2", io.BytesIO(), parent="s1")
        return

    full, delta = io.BytesIO(), io.BytesIO()
    pool.send("db", "s1", full)
    pool.send("db", "s2", delta, parent="s1")
    assert 0 < len(delta.getvalue()) < len(full.getvalue()) + 4096
    full.seek(0)
    delta.seek(0)
    pool.receive("replica", "s1", full)
    # The source's s1 goes away: the delta must find its parent in the replica.
    pool.destroy_snapshot("db", "s1")
    pool.receive("replica", "s2", delta)
    assert [s.name for s in pool.snapshots("replica")] == ["s1", "s2"]
    assert layout.read(pool, "replica", "f") == "v1"  # the dataset was made from the first one
    pool.rollback("replica", "s2")
    assert layout.read(pool, "replica", "f") == "v2"
    assert layout.read(pool, "replica", "g") == "new"

    pool.snapshot("db", "s3")
    delta3 = io.BytesIO()
    pool.send("db", "s3", delta3, parent="s2")
    tree = pool_tree(pool.root)
    with pytest.raises(UserError, match="could not receive elsewhere@s3"):
        pool.receive("elsewhere", "s3", io.BytesIO(delta3.getvalue()[:100]))
    assert pool_tree(pool.root) == tree
    # Without its parent anywhere in the pool a delta cannot land.
    pool.destroy_snapshot("db", "s2")
    pool.destroy_snapshot("replica", "s2")
    tree = pool_tree(pool.root)
    with pytest.raises(UserError, match="receive its parent snapshot first"):
        pool.receive("elsewhere", "s3", io.BytesIO(delta3.getvalue()))
    assert pool_tree(pool.root) == tree


# -- pool -------------------------------------------------------------------------------------
def test_usage(pool: StorageDriver) -> None:
    usage = pool.usage()
    assert usage.driver == pool.name and usage.path == pool.root
    assert usage.capabilities == pool.capabilities
    assert usage.size > 0 and usage.free > 0
    assert usage.used + usage.free == usage.size
    pool.create("a")
    with (pool.path("a") / "blob").open("wb") as f:
        f.write(os.urandom(8 << 20))
        os.fsync(f.fileno())
    os.sync()
    assert pool.usage().free < usage.free


def fill(path: Path) -> None:
    """Write into ``path`` until the file system says it is full."""
    # Random, so that a compressing file system (ZFS with lz4) fills as fast as the others;
    # one chunk written again and again does not compress either.
    chunk = os.urandom(1 << 20)
    index = 0
    try:
        while True:
            with (path / f"fill-{index}").open("wb") as f:
                for _ in range(64):
                    f.write(chunk)
                    f.flush()
            index += 1
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    # Small files until not even those fit (metadata space on btrfs and XFS).
    try:
        for small in range(100_000):
            (path / f"small-{small}").write_bytes(b"x" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc


def test_full_pool_raises_pool_full_and_leaves_nothing(tiny_pool: StorageDriver,
                                                       layout: Files) -> None:
    layout.make(tiny_pool, "images/base")
    layout.write(tiny_pool, "images/base", "etc/data", "d" * (256 << 10))
    for index in range(20):
        layout.write(tiny_pool, "images/base", f"etc/more-{index}", "x" * 5000)
    filler = tiny_pool.fork("images/base", "filler")
    fill(filler.path)
    tree = pool_tree(tiny_pool.root)
    listing = tiny_pool.list()

    for call in (lambda: tiny_pool.fork("images/base", "instances/web"),
                 lambda: tiny_pool.snapshot("images/base", "s1"),
                 lambda: layout.make(tiny_pool, "instances/empty")):
        with pytest.raises(PoolFull) as caught:
            call()
        message = caught.value.message
        assert message.startswith(f"the pool at {tiny_pool.root} is full (")
        assert "free): could not " in message and "grow the pool" in message
    assert tiny_pool.list() == listing
    assert pool_tree(tiny_pool.root) == tree

    # Space comes back as soon as the filler is gone (btrfs frees it in the background: the
    # driver waits for that instead of failing).
    tiny_pool.destroy("filler")
    tiny_pool.fork("images/base", "instances/web")
    assert names(tiny_pool.list()) == ["images/base", "instances/web"]


# -- block volumes ----------------------------------------------------------------------------
def write_at(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as volume:
        volume.seek(offset)
        volume.write(data)
        os.fsync(volume.fileno())


def read_at(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as volume:
        volume.seek(offset)
        return volume.read(length)


def test_volume_is_sized_and_sparse(pool: StorageDriver) -> None:
    assert pool.capabilities.block_volumes
    volume = pool.create_volume("vms/disk", "256M")
    assert (volume.dataset, volume.size, volume.allocated) == ("vms/disk", 256 << 20, 0)
    assert volume.path == pool.volume_path("vms/disk") == pool.path("vms/disk") / VOLUME_FILE
    assert volume.path.stat().st_size == 256 << 20
    assert pool.volume("vms/disk") == volume
    assert names(pool.list()) == ["vms/disk"] and not pool.get("vms/disk").readonly
    pool.create("plain")
    with pytest.raises(NotFound, match="^dataset 'plain' holds no volume$"):
        pool.volume("plain")
    with pytest.raises(NotFound, match="^dataset 'nope' does not exist$"):
        pool.volume_path("nope")


def test_volume_grows_and_never_shrinks(pool: StorageDriver) -> None:
    volume = pool.create_volume("vm", "64M")
    write_at(volume.path, 0, b"boot")
    grown = pool.resize_volume("vm", "128M")
    assert grown.size == 128 << 20 and grown.path == volume.path
    assert 0 < grown.allocated < 1 << 20  # the new end is a hole
    assert read_at(grown.path, 0, 4) == b"boot"
    assert read_at(grown.path, 100 << 20, 4) == b"\0" * 4
    assert pool.resize_volume("vm", 128 << 20) == grown  # the same size: nothing to do

    tree = pool_tree(pool.root)
    with pytest.raises(UserError, match="^cannot shrink volume 'vm' from 128M to 64M: volumes "
                                        "only grow; make a smaller volume"):
        pool.resize_volume("vm", "64M")
    with pytest.raises(UserError, match="^volume size 'lots' is not a size"):
        pool.resize_volume("vm", "lots")
    with pytest.raises(PoolFull, match=rf"^the pool at {pool.root} is full \(.* free\): could "
                                       r"not grow volume 'vm' to 1024T; remove unused"):
        pool.resize_volume("vm", "1P")
    pool.set_readonly("vm", True)
    with pytest.raises(UserError, match="^cannot grow volume 'vm': its dataset is read-only; "
                                        "make it writable first$"):
        pool.resize_volume("vm", "256M")
    pool.set_readonly("vm", False)
    assert pool.volume("vm") == grown and pool_tree(pool.root) == tree


def test_bad_volumes_are_refused_and_leave_nothing(pool: StorageDriver) -> None:
    pool.create_volume("taken", "16M")
    pool.create("plain")
    tree, listing = pool_tree(pool.root), pool.list()
    refused = [
        (lambda: pool.create_volume("v", "big"), UserError, "^volume size 'big' is not a size"),
        (lambda: pool.create_volume("v", "0"), UserError, "must be greater than zero"),
        (lambda: pool.create_volume("v", "512K"), UserError, "^volume size '512K' is too small"),
        (lambda: pool.create_volume("v", 10 ** 7), UserError, "not a whole number of MiB"),
        (lambda: pool.create_volume("v", "1P"), PoolFull,
         rf"^the pool at {pool.root} is full \(.* free\): could not create volume 'v' of "
         r"1024T; remove unused images, instances or snapshots, or grow the pool$"),
        (lambda: pool.create_volume("taken", "16M"), Conflict,
         "^dataset 'taken' already exists$"),
        (lambda: pool.create_volume("plain", "16M"), Conflict,
         "^dataset 'plain' already exists$"),
        (lambda: pool.create_volume("taken/inner", "16M"), Conflict, "datasets do not nest"),
        (lambda: pool.create_volume("../v", "16M"), UserError, "^invalid dataset name '../v'$"),
        (lambda: pool.resize_volume("plain", "32M"), NotFound,
         "^dataset 'plain' holds no volume$"),
        (lambda: pool.resize_volume("nope", "32M"), NotFound, "^dataset 'nope' does not exist$"),
    ]
    for call, error, message in refused:
        with pytest.raises(error, match=message):
            call()
    assert pool_tree(pool.root) == tree and pool.list() == listing


def test_volume_fork_is_copy_on_write(pool: StorageDriver) -> None:
    source = pool.create_volume("images/vm", "256M")
    block = os.urandom(1 << 20)
    with source.path.open("r+b") as volume:
        for _ in range(100):
            volume.write(block)
        os.fsync(volume.fileno())
    os.sync()
    before, written = pool.usage().used, pool.volume("images/vm").allocated

    fork = pool.fork("images/vm", "instances/vm")
    os.sync()
    forked = pool.volume("instances/vm")
    assert forked.size == 256 << 20 and forked.path == fork.path / VOLUME_FILE
    if pool.capabilities.fast_fork:
        # The fork shares the source's extents: the pool holds the 100 MiB once.
        assert pool.usage().used - before < 8 << 20
    # Either way the unwritten rest stays a hole (a copy copies only what is written).
    assert forked.allocated < (100 << 20) + (8 << 20)

    write_at(forked.path, 0, b"fork")
    write_at(forked.path, 200 << 20, b"past")
    assert read_at(source.path, 0, len(block)) == block
    assert read_at(source.path, 200 << 20, 4) == b"\0" * 4
    assert read_at(forked.path, 4, 100) == block[4:104]
    assert pool.volume("images/vm").allocated == written


def test_volume_send_receive_keeps_it_sparse(pool: StorageDriver, tmp_path: Path) -> None:
    assert pool.capabilities.send_receive
    volume = pool.create_volume("images/vm", "64M")
    write_at(volume.path, 0, b"boot")
    write_at(volume.path, 60 << 20, b"tail")
    pool.snapshot("images/vm", "s1")
    stream = tmp_path / "vm.stream"
    with stream.open("wb") as out:
        pool.send("images/vm", "s1", out)
    assert 0 < stream.stat().st_size < 1 << 20  # the holes did not travel as zeros

    with stream.open("rb") as inp:
        pool.receive("copies/vm", "r1", inp)
    copy = pool.volume("copies/vm")
    assert copy.size == 64 << 20 and copy.allocated < 1 << 20
    assert read_at(copy.path, 0, 4) == b"boot" and read_at(copy.path, 60 << 20, 4) == b"tail"
