"""Snapshot streams on the wire: the driver's stream, then a 12-byte trailer: the stream's
length (8 bytes) and its CRC-32 (4 bytes), both big-endian.

The receiver holds back the last 12 bytes it has read and compares them with the length and
CRC-32 of everything before them when the body ends; a stream cut short or changed on the way
fails there, before the receive is allowed to finish, so no damaged snapshot is ever kept.

The trailer guards against accidents, not against an attacker, so a CRC is enough: only an
authenticated caller reaches the receive route (root or the homecloud group on the socket, an
admin's token through the front door), and such a caller could send a matching digest of any
kind with any stream. On the way, TLS refuses altered bytes between hosts and a UNIX socket
alters none; what is left is a stream cut short or mangled by something in between (a proxy,
the copying on either side). The length catches every cut; CRC-32 catches every change of up
to 32 adjacent bits and all but one in 2^32 of other changes; `btrfs receive` checks the
CRC-32C of every command in the stream besides. SHA-256 here cost 2-3 times the CPU of zlib's
CRC-32 on each side, on a machine whose two cores also run `btrfs send` and `receive`.

Streams are large (a whole dataset), so each byte is copied as few times as possible and
checksummed in a thread of its own while the copying goes on: zlib lets go of the GIL for
large buffers, so the checksum, the socket and the pipes to `btrfs send`/`receive` overlap.
"""

from __future__ import annotations

import io
import struct
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from homecloud.errors import UserError

TRAILER = struct.Struct(">QI")  # length, CRC-32
TRAILER_SIZE = TRAILER.size
CHUNK = 1 << 20  # what one read asks for
# Smaller buffers (a socket's trickle) are checksummed at once: handing them to the thread
# would cost more than it saves.
BACKGROUND_MIN = 1 << 17


class BackgroundChecksum:
    """Length and CRC-32 of what ``update`` is given (immutable bytes), computed in a thread
    of its own, one buffer behind the caller: memory stays bounded to two buffers."""

    def __init__(self) -> None:
        self._crc = 0
        self._size = 0
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="hc-checksum")
        self._pending: Future[None] | None = None

    def update(self, data: bytes) -> None:
        self._wait()
        self._size += len(data)
        if len(data) < BACKGROUND_MIN:
            self._add(data)
        else:
            self._pending = self._worker.submit(self._add, data)

    def trailer(self) -> bytes:
        self._wait()
        self.close()
        return TRAILER.pack(self._size, self._crc)

    def close(self) -> None:
        self._worker.shutdown(wait=True)

    def _add(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None


class ChecksumWriter:
    """Passes writes on to ``out`` (anything with ``write``); ``finish`` appends the trailer."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._checksum = BackgroundChecksum()
        self.size = 0

    def write(self, data: bytes) -> int:
        data = bytes(data)  # checksummed after this returns: must not change under it
        self._checksum.update(data)
        self._out.write(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    def finish(self) -> None:
        self._out.write(self._checksum.trailer())
        self._out.flush()

    def close(self) -> None:
        self._checksum.close()


class CheckedReader(io.RawIOBase):
    """The stream without its trailer; at its end, UserError unless the trailer matches (the
    reader then never reports a clean end of file).

    It reads one buffer ahead and hands on the buffer before, which cannot hold any of the
    trailer once 12 bytes or more follow it: no byte is copied on the way."""

    def __init__(self, inp: BinaryIO) -> None:
        self._inp = inp
        self._checksum = BackgroundChecksum()
        self._ahead = b""  # read, not yet handed on: may end with (part of) the trailer
        self._tail = b""  # the checked rest of the stream, once its end was read
        self._ended = False
        self.size = 0

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

    def close(self) -> None:
        self._checksum.close()
        super().close()

    def _passed(self, data: bytes) -> bytes:
        self._checksum.update(data)
        self.size += len(data)
        return data

    def _end(self) -> None:
        self._ended = True
        ahead, self._ahead = self._ahead, b""
        rest, trailer = ahead[:-TRAILER_SIZE], ahead[-TRAILER_SIZE:]
        if len(ahead) >= TRAILER_SIZE:
            self._passed(rest)
        if len(trailer) != TRAILER_SIZE or trailer != self._checksum.trailer():
            self._checksum.close()
            raise UserError("the snapshot stream is damaged (its length or CRC-32 does not "
                            "match: it was cut short or changed on the way): nothing was kept; "
                            "send it again")
        self._tail = rest
