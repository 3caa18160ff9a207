"""Tarball recognition, strict reading and mount parsing (archive.py, mounts.py): no root."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from homecloud.images.archive import (
    Compression,
    CorruptArchive,
    detect_compression,
    open_decompressed,
    open_tar_stream,
)
from homecloud.images.mounts import mounts_below
from homecloud.images.recipes.busybox import is_static_elf


def make_tar(files: dict[str, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


TAR = make_tar({"etc/os-release": b"ID=test\n", "bin/sh": b"\x7fELF" + bytes(100)})


@pytest.mark.parametrize("data, compression", [
    (TAR, Compression.NONE),
    (make_tar({"a": b"x"}, tarfile.GNU_FORMAT), Compression.NONE),
    (make_tar({"a": b"x"}, tarfile.USTAR_FORMAT), Compression.NONE),
    (gzip.compress(TAR), Compression.GZIP),
    (bz2.compress(TAR), Compression.BZIP2),
    (lzma.compress(TAR), Compression.XZ),
    (b"\x28\xb5\x2f\xfd" + bytes(600), Compression.ZSTD),
])
def test_detects_by_magic(data: bytes, compression: Compression) -> None:
    assert detect_compression(data[:512]) is compression


def test_old_v7_header_without_magic_is_a_tar() -> None:
    header = bytearray(TAR[:512])
    header[257:265] = bytes(8)  # no "ustar": a v7 header; the checksum does not cover magic...
    header[148:156] = b" " * 8  # ...so recompute it
    header[148:156] = b"%06o\0 " % sum(header)
    assert detect_compression(bytes(header)) is Compression.NONE


@pytest.mark.parametrize("data", [
    b"", b"hello world\n" * 100, bytes(1024), b"QFI\xfb" + bytes(600)])
def test_not_a_tarball(data: bytes) -> None:
    assert detect_compression(data[:512]) is None


def _names(data: bytes, compression: Compression) -> list[str]:
    with open_decompressed(io.BytesIO(data), compression) as stream, \
            open_tar_stream(stream) as tar:
        return [member.name for member in tar]


def test_reads_every_stdlib_format() -> None:
    for compress, compression in ((lambda d: d, Compression.NONE),
                                  (gzip.compress, Compression.GZIP),
                                  (bz2.compress, Compression.BZIP2),
                                  (lzma.compress, Compression.XZ)):
        assert _names(compress(TAR), compression) == ["etc/os-release", "bin/sh"]


@pytest.mark.parametrize("cut", [512, 1024, 1536, 2048 + 100])
def test_truncated_plain_tar_is_an_error_not_a_short_archive(cut: int) -> None:
    # tarfile alone ends quietly when a header is missing or short after the first member.
    with pytest.raises(tarfile.TarError):
        _names(TAR[:cut], Compression.NONE)


def test_garbage_after_a_member_is_an_error() -> None:
    end = TAR.index(bytes(1024), 1536)  # the end-of-archive blocks
    data = TAR[:end] + b"garbage!" * 64 + bytes(1024)
    with pytest.raises(CorruptArchive, match="bad header"):
        _names(data, Compression.NONE)


@pytest.mark.parametrize("compress, compression", [
    (gzip.compress, Compression.GZIP), (bz2.compress, Compression.BZIP2),
    (lzma.compress, Compression.XZ)])
def test_truncated_or_corrupt_compressed_streams(compress: Callable[[bytes], bytes],
                                                 compression: Compression) -> None:
    data = compress(TAR + bytes(20000))
    with pytest.raises(tarfile.TarError):
        _names(data[:len(data) // 2], compression)
    with pytest.raises(tarfile.TarError):
        _names(data[:-4], compression)  # only the trailer missing: seen by draining
    corrupt = bytearray(data)
    corrupt[len(corrupt) // 2] ^= 0xFF
    with pytest.raises(tarfile.TarError):
        _names(bytes(corrupt), compression)


MOUNTINFO = r"""22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 7:3 / /tmp/pool rw,relatime shared:2 - btrfs /dev/loop3 rw
41 30 0:5 / /tmp/pool/images/.partial-x/proc rw - proc proc rw
42 30 0:6 / /tmp/pool/images/.partial-x/sys rw - sysfs sysfs rw
43 42 0:7 / /tmp/pool/images/.partial-x/sys/fs/cgroup rw - cgroup2 cgroup rw
44 30 0:8 / /tmp/pool/images/.partial-x\040y/proc rw - proc proc rw
45 30 0:8 / /tmp/pool/images/.partial-xx/proc rw - proc proc rw
"""


def test_mounts_below_deepest_first() -> None:
    root = Path("/tmp/pool/images/.partial-x")
    assert mounts_below(MOUNTINFO, root) == [
        root / "sys/fs/cgroup", root / "proc", root / "sys"]
    assert mounts_below(MOUNTINFO, Path("/tmp/pool/images/.partial-x y")) == [
        Path("/tmp/pool/images/.partial-x y/proc")]
    assert mounts_below(MOUNTINFO, Path("/tmp/elsewhere")) == []


def _elf(program_types: list[int]) -> bytes:
    import struct

    header = bytearray(64 + 56 * len(program_types))
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x20, 64)
    struct.pack_into("<HH", header, 0x36, 56, len(program_types))
    for index, p_type in enumerate(program_types):
        struct.pack_into("<I", header, 64 + 56 * index, p_type)
    return bytes(header)


def test_static_elf_check() -> None:
    assert is_static_elf(_elf([1, 1, 4]))  # LOAD, LOAD, NOTE
    assert not is_static_elf(_elf([6, 3, 1]))  # PHDR, INTERP, LOAD: dynamically linked
    assert not is_static_elf(b"#!/bin/sh\n" + bytes(100))
