"""Instance data datasets: paths, clashes, the step's do/undo on a real (copy) pool in a
temporary directory, removal, and how nspawn is told to mount them."""

from __future__ import annotations

from pathlib import Path

import pytest

from homecloud.errors import Conflict, NotFound, UserError
from homecloud.instances.context import Origin, StepContext
from homecloud.instances.data_volumes import (
    DataDataset,
    check_mount_path,
    data_actions,
    overlaps,
    remove_volumes,
    volume_dataset,
    volume_owners,
)
from homecloud.instances.drivers.nspawn import nspawn_argv
from homecloud.instances.records import Instance
from homecloud.instances.servicesets import SHIPPED_DIR, load_service_set
from homecloud.instances.spec import Bind, InstanceSpec
from homecloud.storage.copy import CopyDriver


@pytest.fixture
def pool(tmp_path: Path) -> CopyDriver:
    return CopyDriver(tmp_path / "pool")


def context(name: str = "db", binds: list[Bind] | None = None) -> StepContext:
    return StepContext(instance=Instance(InstanceSpec(name, "postgres", binds=binds or []),
                                         machine_id="ab" * 16))


def test_paths() -> None:
    assert check_mount_path("/var/lib/postgresql/") == "/var/lib/postgresql"
    for bad, message in [("var/lib", "absolute"), ("/", "below /"), ("/a/../b", "'..'"),
                         ("/a/./b", "'.'"), ("/a:b", "':'"), ("/a,b", "':'")]:
        with pytest.raises(ValueError, match=message):
            check_mount_path(bad)
    assert volume_dataset("db", "data") == "volumes/db/data"
    assert overlaps("/var/lib/postgresql", "/var/lib/postgresql")
    assert overlaps("/var/lib", "/var/lib/postgresql")
    assert overlaps("/var/lib/postgresql/15", "/var/lib/postgresql")
    assert not overlaps("/var/lib/postgres", "/var/lib/postgresql")


def test_bad_parameters_name_the_problem(pool: CopyDriver) -> None:
    factory = data_actions(pool)["data-dataset"]
    with pytest.raises(UserError, match="data dataset name '../x' must not contain"):
        factory({"name": "../x", "path": "/data"})
    with pytest.raises(ValueError, match="must be an absolute path"):
        factory({"name": "data", "path": "data"})
    with pytest.raises(TypeError):
        factory({"name": "data", "path": "/data", "size": "1G"})


def test_creates_mounts_and_undoes(pool: CopyDriver) -> None:
    step = DataDataset(pool, "data", "/var/lib/postgresql")
    ctx = context()
    step.do(ctx)
    made = pool.path("volumes/db/data")
    assert made.is_dir() and oct(made.stat().st_mode & 0o777) == "0o700"
    # Id-mapped: the guest's root owns the top directory, whatever range nspawn picks.
    assert ctx.mounts == [Bind(str(made), "/var/lib/postgresql", idmap=True)]
    started = ctx.instance_to_start().spec
    assert started.binds == ctx.mounts and ctx.instance.spec.binds == []  # never recorded
    step.undo(ctx)
    assert not pool.exists("volumes/db/data") and not pool.path("volumes/db").exists()
    step.undo(ctx)  # idempotent


def test_an_existing_dataset_is_refused_and_kept(pool: CopyDriver) -> None:
    pool.create("volumes/db/data")
    (pool.path("volumes/db/data") / "PG_VERSION").write_text("15\n")
    step = DataDataset(pool, "data", "/var/lib/postgresql")
    ctx = context()
    with pytest.raises(Conflict, match="data dataset volumes/db/data already exists, and no "
                                       "instance 'db' owns it"):
        step.do(ctx)
    step.undo(ctx)  # a failed step is not undone, but even so: not ours, not removed
    assert (pool.path("volumes/db/data") / "PG_VERSION").read_text() == "15\n"
    assert ctx.mounts == []


