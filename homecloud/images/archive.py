"""Tarball formats: recognise one by its magic bytes and read it decompressed, verified.

Extensions lie (a .tar.gz that is really xz, a download saved as "rootfs"), so the first bytes
decide. zstd is read through a ``zstd -dc`` pipe because Python 3.11's tarfile and stdlib lack it.
Truncation and corruption are detected everywhere: the decompressed stream is read to its end
after the last member, so gzip's CRC, xz's and bzip2's end-of-stream checks and zstd's exit
status are all seen.
"""

from __future__ import annotations

import enum
import io
import lzma
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, Self, cast

from homecloud.tools import ToolFailed, read_tool, require_tool

HEAD_SIZE = tarfile.BLOCKSIZE  # enough for every magic and one tar header
_CHUNK = 1 << 20


class Compression(enum.Enum):
    NONE = "tar"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    ZSTD = "zstd"


_MAGIC = (
    (b"\x1f\x8b", Compression.GZIP),
    (b"BZh", Compression.BZIP2),
    (b"\xfd7zXZ\x00", Compression.XZ),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
)


class CorruptArchive(tarfile.ReadError):
    """The archive ends early or its data does not decode."""


def looks_like_tar(head: bytes) -> bool:
    """Whether ``head`` starts with a tar header (ustar magic, or a valid old-style header)."""
    if len(head) < tarfile.BLOCKSIZE:
        return False
    if head[257:262] == b"ustar":
        return True
    try:
        tarfile.TarInfo.frombuf(head[:tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def detect_compression(head: bytes) -> Compression | None:
    """The compression of a tarball starting with ``head``; None if it is not a tarball."""
    for magic, compression in _MAGIC:
        if head.startswith(magic):
            return compression
    return Compression.NONE if looks_like_tar(head) else None


class _CheckedReader(io.RawIOBase):
    """A decompressed stream whose decoding errors all become CorruptArchive."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return self._inner.read(size)
        except (EOFError, zlib.error, lzma.LZMAError) as exc:
            raise CorruptArchive(str(exc) or "unexpected end of data") from exc
        except OSError as exc:
            # gzip and bz2 report bad data as OSError without an errno; real I/O errors have one.
            if exc.errno is None:
                raise CorruptArchive(str(exc)) from exc
            raise

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read to the end, so trailers and checksums are verified."""
        while self.read(_CHUNK):
            pass


@contextmanager
def _zstd_stream(source: BinaryIO) -> Iterator[BinaryIO]:
    zstd = require_tool("zstd", "zstd")
    # zstd reads the source's file descriptor itself; its offset, shared with ours, shows how
    # far it has read.
    try:
        with read_tool([zstd, "-dc", "-q"], source.fileno()) as stream:
            yield stream
    except ToolFailed as exc:
        raise CorruptArchive(str(exc)) from None


@contextmanager
def _decompressor(source: BinaryIO, compression: Compression) -> Iterator[BinaryIO]:
    import bz2
    import gzip

    if compression is Compression.NONE:
        yield source
    elif compression is Compression.GZIP:
        with gzip.GzipFile(fileobj=source, mode="rb") as stream:
            yield stream  # type: ignore[misc]
    elif compression is Compression.BZIP2:
        with bz2.BZ2File(source) as stream:
            yield stream  # type: ignore[misc]
    elif compression is Compression.XZ:
        with lzma.LZMAFile(source) as stream:
            yield stream  # type: ignore[misc]
    else:
        with _zstd_stream(source) as stream:
            yield stream


@contextmanager
def open_decompressed(source: BinaryIO, compression: Compression) -> Iterator[BinaryIO]:
    """The tar stream inside ``source``; verified to its end when the block exits normally."""
    with _decompressor(source, compression) as stream:
        reader = _CheckedReader(stream)
        yield cast(BinaryIO, reader)
        reader.drain()


# Not in typeshed's tarfile, but in every CPython since 3.3.
_EOF_HEADER: type[Exception] = tarfile.EOFHeaderError  # type: ignore[attr-defined]
_EMPTY_HEADER: type[Exception] = tarfile.EmptyHeaderError  # type: ignore[attr-defined]


class StrictTarInfo(tarfile.TarInfo):
    """Headers that tarfile would take as a quiet end of the archive are errors here.

    tarfile stops without a word at a truncated or garbled header after the first; only an
    all-zero block (the end-of-archive marker) is a real end.
    """

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(tarfile_)
        except _EOF_HEADER:
            raise
        except tarfile.HeaderError as exc:
            if isinstance(exc, _EMPTY_HEADER):
                message = "the archive ends without its end-of-archive marker"
            else:
                message = f"bad header at byte {tarfile_.offset}: {exc}"
            raise CorruptArchive(message) from exc


def open_tar_stream(stream: BinaryIO) -> tarfile.TarFile:
    """A tarfile reading ``stream`` strictly, member by member, without seeking."""
    return tarfile.open(fileobj=stream, mode="r|", tarinfo=StrictTarInfo)
