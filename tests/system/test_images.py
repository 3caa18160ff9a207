"""Images on real pools: importing tarballs and directories, building recipes.

Tarballs are made here, by tarfile (and the zstd tool); GNU tar extracting the same tarball is the
reference for what a faithful import looks like. Every bad input is checked for its message and
for leaving nothing: no image, no partial dataset, nothing written outside the pool.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest

from homecloud.devhost import DevHost, guest_file
from homecloud.errors import Conflict, HostError, PoolFull, UserError
from homecloud.images.importer import import_image
from homecloud.images.mounts import mounts_below
from homecloud.images.progress import Progress
from homecloud.images.recipes import build_image
from homecloud.storage.base import StorageDriver

pytestmark = pytest.mark.system

OWNER, GROUP = 1234, 2345
MTIME = 1_000_000_000


# -- making tarballs --------------------------------------------------------------------------

def _member(name: str, kind: bytes = tarfile.REGTYPE, **fields: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = MTIME
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    return info


Member = tuple[tarfile.TarInfo, bytes]


def write_tar(path: Path, members: list[Member],
              mode: Literal["w", "w:gz", "w:bz2", "w:xz"] = "w") -> Path:
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def rootfs_members() -> list[Member]:
    """A small root file system with everything an import must keep."""
    return [
        (_member("./", tarfile.DIRTYPE), b""),
        (_member("./etc", tarfile.DIRTYPE), b""),
        (_member("./etc/os-release"), b"ID=test\n"),
        (_member("./etc/shadow", mode=0o640, gid=42), b"root:*:19000:0:99999:7:::\n"),
        (_member("./etc/localtime", tarfile.SYMTYPE, linkname="/usr/share/zoneinfo/UTC"), b""),
        # usr/ and usr/bin/ have no members of their own: created as parents.
        (_member("./usr/bin/su", mode=0o4755), b"\x7fELF setuid binary"),
        (_member("./usr/bin/newgrp", tarfile.LNKTYPE, linkname="./usr/bin/su"), b""),
        (_member("./usr/bin/ping", pax_headers={"SCHILY.xattr.user.homecloud": "kept"}),
         b"ping"),
        (_member("./bin", tarfile.SYMTYPE, linkname="usr/bin"), b""),
        (_member("./home/user", tarfile.DIRTYPE, uid=OWNER, gid=GROUP, mode=0o750), b""),
        (_member("./home/user/notes.txt", uid=OWNER, gid=GROUP, mode=0o600), b"hello\n"),
        (_member("./dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666), b""),
        (_member("./run/initctl", tarfile.FIFOTYPE, mode=0o600), b""),
        (_member("./tmp", tarfile.DIRTYPE, mode=0o1777), b""),
    ]


def compress_zstd(tar: Path) -> Path:
    if shutil.which("zstd") is None:
        pytest.skip("needs zstd (apt-get install zstd)")
    subprocess.run(["zstd", "-q", "--rm", str(tar), "-o", f"{tar}.zst"], check=True)
    return Path(f"{tar}.zst")


# Tarballs are named without an extension that tells: the importer must read the magic.
FORMATS: dict[str, Callable[[Path, list[Member]], Path]] = {
    "tar": lambda p, m: write_tar(p, m, "w"),
    "gz": lambda p, m: write_tar(p, m, "w:gz"),
    "bz2": lambda p, m: write_tar(p, m, "w:bz2"),
    "xz": lambda p, m: write_tar(p, m, "w:xz"),
    "zst": lambda p, m: compress_zstd(write_tar(p, m, "w")),
}


# -- looking at trees -------------------------------------------------------------------------

def listed_dirs(members: list[Member]) -> set[str]:
    """The directories a tarball of ``members`` lists: only their mtimes are the tarball's."""
    return {os.path.normpath(info.name) for info, _ in members if info.isdir()}


