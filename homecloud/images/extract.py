"""Extract a tar stream into an empty directory, member by member, never writing outside it.

Every member is admitted by homecloud.images.members.ExtractionGuard first; final path components
are created with O_EXCL|O_NOFOLLOW (or an operation that never follows them), so a symlink
cannot redirect a write. Owners (numeric), modes including setuid/setgid, mtimes, device nodes
and pax xattrs (``SCHILY.xattr.*``, e.g. file capabilities) are kept. Directory attributes are
set last, so a read-only directory or its mtime is not disturbed by what is written inside it.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from homecloud.errors import HostError
from homecloud.images.archive import open_tar_stream
from homecloud.images.members import ExtractionGuard, Kind, Parts, UnsafeMember, member_parts

_CHUNK = 1 << 20
_XATTR_PREFIX = "SCHILY.xattr."


def member_kind(member: tarfile.TarInfo) -> Kind:
    if member.isdir():
        return Kind.DIRECTORY
    if member.issym():
        return Kind.SYMLINK
    if member.isreg() or member.islnk() or member.ischr() or member.isblk() or member.isfifo():
        return Kind.OTHER
    raise UnsafeMember(member.name, f"its type {member.type!r} is not supported")


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path,
                tick: Callable[[], None]) -> None:
    data = tar.extractfile(member)
    assert data is not None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with open(fd, "wb", closefd=True) as out:
        while chunk := data.read(_CHUNK):
            out.write(chunk)
            tick()


def _create(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path, path: Path,
            tick: Callable[[], None]) -> None:
    """Create the member's own file system object at ``path`` (which does not exist)."""
    if member.isdir():
        os.mkdir(path, 0o700)
    elif member.issym():
        os.symlink(member.linkname, path)
    elif member.islnk():
        # follow_symlinks=False: a hardlink to a symlink links the symlink itself.
        os.link(root.joinpath(*member_parts(member.linkname)), path, follow_symlinks=False)
    elif member.isreg():
        _write_file(tar, member, path, tick)
    elif member.isfifo():
        os.mkfifo(path, 0o600)
    else:
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))


def _set_xattrs(member: tarfile.TarInfo, path: Path) -> None:
    for key, value in member.pax_headers.items():
        if not key.startswith(_XATTR_PREFIX):
            continue
        try:
            os.setxattr(path, key[len(_XATTR_PREFIX):], value.encode("utf-8", "surrogateescape"),
                        follow_symlinks=False)
        except OSError as exc:
            # Like GNU tar: an attribute this file system or file type cannot hold is skipped
            # (user.* on a symlink, security.selinux without SELinux), not fatal.
            if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP):
                raise


def set_attributes(member: tarfile.TarInfo, path: Path) -> None:
    # Order matters: chown clears setuid bits and file capabilities, so mode and xattrs follow.
    os.chown(path, member.uid, member.gid, follow_symlinks=False)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)
    _set_xattrs(member, path)
    os.utime(path, (member.mtime, member.mtime), follow_symlinks=False)


def _extract_one(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path,
                 guard: ExtractionGuard, directories: dict[Parts, tarfile.TarInfo],
                 tick: Callable[[], None]) -> None:
    admission = guard.admit(member.name, member_kind(member),
                            member.linkname if member.islnk() else None)
    for parent in admission.create_parents:
        os.mkdir(root.joinpath(*parent), 0o755)
    path = root.joinpath(*admission.parts)
    if admission.replace:
        os.unlink(path)
    if not admission.exists_as_directory:
        _create(tar, member, root, path, tick)
    if member.isdir():
        directories[admission.parts] = member
    elif not member.islnk():  # a hardlink shares its target's inode and attributes
        set_attributes(member, path)


def extract_tar(stream: BinaryIO, root: Path, tick: Callable[[], None]) -> int:
    """Extract the tar ``stream`` into the empty directory ``root``; return the member count.

    ``tick`` is called after every member and every chunk of file data (progress). Raises
    UnsafeMember, tarfile.TarError (CorruptArchive) for a bad archive, OSError(ENOSPC) when the
    disk is full, HostError when the host refuses an operation.
    """
    guard = ExtractionGuard()
    directories: dict[Parts, tarfile.TarInfo] = {}
    count = 0
    with open_tar_stream(stream) as tar:
        for member in tar:
            with _host_errors(member):
                _extract_one(tar, member, root, guard, directories, tick)
            count += 1
            tick()
    for parts, member in directories.items():
        with _host_errors(member):
            set_attributes(member, root.joinpath(*parts))
    return count


@contextmanager
def _host_errors(member: tarfile.TarInfo) -> Iterator[None]:
    """OSErrors name the member; a full disk stays an OSError for the pool-full message."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise
        raise HostError(f"cannot extract member {member.name!r}: "
                        f"{exc.strerror or exc}") from exc