def test_a_clone_forks_the_snapshot_of_its_origin(pool: CopyDriver) -> None:
    pool.create("volumes/db/data")
    (pool.path("volumes/db/data") / "PG_VERSION").write_text("15\n")
    pool.snapshot("volumes/db/data", "s1")
    (pool.path("volumes/db/data") / "PG_VERSION").write_text("later\n")
    ctx = context("db2")
    ctx.origin = Origin(forks=(("volumes/db/data", "s1", "volumes/db2/data"),))
    step = DataDataset(pool, "data", "/var/lib/postgresql")
    step.do(ctx)
    assert (pool.path("volumes/db2/data") / "PG_VERSION").read_text() == "15\n"
    assert ctx.mounts[0].source == str(pool.path("volumes/db2/data"))
    step.undo(ctx)
    assert not pool.exists("volumes/db2/data") and pool.exists("volumes/db/data")


@pytest.mark.parametrize("target", ["/var/lib/postgresql", "/var/lib", "/var/lib/postgresql/x"])
def test_a_clashing_bind_is_refused_before_anything_is_made(pool: CopyDriver, tmp_path: Path,
                                                            target: str) -> None:
    ctx = context(binds=[Bind(str(tmp_path), target)])
    with pytest.raises(UserError, match=f"--bind target {target} clashes with the data "
                                        "dataset 'data' mounted at /var/lib/postgresql"):
        DataDataset(pool, "data", "/var/lib/postgresql").do(ctx)
    assert not pool.path("volumes").exists()


def test_two_data_datasets_at_one_path_clash(pool: CopyDriver) -> None:
    ctx = context()
    DataDataset(pool, "data", "/srv/data").do(ctx)
    with pytest.raises(UserError, match="clashes with the data dataset 'wal'"):
        DataDataset(pool, "wal", "/srv/data/wal").do(ctx)
    assert [d.name for d in pool.list("volumes")] == ["volumes/db/data"]


def test_starting_never_makes_a_missing_dataset(pool: CopyDriver) -> None:
    step = DataDataset(pool, "data", "/var/lib/postgresql", create=False)
    ctx = context()
    with pytest.raises(NotFound, match="its data dataset volumes/db/data is missing, so it is "
                                       "not started on an empty one"):
        step.do(ctx)
    assert not pool.path("volumes").exists()
    pool.create("volumes/db/data")
    step.do(ctx)
    step.undo(ctx)  # starting made nothing, so undoing removes nothing
    assert pool.exists("volumes/db/data") and len(ctx.mounts) == 1


def test_remove_volumes_takes_every_dataset_of_the_instance_only(pool: CopyDriver) -> None:
    for name in ("volumes/db/data", "volumes/db/wal", "volumes/db2/data"):
        pool.create(name)
    assert volume_owners(pool) == {"db", "db2"}
    assert remove_volumes(pool, "db") == ["volumes/db/data", "volumes/db/wal"]
    assert [d.name for d in pool.list("volumes")] == ["volumes/db2/data"]
    assert remove_volumes(pool, "db") == [] and remove_volumes(pool, "nothing") == []
    assert not pool.path("volumes/db").exists()


def test_nspawn_mounts_data_id_mapped() -> None:
    spec = InstanceSpec("db", "postgres", binds=[
        Bind("/srv/x", "/x", readonly=True),
        Bind("/pool/volumes/db/data", "/var/lib/postgresql", idmap=True)])
    argv = nspawn_argv(spec, Path("/pool/instances/db"), "ab" * 16)
    assert "--bind-ro=/srv/x:/x" in argv
    assert "--bind=/pool/volumes/db/data:/var/lib/postgresql:idmap" in argv
    # Rows recorded before binds could be id-mapped read as before.
    assert InstanceSpec.from_json({**spec.to_json(), "binds": [
        {"source": "/a", "target": "/b", "readonly": False}]}).binds == [Bind("/a", "/b")]


def test_shipped_postgres_set() -> None:
    sset = load_service_set("postgres", [SHIPPED_DIR])
    steps = {s.id: s for s in sset.steps}
    first = [s.id for s in sset.steps if not s.after]
    assert first == ["postgres"]  # the image is checked before anything is made
    assert steps["data"].params == {"name": "data", "path": "/var/lib/postgresql"}
    assert "data" in steps["unit"].after and steps["ready"].after == ("accepting",)
    start = {s.id: s for s in sset.start}
    assert start["data"].params == {**steps["data"].params, "create": False}
    assert start["accepting"].params == steps["accepting"].params