def describe_tree(root: Path, dated: set[str] | None = None) -> dict[str, tuple[Any, ...]]:
    """Everything an import must keep, path by path (hardlinks as groups of names).
    ``dated``: the only directories whose mtime counts (those a tarball lists: the others were
    made as parents, at whatever second the extraction ran); None: every directory's."""
    tree: dict[str, tuple[Any, ...]] = {}
    inodes: dict[int, str] = {}
    for path in sorted([root, *root.rglob("*")]):
        st = path.lstat()
        name = str(path.relative_to(root))
        first = inodes.setdefault(st.st_ino, name)
        xattrs = {} if path.is_symlink() else {
            key: os.getxattr(path, key, follow_symlinks=False)
            for key in os.listxattr(path, follow_symlinks=False)}
        tree[name] = (
            stat.filemode(st.st_mode), st.st_uid, st.st_gid,
            st.st_size if stat.S_ISREG(st.st_mode) else None,
            # The root's mtime is when the dataset was made, unless the tarball has a "./".
            int(st.st_mtime) if not stat.S_ISLNK(st.st_mode) and path != root and (
                dated is None or not stat.S_ISDIR(st.st_mode) or name in dated) else None,
            os.readlink(path) if path.is_symlink() else None,
            (os.major(st.st_rdev), os.minor(st.st_rdev)) if stat.S_ISCHR(st.st_mode) else None,
            xattrs, first,
        )
    return tree


def gnu_tar_extract(tarball: Path, into: Path) -> Path:
    into.mkdir()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf",
                    str(tarball), "-C", str(into)], check=True)
    return into


def assert_nothing_left(pool: StorageDriver, *outside: Path) -> None:
    assert [d.name for d in pool.list("images")] == []
    images = pool.path("images")
    assert not images.exists() or list(images.iterdir()) == []
    assert mounts_below(Path("/proc/self/mountinfo").read_text(), pool.root) == []
    for path in outside:
        assert not os.path.lexists(path), f"{path} was written outside the pool"


class Recorder:
    def __init__(self) -> None:
        self.events: list[Progress] = []

    def __call__(self, event: Progress) -> None:
        self.events.append(event)


# -- imports that work ------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_import_tarball_keeps_everything(btrfs_pool: StorageDriver, tmp_path: Path,
                                         fmt: str) -> None:
    members = rootfs_members()
    tarball = FORMATS[fmt](tmp_path / "rootfs", members)
    progress = Recorder()
    dataset = import_image(btrfs_pool, "test", tarball, progress)
    assert dataset.name == "images/test" and dataset.readonly
    assert [d.name for d in btrfs_pool.list("images")] == ["images/test"]

    root = dataset.path
    assert (root / "etc/os-release").read_text() == "ID=test\n"
    su = (root / "usr/bin/su").stat()
    assert su.st_mode & stat.S_ISUID and stat.S_IMODE(su.st_mode) == 0o4755
    assert (root / "usr/bin/newgrp").stat().st_ino == su.st_ino
    notes = (root / "home/user/notes.txt").stat()
    assert (notes.st_uid, notes.st_gid, notes.st_mtime) == (OWNER, GROUP, MTIME)
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/UTC"
    assert os.readlink(root / "bin") == "usr/bin"
    assert os.getxattr(root / "usr/bin/ping", "user.homecloud") == b"kept"
    assert stat.S_ISCHR((root / "dev/null").lstat().st_mode)
    assert stat.S_ISFIFO((root / "run/initctl").lstat().st_mode)
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777

    # The same tarball extracted by GNU tar is the reference.
    reference = gnu_tar_extract(tarball, tmp_path / "reference")
    dated = listed_dirs(members)
    assert describe_tree(root, dated) == describe_tree(reference, dated)

    size = tarball.stat().st_size
    assert progress.events[0].done == 0 and progress.events[-1].done == size
    assert all(e.total == size and e.phase == "extract" for e in progress.events)
    assert [e.done for e in progress.events] == sorted(e.done for e in progress.events)


