"""Snapshot streams carry their SHA-256 (homecloud.snapshots.framing): a damaged or cut
stream fails at its end, a whole one reads back exactly."""

from __future__ import annotations

import io
import os

import pytest

from homecloud.errors import UserError
from homecloud.snapshots.framing import DigestCheckedReader, DigestWriter


def framed(data: bytes) -> bytes:
    out = io.BytesIO()
    writer = DigestWriter(out)
    for start in range(0, len(data), 1000):
        writer.write(data[start:start + 1000])
    writer.finish()
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, 31, 32, 33, 4096, 300_001])
def test_a_whole_stream_reads_back_exactly(size: int) -> None:
    data = os.urandom(size)
    reader = DigestCheckedReader(io.BufferedReader(io.BytesIO(framed(data)), 7))
    assert reader.read() == data
    assert reader.size == size


@pytest.mark.parametrize("damage", ["flip", "cut", "cut-digest", "empty", "extra"])
def test_a_damaged_stream_fails_before_its_end(damage: str) -> None:
    wire = bytearray(framed(os.urandom(10_000)))
    if damage == "flip":
        wire[5000] ^= 1
    elif damage == "cut":
        del wire[4000:]
    elif damage == "cut-digest":
        del wire[-1:]
    elif damage == "empty":
        wire = bytearray()
    else:
        wire += b"x"
    reader = DigestCheckedReader(io.BytesIO(bytes(wire)))
    with pytest.raises(UserError, match="stream is damaged"):
        while reader.read(4096):
            pass


def test_large_pieces_hashed_in_the_background_read_back_exactly() -> None:
    pieces = [os.urandom(1 << 20), os.urandom(5), os.urandom(3 << 19)]
    out = io.BytesIO()
    writer = DigestWriter(out)
    for piece in pieces:
        writer.write(piece)
    writer.finish()
    reader = DigestCheckedReader(io.BytesIO(out.getvalue()))
    assert b"".join(iter(lambda: reader.read(1 << 20), b"")) == b"".join(pieces)
    wire = bytearray(out.getvalue())
    wire[(1 << 20) + 100] ^= 1
    damaged = DigestCheckedReader(io.BytesIO(bytes(wire)))
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


@pytest.mark.parametrize("pieces", [[1], [31, 33], [32], [5000, 7, 40], [1 << 16]])
@pytest.mark.parametrize("reads", [1, 17, 32, 4096, 1 << 20])
def test_any_way_of_reading_any_pieces_gives_the_stream_back(pieces: list[int],
                                                             reads: int) -> None:
    data = os.urandom(70_001)
    reader = DigestCheckedReader(Trickle(framed(data), pieces))  # type: ignore[arg-type]
    out = b"".join(iter(lambda: reader.read(reads), b""))
    assert out == data and reader.size == len(data)
