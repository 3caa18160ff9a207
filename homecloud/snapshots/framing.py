"""Snapshot streams on the wire: the driver's stream, then a 12-byte trailer: the stream's
length (8 bytes) and its CRC-32C (4 bytes), both big-endian.

The receiver holds back the last 12 bytes it has read and compares them with the length and
CRC-32C of everything before them when the body ends; a stream cut short or changed on the way
fails there, before the receive is allowed to finish, so no damaged snapshot is ever kept.

The trailer guards against accidents, not against an attacker, so a CRC is enough: only an
authenticated caller reaches the receive route (root or the homecloud group on the socket, an
admin's token through the front door), and such a caller could send a matching digest of any
kind with any stream. On the way, TLS refuses altered bytes between hosts and a UNIX socket
alters none; what is left is a stream cut short or mangled by something in between (a proxy,
the copying on either side). The length catches every cut; a 32-bit CRC catches every change
of up to 32 adjacent bits and all but one in 2^32 of other changes; `btrfs receive` checks the
CRC-32C of every command in the stream besides.

CRC-32C (Castagnoli, the one btrfs uses) rather than zlib's CRC-32 because the processor
computes it: google-crc32c runs at ~20 GiB/s here against ~1.8 GiB/s for zlib, which had
taken about half a second of CPU per GiB on each side, on two cores that also run `btrfs send`
and `receive`. At that speed it is done inline; no byte is copied for it.
"""

from __future__ import annotations

import io
import struct
from typing import BinaryIO

import google_crc32c

from homecloud.errors import UserError

TRAILER = struct.Struct(">QI")  # length, CRC-32C
TRAILER_SIZE = TRAILER.size
CHUNK = 1 << 20  # what one read asks for


class Checksum:
    """Length and CRC-32C of the bytes it is given."""

    def __init__(self) -> None:
        self.size = 0
        self._crc = 0

    def update(self, data: bytes) -> None:
        # The C extension takes read-only buffers only: a bytearray or a view is copied.
        self._crc = google_crc32c.extend(self._crc, data if type(data) is bytes else bytes(data))
        self.size += len(data)

    def trailer(self) -> bytes:
        return TRAILER.pack(self.size, self._crc)


class ChecksumWriter:
    """Passes writes on to ``out`` (anything with ``write``); ``finish`` appends the trailer."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._checksum = Checksum()

    @property
    def size(self) -> int:
        return self._checksum.size

    def write(self, data: bytes) -> int:
        self._checksum.update(data)
        self._out.write(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    def finish(self) -> None:
        self._out.write(self._checksum.trailer())
        self._out.flush()


class CheckedReader(io.RawIOBase):
    """The stream without its trailer; at its end, UserError unless the trailer matches (the
    reader then never reports a clean end of file).

    It reads one buffer ahead and hands on the buffer before, which cannot hold any of the
    trailer once 12 bytes or more follow it: no byte is copied on the way."""

    def __init__(self, inp: BinaryIO) -> None:
        self._inp = inp
        self._checksum = Checksum()
        self._ahead = b""  # read, not yet handed on: may end with (part of) the trailer
        self._tail = b""  # the checked rest of the stream, once its end was read
        self._ended = False

    @property
    def size(self) -> int:
        """The stream's bytes handed on so far (the trailer not included)."""
        return self._checksum.size

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        if size == 0:
            return b""
        while not self._ended:
            data = self._inp.read(max(size, TRAILER_SIZE))
            if not data:
                self._end()
                break
            if len(data) >= TRAILER_SIZE and len(self._ahead) <= size:
                out, self._ahead = self._ahead, data
                if out:
                    return self._passed(out)
                continue
            # Small pieces, or small reads: what is surely not the trailer goes at once, so
            # what is held back stays small.
            self._ahead += data
            if len(self._ahead) > TRAILER_SIZE:
                n = min(size, len(self._ahead) - TRAILER_SIZE)
                out, self._ahead = self._ahead[:n], self._ahead[n:]
                return self._passed(out)
        out, self._tail = self._tail[:size], self._tail[size:]
        return out

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def _passed(self, data: bytes) -> bytes:
        self._checksum.update(data)
        return data

    def _end(self) -> None:
        self._ended = True
        ahead, self._ahead = self._ahead, b""
        rest, trailer = ahead[:-TRAILER_SIZE], ahead[-TRAILER_SIZE:]
        if len(ahead) >= TRAILER_SIZE:
            self._passed(rest)
        if len(trailer) != TRAILER_SIZE or trailer != self._checksum.trailer():
            raise UserError("the snapshot stream is damaged (its length or CRC-32C does not "
                            "match: it was cut short or changed on the way): nothing was kept; "
                            "send it again")
        self._tail = rest