def test_import_directory_keeps_everything(btrfs_pool: StorageDriver, tmp_path: Path) -> None:
    source = gnu_tar_extract(write_tar(tmp_path / "rootfs.tar", rootfs_members()),
                             tmp_path / "source")
    progress = Recorder()
    dataset = import_image(btrfs_pool, "from-dir", source, progress)
    assert dataset.readonly
    assert describe_tree(dataset.path) == describe_tree(source)
    assert (dataset.path / "home/user/notes.txt").stat().st_uid == OWNER
    assert progress.events[-1].done == progress.events[-1].total
    assert source.exists()  # the source is copied, not moved


def test_import_a_real_larger_tree(btrfs_pool: StorageDriver, tmp_path: Path) -> None:
    """/usr/lib/python3.11 (thousands of files, made by GNU tar), compared with GNU tar."""
    tarball = tmp_path / "python.tgz"
    subprocess.run(["tar", "-czf", str(tarball), "-C", "/usr/lib", "python3.11"], check=True)
    dataset = import_image(btrfs_pool, "python", tarball)
    reference = gnu_tar_extract(tarball, tmp_path / "reference")
    assert describe_tree(dataset.path) == describe_tree(reference)


def test_import_on_every_driver(pool: StorageDriver, tmp_path: Path) -> None:
    members = rootfs_members()
    tarball = FORMATS["gz"](tmp_path / "rootfs", members)
    from_tar = import_image(pool, "from-tar", tarball)
    from_dir = import_image(pool, "from-dir", gnu_tar_extract(tarball, tmp_path / "src"))
    dated = listed_dirs(members)
    assert describe_tree(from_tar.path, dated) == describe_tree(from_dir.path, dated)
    assert [d.name for d in pool.list("images")] == ["images/from-dir", "images/from-tar"]
    assert from_tar.readonly and from_dir.readonly


# -- imports that must fail and leave nothing ---------------------------------------------------

def _unsafe_cases(outside: Path) -> dict[str, tuple[list[Member], str, list[Path]]]:
    """name -> (members after a harmless first part, message, paths that must not appear)."""
    return {
        "dotdot": ([(_member("../evil"), b"x")], "unsafe member '../evil'", []),
        "deep-dotdot": ([(_member("etc/../../evil"), b"x")], "contains '..'", []),
        "absolute": ([(_member(str(outside / "abs")), b"x")], "is absolute",
                     [outside / "abs"]),
        "through-symlink": ([(_member("escape", tarfile.SYMTYPE, linkname=str(outside)), b""),
                             (_member("escape/evil"), b"x")],
                            "unsafe member 'escape/evil': its parent 'escape' is a symlink",
                            [outside / "evil"]),
        "dir-through-symlink": ([(_member("escape", tarfile.SYMTYPE, linkname=str(outside)),
                                  b""),
                                 (_member("escape/sub/evil"), b"x")],
                                "its parent 'escape' is a symlink", [outside / "sub"]),
        "hardlink-absolute": ([(_member("stolen", tarfile.LNKTYPE, linkname="/etc/passwd"),
                                b"")], "hardlink target is absolute", []),
        "hardlink-dotdot": ([(_member("stolen", tarfile.LNKTYPE, linkname="../secret"), b"")],
                            "hardlink target contains '..'", []),
        "hardlink-through-symlink": (
            [(_member("escape", tarfile.SYMTYPE, linkname=str(outside)), b""),
             (_member("stolen", tarfile.LNKTYPE, linkname="escape/secret"), b"")],
            "hardlink target's parent 'escape' is a symlink", []),
    }


