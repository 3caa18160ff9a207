"""Snapshot streams carry their length and CRC-32C (homecloud.snapshots.framing): a damaged or
cut stream fails at its end, a whole one reads back exactly."""

from __future__ import annotations

import io
import os

import google_crc32c
import pytest

from homecloud.errors import UserError
from homecloud.snapshots.framing import TRAILER, CheckedReader, ChecksumWriter


def framed(data: bytes) -> bytes:
    out = io.BytesIO()
    writer = ChecksumWriter(out)
    for start in range(0, len(data), 1000):
        writer.write(data[start:start + 1000])
    writer.finish()
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, 11, 12, 13, 4096, 300_001])
def test_a_whole_stream_reads_back_exactly(size: int) -> None:
    data = os.urandom(size)
    reader = CheckedReader(io.BufferedReader(io.BytesIO(framed(data)), 7))
    assert reader.read() == data
    assert reader.size == size


@pytest.mark.parametrize("damage", ["flip", "flip-trailer", "cut", "cut-trailer", "empty",
                                    "extra", "cut-with-its-crc"])
def test_a_damaged_stream_fails_before_its_end(damage: str) -> None:
    wire = bytearray(framed(os.urandom(10_000)))
    if damage == "flip":
        wire[5000] ^= 1
    elif damage == "flip-trailer":
        wire[-10] ^= 0x80  # the length's
    elif damage == "cut":
        del wire[4000:]
    elif damage == "cut-trailer":
        del wire[-1:]
    elif damage == "cut-with-its-crc":  # the length still says what was sent
        head = bytes(wire[:4000])
        wire = bytearray(head + TRAILER.pack(10_000, google_crc32c.value(head)))
    elif damage == "empty":
        wire = bytearray()
    else:
        wire += b"x"
    reader = CheckedReader(io.BytesIO(bytes(wire)))
    with pytest.raises(UserError, match="stream is damaged"):
        while reader.read(4096):
            pass


def test_large_pieces_and_views_read_back_exactly() -> None:
    pieces: list[bytes | memoryview | bytearray] = [
        os.urandom(1 << 20), memoryview(os.urandom(5)), bytearray(os.urandom(3 << 19))]
    out = io.BytesIO()
    writer = ChecksumWriter(out)
    for piece in pieces:
        writer.write(piece)
    writer.finish()
    reader = CheckedReader(io.BytesIO(out.getvalue()))
    assert b"".join(iter(lambda: reader.read(1 << 20), b"")) == b"".join(pieces)
    wire = bytearray(out.getvalue())
    wire[(1 << 20) + 100] ^= 1
    damaged = CheckedReader(io.BytesIO(bytes(wire)))
    with pytest.raises(UserError, match="stream is damaged"):
        while damaged.read(1 << 20):
            pass


class Trickle(io.RawIOBase):
    """A stream that hands out pieces of the sizes given, in turn (a socket's reads)."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._data, self._sizes, self._at = data, sizes, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        want = self._sizes[self._at % len(self._sizes)]
        self._at += 1
        piece, self._data = self._data[:want], self._data[want:]
        return piece


@pytest.mark.parametrize("pieces", [[1], [11, 13], [12], [5000, 7, 40], [1 << 16]])
@pytest.mark.parametrize("reads", [1, 7, 12, 4096, 1 << 20])
def test_any_way_of_reading_any_pieces_gives_the_stream_back(pieces: list[int],
                                                             reads: int) -> None:
    data = os.urandom(70_001)
    reader = CheckedReader(Trickle(framed(data), pieces))  # type: ignore[arg-type]
    out = b"".join(iter(lambda: reader.read(reads), b""))
    assert out == data and reader.size == len(data)


def test_the_trailer_is_the_length_and_crc32c_big_endian() -> None:
    """What a sender of another make must append (and what the system tests compute)."""
    data = os.urandom(5000)
    assert framed(data)[-12:] == (len(data).to_bytes(8, "big")
                                  + google_crc32c.value(data).to_bytes(4, "big"))
    assert google_crc32c.value(b"123456789") == 0xE3069283  # CRC-32C's check value
