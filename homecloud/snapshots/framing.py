"""Snapshot streams on the wire: the driver's stream followed by its SHA-256 (32 bytes).

The receiver holds back the last 32 bytes it has read and compares them with the digest of
everything before them when the body ends; a stream cut short or changed on the way fails there,
before the receive is allowed to finish, so no damaged snapshot is ever kept.

Streams are large (a whole dataset), so each byte is copied as few times as possible and
hashed in a thread of its own while the copying goes on: hashlib lets go of the GIL for large
buffers, so hashing, the socket and the pipes to `btrfs send`/`receive` overlap.
"""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from homecloud.errors import UserError

DIGEST_SIZE = 32
CHUNK = 1 << 20  # what one read asks for
# Smaller buffers (a socket's trickle) are hashed at once: handing them to the thread would
# cost more than it saves.
BACKGROUND_MIN = 1 << 17


class BackgroundDigest:
    """SHA-256 of what ``update`` is given (immutable bytes), computed in its own thread, one
    buffer behind the caller: memory stays bounded to two buffers."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="hc-digest")
        self._pending: Future[None] | None = None

    def update(self, data: bytes) -> None:
        self._wait()
        if len(data) < BACKGROUND_MIN:
            self._hash.update(data)
        else:
            self._pending = self._worker.submit(self._hash.update, data)

    def digest(self) -> bytes:
        self._wait()
        self.close()
        return self._hash.digest()

    def close(self) -> None:
        self._worker.shutdown(wait=True)

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None


class DigestWriter:
    """Passes writes on to ``out`` (anything with ``write``); ``finish`` appends the digest."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._digest = BackgroundDigest()
        self.size = 0

    def write(self, data: bytes) -> int:
        data = bytes(data)  # hashed after this returns: must not change under the hash
        self._digest.update(data)
        self._out.write(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    def finish(self) -> None:
        self._out.write(self._digest.digest())
        self._out.flush()

    def close(self) -> None:
        self._digest.close()


class DigestCheckedReader(io.RawIOBase):
    """The stream without its trailing digest; at its end, UserError unless the digest
    matches (the reader then never reports a clean end of file).

    It reads one buffer ahead and hands on the buffer before, which cannot hold any of the
    digest once 32 bytes or more follow it: no byte is copied on the way."""

    def __init__(self, inp: BinaryIO) -> None:
        self._inp = inp
        self._digest = BackgroundDigest()
        self._ahead = b""  # read, not yet handed on: may end with (part of) the digest
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
            data = self._inp.read(max(size, DIGEST_SIZE))
            if not data:
                self._end()
                break
            if len(data) >= DIGEST_SIZE and len(self._ahead) <= size:
                out, self._ahead = self._ahead, data
                if out:
                    return self._passed(out)
                continue
            # Small pieces, or small reads: what is surely not the digest goes at once, so
            # what is held back stays small.
            self._ahead += data
            if len(self._ahead) > DIGEST_SIZE:
                n = min(size, len(self._ahead) - DIGEST_SIZE)
                out, self._ahead = self._ahead[:n], self._ahead[n:]
                return self._passed(out)
        out, self._tail = self._tail[:size], self._tail[size:]
        return out

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._digest.close()
        super().close()

    def _passed(self, data: bytes) -> bytes:
        self._digest.update(data)
        self.size += len(data)
        return data

    def _end(self) -> None:
        self._ended = True
        ahead, self._ahead = self._ahead, b""
        rest, digest = ahead[:-DIGEST_SIZE], ahead[-DIGEST_SIZE:]
        if len(ahead) >= DIGEST_SIZE:
            self._passed(rest)
        if len(digest) != DIGEST_SIZE or digest != self._digest.digest():
            self._digest.close()
            raise UserError("the snapshot stream is damaged (its SHA-256 does not match, or it "
                            "was cut short): nothing was kept; send it again")
        self._tail = rest