@pytest.mark.parametrize("case", sorted(_unsafe_cases(Path("/x"))))
def test_unsafe_members_are_refused(btrfs_pool: StorageDriver, tmp_path: Path,
                                    case: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret\n")
    members, message, must_not_exist = _unsafe_cases(outside)[case]
    tarball = write_tar(tmp_path / "evil.tar", [*rootfs_members(), *members])
    with pytest.raises(UserError, match=message) as caught:
        import_image(btrfs_pool, "evil", tarball)
    assert caught.value.message.startswith(f"refusing to import {tarball}: unsafe member")
    assert_nothing_left(btrfs_pool, *must_not_exist, btrfs_pool.path("images") / "evil",
                        btrfs_pool.root / "evil")
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_text() == "host secret\n"
    assert (outside / "secret").stat().st_nlink == 1


def test_a_symlink_replaced_by_a_file_is_not_followed(btrfs_pool: StorageDriver,
                                                      tmp_path: Path) -> None:
    """file, then symlink to the host, then file again at the same name: the last one replaces
    the symlink, it is not written through it (what GNU tar does too)."""
    target = tmp_path / "host-file"
    target.write_text("host\n")
    tarball = write_tar(tmp_path / "t.tar", [
        (_member("f"), b"one"),
        (_member("f", tarfile.SYMTYPE, linkname=str(target)), b""),
        (_member("f"), b"two"),
    ])
    dataset = import_image(btrfs_pool, "replace", tarball)
    assert (dataset.path / "f").read_bytes() == b"two" and not (dataset.path / "f").is_symlink()
    assert target.read_text() == "host\n"


def test_truncated_tarball(btrfs_pool: StorageDriver, tmp_path: Path) -> None:
    # Random data so the compressed tarball is big enough to cut into a meaningful half.
    members = [*rootfs_members(), (_member("big"), os.urandom(1 << 20))]
    whole = write_tar(tmp_path / "whole.tar.gz", members, "w:gz").read_bytes()
    half = tmp_path / "half.tar.gz"
    half.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(UserError, match=rf"^{half} is not a valid tarball \(truncated or "
                                        r"corrupt\): "):
        import_image(btrfs_pool, "half", half)
    assert_nothing_left(btrfs_pool)


def test_plain_tar_cut_at_a_member_boundary(btrfs_pool: StorageDriver, tmp_path: Path) -> None:
    """tarfile alone would end quietly here and import half a root file system."""
    whole = write_tar(tmp_path / "whole.tar", rootfs_members()).read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole[:5 * 512])
    with pytest.raises(UserError, match="not a valid tarball"):
        import_image(btrfs_pool, "cut", cut)
    assert_nothing_left(btrfs_pool)


@pytest.mark.parametrize("content", [b"", b"this is not a tarball\n" * 100, os.urandom(4096)])
def test_not_a_tarball(btrfs_pool: StorageDriver, tmp_path: Path, content: bytes) -> None:
    garbage = tmp_path / "rootfs.tar.gz"  # the name says tarball; the bytes do not
    garbage.write_bytes(content)
    with pytest.raises(UserError, match=rf"^{garbage} is neither a directory nor a tarball "
                                        r"\(\.tar, \.tar\.gz"):
        import_image(btrfs_pool, "garbage", garbage)
    assert_nothing_left(btrfs_pool)


def test_special_file_source(btrfs_pool: StorageDriver) -> None:
    with pytest.raises(UserError, match="^/dev/null is neither a directory nor a tarball"):
        import_image(btrfs_pool, "null", Path("/dev/null"))
    assert_nothing_left(btrfs_pool)


def test_missing_source(btrfs_pool: StorageDriver, tmp_path: Path) -> None:
    missing = tmp_path / "nope.tar"
    with pytest.raises(UserError, match=f"^no such file or directory: {missing}$"):
        import_image(btrfs_pool, "nope", missing)
    assert_nothing_left(btrfs_pool)


def test_bad_name(btrfs_pool: StorageDriver, tmp_path: Path) -> None:
    tarball = write_tar(tmp_path / "t.tar", rootfs_members())
    for name in ("", "a/b", "../x", "-x"):
        with pytest.raises(UserError, match="image name"):
            import_image(btrfs_pool, name, tarball)
    assert_nothing_left(btrfs_pool)


