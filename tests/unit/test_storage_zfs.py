"""The zfs driver's pure parts: names, command lines, reading listings and streams, what it
declares, and what it says on a host without ZFS."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from homecloud.errors import Conflict, UserError
from homecloud.storage.zfs_host import zfs_missing, zfs_unfit
from homecloud.storage.zfs_layout import (
    DRR_BEGIN_MAGIC,
    LIST_COLUMNS,
    Layout,
    PoolView,
    clone_argv,
    create_argv,
    dataset_mounted_at,
    destroy_argv,
    list_argv,
    mounts_below,
    parse_listing,
    parse_stream_header,
    receive_argv,
    rename_argv,
    send_argv,
    set_argv,
)

LAYOUT = Layout("tank/hc")


def line(name: str, kind: str = "filesystem", created: int = 100, readonly: str = "off",
         origin: str = "-", deferred: str = "-", guid: str = "1", ident: str = "-",
         of: str = "-", txg: int | None = None) -> str:
    return "\t".join([name, kind, str(created), str(created if txg is None else txg), readonly,
                      origin, deferred, guid, ident, of])


def view(*lines: str) -> PoolView:
    return PoolView(LAYOUT, tuple(parse_listing("\n".join(lines) + "\n")))


# -- names ------------------------------------------------------------------------------------
def test_dataset_and_snapshot_names() -> None:
    assert LAYOUT.fs("images/debian") == "tank/hc/images/debian"
    assert LAYOUT.snap("web", "s1") == "tank/hc/web@s1"
    assert LAYOUT.meta == "tank/hc/.meta"
    assert LAYOUT.name_of("tank/hc/images/debian") == "images/debian"
    assert LAYOUT.name_of("tank/hc") is None
    assert LAYOUT.name_of("tank/hc/.meta/retired-1") is None
    assert LAYOUT.name_of("tank/other") is None and LAYOUT.name_of("tank/hcx/a") is None
    hidden = LAYOUT.hidden("retired")
    assert hidden.startswith("tank/hc/.meta/retired-") and LAYOUT.retired(hidden)
    assert hidden != LAYOUT.hidden("retired")


@pytest.mark.parametrize("bad", ["", "..", "a/../b", "/etc", "a//b", ".meta/x", ".work", "x y"])
def test_bad_names_never_reach_zfs(bad: str) -> None:
    with pytest.raises(UserError, match="invalid dataset name"):
        LAYOUT.fs(bad)


@pytest.mark.parametrize("bad", ["", "a/b", "fork:1", "s p", ".."])
def test_snapshot_names_users_give_cannot_look_like_hidden_ones(bad: str) -> None:
    with pytest.raises(UserError, match="invalid snapshot name"):
        LAYOUT.snap("web", bad)


# -- command lines ----------------------------------------------------------------------------
def test_command_lines() -> None:
    assert list_argv(["tank/hc"]) == [
        "zfs", "list", "-H", "-p", "-r", "-t", "filesystem,snapshot", "-o",
        "name,type,creation,createtxg,readonly,origin,defer_destroy,guid,homecloud:id,"
        "homecloud:of",
        "tank/hc"]
    assert list_argv(["tank/hc/a"], recursive=False, types="filesystem")[3:7] == [
        "-p", "-t", "filesystem", "-o"]
    assert create_argv("tank/hc/a/b", {"homecloud:id": "x"}) == [
        "zfs", "create", "-p", "-o", "homecloud:id=x", "tank/hc/a/b"]
    assert clone_argv("tank/hc/a@s", "tank/hc/b", {"readonly": "on"}) == [
        "zfs", "clone", "-p", "-o", "readonly=on", "tank/hc/a@s", "tank/hc/b"]
    assert rename_argv("tank/hc/a", "tank/hc/g/b") == [
        "zfs", "rename", "-p", "tank/hc/a", "tank/hc/g/b"]
    assert rename_argv("tank/hc/a@s", "tank/hc/a@removed:1") == [
        "zfs", "rename", "tank/hc/a@s", "tank/hc/a@removed:1"]
    assert set_argv("tank/hc/a", {"readonly": "on", "homecloud:of": "x"}) == [
        "zfs", "set", "readonly=on", "homecloud:of=x", "tank/hc/a"]
    assert destroy_argv("tank/hc/a") == ["zfs", "destroy", "tank/hc/a"]
    assert destroy_argv("tank/hc/a", recursive=True) == ["zfs", "destroy", "-r", "tank/hc/a"]
    assert send_argv("tank/hc/a@s2", None) == ["zfs", "send", "-L", "-c", "tank/hc/a@s2"]
    assert send_argv("tank/hc/a@s2", "tank/hc/a@s1") == [
        "zfs", "send", "-L", "-c", "-i", "tank/hc/a@s1", "tank/hc/a@s2"]
    assert receive_argv("tank/hc/.meta/work-1@r", {"homecloud:id": "x"}, None) == [
        "zfs", "receive", "-u", "-o", "homecloud:id=x", "tank/hc/.meta/work-1@r"]
    assert receive_argv("w@r", {}, "tank/hc/a@s1") == [
        "zfs", "receive", "-u", "-o", "origin=tank/hc/a@s1", "w@r"]


# -- listings ---------------------------------------------------------------------------------
def test_parse_listing() -> None:
    entries = parse_listing(
        line("tank/hc/web", created=5, readonly="on", ident="i1", of="i1") + "\n"
        + line("tank/hc/web@s1", "snapshot", created=6, guid="77") + "\n"
        + line("tank/hc/b", origin="tank/hc/web@fork:x") + "\n"
        + "garbage\n")
    assert [entry.name for entry in entries] == ["tank/hc/web", "tank/hc/web@s1", "tank/hc/b"]
    web, snap, fork = entries
    assert (web.readonly, web.created, web.txg, web.id, web.of, web.snapshot) == (
        True, 5.0, 5, "i1", "i1", False)
    assert snap.snapshot and snap.filesystem == "tank/hc/web" and snap.snapshot_name == "s1"
    assert snap.visible and snap.guid == "77"
    assert fork.origin == "tank/hc/web@fork:x" and fork.id is None
    assert len(LIST_COLUMNS) == len(line("x").split("\t"))


def test_datasets_groups_and_hidden_file_systems() -> None:
    pool = view(line("tank/hc"), line("tank/hc/images"),
                line("tank/hc/images/debian", ident="a", of="a"),
                line("tank/hc/.meta"), line("tank/hc/.meta/retired-1", ident="a", of="a"))
    assert [name for name, _ in pool.datasets()] == ["images/debian"]
    assert pool.dataset("images/debian") is not None
    assert pool.dataset("images") is None  # a group
    with pytest.raises(Conflict, match="^cannot create dataset 'images/debian/x' inside "
                                       "dataset 'images/debian': datasets do not nest$"):
        pool.check_creatable("images/debian/x")
    with pytest.raises(Conflict, match="^dataset 'images/debian' already exists$"):
        pool.check_creatable("images/debian")
    with pytest.raises(Conflict, match="the group 'images' is in the way"):
        pool.check_creatable("images")
    assert pool.check_creatable("images/ubuntu") is None
    empty = view(line("tank/hc/old"))
    assert empty.check_creatable("old") == "tank/hc/old"  # an empty group is replaced


def test_a_lineage_lists_its_snapshots_and_hides_the_rest() -> None:
    pool = view(
        line("tank/hc/web", ident="w", of="w", origin="tank/hc/.meta/retired-1@s2"),
        line("tank/hc/web@s3", "snapshot", created=30, guid="3"),
        line("tank/hc/web@fork:x", "snapshot", created=31, deferred="on"),
        line("tank/hc/.meta/retired-1", ident="w", of="w"),
        line("tank/hc/.meta/retired-1@s1", "snapshot", created=10, guid="1"),
        line("tank/hc/.meta/retired-1@s2", "snapshot", created=20, guid="2"),
        line("tank/hc/.meta/retired-1@removed:y", "snapshot", created=15, deferred="on"),
        line("tank/hc/.meta/retired-2", ident="old", of="old"),
        line("tank/hc/.meta/retired-2@s9", "snapshot", created=5, guid="9"),
        line("tank/hc/.meta/retired-3", ident="w", of="w"),
    )
    head = pool.dataset("web")
    assert head is not None
    assert [entry.name for entry in pool.lineage(head)] == [
        "tank/hc/web", "tank/hc/.meta/retired-1", "tank/hc/.meta/retired-3"]
    assert [entry.snapshot_name for entry in pool.snapshots(head)] == ["s1", "s2", "s3"]
    found = pool.find_snapshot(head, "s2")
    assert found is not None and found.name == "tank/hc/.meta/retired-1@s2"
    assert pool.find_snapshot(head, "s9") is None  # another lineage's
    assert pool.find_snapshot(head, "fork:x") is None
    assert [entry.name for entry in pool.snapshots_on("tank/hc/web")] == [
        "tank/hc/web@s3", "tank/hc/web@fork:x"]
    by_guid = pool.by_guid("9")
    assert by_guid is not None and by_guid.name == "tank/hc/.meta/retired-2@s9"
    assert pool.by_guid("4") is None
    assert pool.collectable() == ["tank/hc/.meta/retired-3"]  # holds no snapshot


def test_snapshots_of_the_same_second_keep_their_order() -> None:
    pool = view(line("tank/hc/a", ident="a", of="a"),
                line("tank/hc/a@z", "snapshot", created=50, txg=7),
                line("tank/hc/a@b", "snapshot", created=50, txg=9),
                line("tank/hc/a@m", "snapshot", created=50, txg=8))
    head = pool.dataset("a")
    assert head is not None
    assert [entry.snapshot_name for entry in pool.snapshots(head)] == ["z", "m", "b"]
    assert pool.snapshots_on("tank/hc/a")[-1].snapshot_name == "b"  # the newest


def test_deferred_snapshots_are_not_parents_of_streams() -> None:
    pool = view(line("tank/hc/a", ident="a", of="a"),
                line("tank/hc/a@s1", "snapshot", guid="5", deferred="on"))
    assert pool.by_guid("5") is None


# -- mounts and streams -----------------------------------------------------------------------
MOUNTINFO = """\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
90 22 0:50 / /var/lib/homecloud/pool rw shared:40 - zfs tank/hc rw,xattr
91 90 0:51 / /var/lib/homecloud/pool/web rw shared:41 - zfs tank/hc/web rw
92 22 0:52 / /srv/my\\040pool rw shared:42 - zfs tank/my\\040hc rw
93 22 0:53 / /srv/over rw shared:43 - zfs tank/a rw
94 22 0:54 / /srv/over rw shared:44 - tmpfs tmpfs rw
"""


def test_dataset_mounted_at() -> None:
    assert dataset_mounted_at(MOUNTINFO, "/var/lib/homecloud/pool") == "tank/hc"
    assert dataset_mounted_at(MOUNTINFO, "/var/lib/homecloud/pool/web") == "tank/hc/web"
    assert dataset_mounted_at(MOUNTINFO, "/srv/my pool") == "tank/my hc"
    assert dataset_mounted_at(MOUNTINFO, "/") is None  # ext4
    assert dataset_mounted_at(MOUNTINFO, "/srv/over") is None  # hidden by a later mount
    assert dataset_mounted_at(MOUNTINFO, "/var/lib") is None


def test_snapshots_mounted_on_access_are_found_deepest_first() -> None:
    info = MOUNTINFO + (
        "95 91 0:55 / /var/lib/homecloud/pool/web/.zfs/snapshot/s1 rw - zfs tank/hc/web@s1 rw\n"
        "96 95 0:56 / /var/lib/homecloud/pool/web/.zfs/snapshot/s1/x rw - tmpfs t rw\n"
        "97 91 0:57 / /var/lib/homecloud/pool/web2/.zfs/snapshot/s1 rw - zfs tank/hc/web2@s1 rw\n")
    snapdir = "/var/lib/homecloud/pool/web/.zfs"
    assert mounts_below(info, snapdir) == [f"{snapdir}/snapshot/s1/x", f"{snapdir}/snapshot/s1"]
    assert mounts_below(MOUNTINFO, snapdir) == []


def stream_start(order: str, toguid: int, fromguid: int) -> bytes:
    # dmu_replay_record: drr_type, drr_payloadlen, then drr_begin: magic, versioninfo,
    # creation_time, type, flags, toguid, fromguid.
    return struct.pack(order + "IIQQQIIQQ", 0, 0, DRR_BEGIN_MAGIC, 17, 1700000000, 2, 4,
                       toguid, fromguid) + b"\0" * 256


@pytest.mark.parametrize("order", ["<", ">"])
def test_stream_header(order: str) -> None:
    full = parse_stream_header(stream_start(order, 123, 0))
    assert full is not None and (full.toguid, full.fromguid) == ("123", None)
    delta = parse_stream_header(stream_start(order, 124, 123))
    assert delta is not None and (delta.toguid, delta.fromguid) == ("124", "123")


def test_what_is_not_a_stream() -> None:
    assert parse_stream_header(b"") is None
    assert parse_stream_header(b"this is not a stream" * 100) is None
    assert parse_stream_header(stream_start("<", 1, 0)[:40]) is None
    assert parse_stream_header(b"\x01" + stream_start("<", 1, 0)[1:]) is None


# -- the driver as the registry sees it -------------------------------------------------------
def test_capabilities() -> None:
    from homecloud.storage.zfs import ZfsDriver

    assert ZfsDriver.name == "zfs"
    assert ZfsDriver.capabilities.as_dict() == {
        "fast_fork": True, "send_receive": True, "incremental_send": True,
        "block_volumes": True, "enforced_readonly": True}


def test_probe_says_why_not(tmp_path: Path) -> None:
    reason = zfs_unfit(tmp_path)
    missing = zfs_missing()
    if missing is not None:
        assert reason == f"the zfs driver cannot run on this host: {missing}"
        assert missing.startswith(("the zfs kernel module is not loaded (install zfs-dkms",
                                   "python3-pyzfs is not installed (apt-get install",
                                   "the zfs command is not installed"))
    else:
        assert reason is not None and "not a ZFS file system mounted there" in reason
    assert list(tmp_path.iterdir()) == []


def test_what_zfs_prints_becomes_one_line(tmp_path: Path) -> None:
    from homecloud.errors import HostError, NotFound, PoolFull
    from homecloud.storage.zfs import zfs_failure

    full = zfs_failure("cannot create 'tank/hc/a': out of space\n", tmp_path, "create dataset 'a'")
    assert isinstance(full, PoolFull)
    assert full.message.startswith(f"the pool at {tmp_path} is full (")
    assert full.message.endswith("free): could not create dataset 'a'; remove unused images, "
                                 "instances or snapshots, or grow the pool")
    taken = zfs_failure("cannot create 'tank/hc/a': dataset already exists", tmp_path, "x",
                        exists="dataset 'a' already exists")
    assert isinstance(taken, Conflict) and taken.message == "dataset 'a' already exists"
    gone = zfs_failure("cannot open 'tank/hc/a': dataset does not exist", tmp_path, "x",
                       missing="dataset 'a' does not exist")
    assert isinstance(gone, NotFound) and gone.message == "dataset 'a' does not exist"
    busy = zfs_failure("cannot unmount '/p/web': pool or dataset is busy", tmp_path,
                       "remove dataset 'web'")
    assert isinstance(busy, Conflict)
    assert busy.message == ("could not remove dataset 'web': it is in use; stop what uses it "
                            "and try again")
    other = zfs_failure("warning\ncannot receive: invalid stream (bad magic number)\n", tmp_path,
                        "receive a@s", UserError)
    assert type(other) is UserError
    assert other.message == "could not receive a@s: cannot receive: invalid stream (bad magic " \
                            "number)"
    assert type(zfs_failure("", tmp_path, "list")) is HostError


def test_the_driver_refuses_a_host_without_zfs(tmp_path: Path) -> None:
    from homecloud.errors import HostError
    from homecloud.storage.zfs import ZfsDriver

    missing = zfs_missing()
    if missing is None:
        with pytest.raises(HostError, match=f"^no ZFS file system is mounted at {tmp_path}: "):
            ZfsDriver(tmp_path)
    else:
        with pytest.raises(HostError, match="^the zfs driver cannot run on this host: "):
            ZfsDriver(tmp_path)
    assert list(tmp_path.iterdir()) == []