def test_duplicate_name(btrfs_pool: StorageDriver, tmp_path: Path) -> None:
    tarball = write_tar(tmp_path / "t.tar", rootfs_members())
    first = import_image(btrfs_pool, "dup", tarball)
    before = describe_tree(first.path)
    other = write_tar(tmp_path / "other.tar", [(_member("other"), b"x")])
    with pytest.raises(Conflict, match=r"^image 'dup' already exists; remove it first with "
                                       r"`hc image rm dup`$"):
        import_image(btrfs_pool, "dup", other)
    assert [d.name for d in btrfs_pool.list("images")] == ["images/dup"]
    assert describe_tree(first.path) == before


def test_cancelled_by_the_progress_callback(btrfs_pool: StorageDriver, tmp_path: Path) -> None:
    """The agent cancels by raising from the callback: the import stops and cleans up."""
    members = [(_member(f"file{i}"), os.urandom(256 << 10)) for i in range(16)]
    tarball = write_tar(tmp_path / "t.tar", members)

    class Cancelled(Exception):
        pass

    def progress(event: Progress) -> None:
        if event.done > 1 << 20:
            raise Cancelled

    with pytest.raises(Cancelled):
        import_image(btrfs_pool, "cancelled", tarball, progress)
    assert_nothing_left(btrfs_pool)


def _random_file(path: Path, size: int) -> Path:
    with path.open("wb") as file:
        for _ in range(size >> 20):
            file.write(os.urandom(1 << 20))
    return path


def test_pool_full_during_tarball_import(tiny_btrfs_pool: StorageDriver,
                                         tmp_path: Path) -> None:
    big = _random_file(tmp_path / "big.bin", 200 << 20)  # incompressible, pool is 128 MiB
    tarball = tmp_path / "big.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(big, "big.bin")
    with pytest.raises(PoolFull, match=rf"^the pool at {tiny_btrfs_pool.root} is full "
                                       r"\(.* free\): could not import image big; remove"):
        import_image(tiny_btrfs_pool, "big", tarball)
    assert_nothing_left(tiny_btrfs_pool)


def test_pool_full_during_directory_import(tiny_btrfs_pool: StorageDriver,
                                           tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    _random_file(source / "big.bin", 200 << 20)
    with pytest.raises(PoolFull, match="is full .*could not import image big"):
        import_image(tiny_btrfs_pool, "big", source)
    assert_nothing_left(tiny_btrfs_pool)


# -- recipes ----------------------------------------------------------------------------------

def test_busybox_builds_fast_and_runs_a_command(btrfs_pool: StorageDriver) -> None:
    progress = Recorder()
    start = time.monotonic()
    dataset = build_image(btrfs_pool, "busybox", "busybox", progress=progress)
    elapsed = time.monotonic() - start
    print(f"busybox built in {elapsed:.2f} s")
    assert dataset.readonly and dataset.name == "images/busybox"
    root = dataset.path
    assert os.readlink(root / "sbin/init") == "/bin/busybox"
    assert os.readlink(root / "bin/sh") == "/bin/busybox"
    assert "ID=busybox" in (root / "etc/os-release").read_text()
    for path in ("etc/passwd", "etc/group", "etc/hostname"):
        assert (root / path).is_file()
    for path in ("tmp", "proc", "sys", "dev", "run", "root"):
        assert (root / path).is_dir()
    assert progress.events[-1].done == progress.events[-1].total

    if shutil.which("systemd-nspawn") is None:
        pytest.skip("needs systemd-nspawn (apt-get install systemd-container)")
    # --keep-unit: without systemd as PID 1 (this machine) nspawn cannot make a scope unit.
    result = subprocess.run(
        ["systemd-nspawn", f"--directory={root}", "--register=no", "--keep-unit", "-q",
         "/bin/sh", "-c", "echo hi"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"


def test_busybox_duplicate_and_bad_options(btrfs_pool: StorageDriver) -> None:
    build_image(btrfs_pool, "bb", "busybox")
    with pytest.raises(Conflict, match="image 'bb' already exists"):
        build_image(btrfs_pool, "bb", "busybox")
    with pytest.raises(UserError, match="recipe busybox takes no --release"):
        build_image(btrfs_pool, "bb2", "busybox", release="bookworm")
    with pytest.raises(UserError, match="unknown recipe 'alpine'; known recipes: busybox, debian"):
        build_image(btrfs_pool, "alpine", "alpine")
    assert [d.name for d in btrfs_pool.list("images")] == ["images/bb"]


def test_build_cancelled_leaves_nothing(btrfs_pool: StorageDriver) -> None:
    def progress(event: Progress) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_image(btrfs_pool, "busybox", "busybox", progress=progress)
    assert_nothing_left(btrfs_pool)


def _require_debootstrap() -> None:
    if shutil.which("debootstrap") is None:
        pytest.skip("needs debootstrap (apt-get install debootstrap)")


def test_debian_build_failure_says_why_and_leaves_nothing(btrfs_pool: StorageDriver) -> None:
    _require_debootstrap()
    # Port 9 on loopback: nothing listens, the download fails at once.
    with pytest.raises(HostError, match=r"^debootstrap bookworm from http://127\.0\.0\.1:9/debian "
                                        r"failed: .*Release.*debootstrap\.log:\n  "):
        build_image(btrfs_pool, "debian", "debian", mirror="http://127.0.0.1:9/debian")
    assert_nothing_left(btrfs_pool)


def test_debian_unknown_release(btrfs_pool: StorageDriver) -> None:
    _require_debootstrap()
    with pytest.raises(UserError, match="debootstrap does not know the release 'bookwurm'"):
        build_image(btrfs_pool, "debian", "debian", release="bookwurm",
                    mirror="http://127.0.0.1:9/debian")
    assert_nothing_left(btrfs_pool)


# The phases `hc image build debian` reports, in order.
BUILD_PHASES = ("prepare", "download", "extract", "install", "done", "clean")


def test_debian_build(devhost: DevHost, debian_build: Any) -> None:
    """The image the session's `debian_build` fixture made with `hc image build debian`."""
    path = f"/var/lib/homecloud/pool/images/{debian_build.name}"
    ro = devhost.run("btrfs", "property", "get", "-ts", path, "ro").stdout.strip()
    assert ro == "ro=true"
    root = guest_file(devhost, path)
    assert "bookworm" in (root / "etc/os-release").read_text()
    assert (root / "usr/lib/systemd/systemd").exists() and (root / "usr/bin/ip").exists()
    assert (root / "etc/machine-id").read_text() == ""
    assert not (root / "etc/hostname").exists() and not (root / "debootstrap").exists()
    assert list((root / "var/cache/apt/archives").glob("*.deb")) == []
    if not debian_build.output:
        pytest.skip("the image was there before this session: no build progress to check")
    phases = [m.group(1) for m in re.finditer(rf"^building {debian_build.name}: (\w+)",
                                               debian_build.output, re.MULTILINE)]
    assert {"download", "extract", "install", "done"} <= set(phases), debian_build.output
    assert phases == sorted(phases, key=BUILD_PHASES.index)  # only ever forward


def test_debian_build_cancelled_while_installing(btrfs_pool: StorageDriver) -> None:
    """Stopped as dpkg starts in the chroot (/proc mounted inside): nothing is left. Cancelled
    at the first package installed, so the suite pays for a part of a debootstrap only."""
    _require_debootstrap()

    class Cancelled(Exception):
        pass

    mounted: list[Path] = []

    def progress(event: Progress) -> None:
        if event.phase == "install" and event.done > 0:
            mounted.extend(mounts_below(Path("/proc/self/mountinfo").read_text(),
                                        btrfs_pool.root))
            raise Cancelled

    with pytest.raises(Cancelled):
        build_image(btrfs_pool, "debian", "debian", progress=progress)
    assert mounted, "nothing was mounted in the chroot when the build was cancelled"
    assert_nothing_left(btrfs_pool)
