"""A request body read as a stream (a snapshot stream of any size), framed by Content-Length
or chunked transfer coding, for routes that take bytes rather than JSON.

Each read calls ``before_read`` first: the server arms its body deadline there, so a sender
that goes silent mid-stream is cut off rather than holding its connection for ever.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from email.message import Message
from typing import BinaryIO, cast

from homecloud.errors import UserError

MAX_CHUNK_LINE = 1024
CHUNK = 1 << 20


class RequestBody(io.RawIOBase):
    """Exactly the body's bytes from the connection's ``rfile``; ends early: UserError."""

    def __init__(self, rfile: io.BufferedIOBase, length: int | None, chunked: bool,
                 before_read: Callable[[], None] = lambda: None) -> None:
        self._rfile = rfile
        self._chunked = chunked
        self._before_read = before_read
        self._left = length if length is not None else 0  # of the body, or of this chunk
        self._done = not chunked and not self._left

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        if self._done or size == 0:
            return b""
        self._before_read()
        if self._chunked and not self._left:
            self._left = self._next_chunk()
            if not self._left:
                self._done = True
                return b""
        # All of what is asked that this chunk holds: the connection's small buffer would
        # otherwise cut every read to a few KiB.
        data = self._rfile.read(min(size, self._left))
        if not data:
            raise UserError("request body ended early")
        self._left -= len(data)
        if not self._chunked and not self._left:
            self._done = True
        elif self._chunked and not self._left:
            self._rfile.readline(MAX_CHUNK_LINE)  # the CRLF after the chunk's data
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def _next_chunk(self) -> int:
        line = self._rfile.readline(MAX_CHUNK_LINE)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise UserError(f"bad chunk in the request body: {line[:40]!r}") from None
        if size < 0:
            raise UserError("bad chunk in the request body")
        if size == 0:
            while self._rfile.readline(MAX_CHUNK_LINE) not in (b"\r\n", b"\n", b""):
                pass  # trailer fields
        return size

    @property
    def finished(self) -> bool:
        return self._done


def request_body(rfile: io.BufferedIOBase, headers: Message,
                 before_read: Callable[[], None] = lambda: None) -> BinaryIO:
    """The body of a request with ``headers``, as a binary file."""
    get = headers.get
    if (get("Transfer-Encoding") or "").lower() == "chunked":
        return cast(BinaryIO, RequestBody(rfile, None, True, before_read))
    length = get("Content-Length")
    try:
        size = int(length) if length else 0
    except ValueError:
        raise UserError(f"bad Content-Length {length!r}") from None
    if size < 0:
        raise UserError(f"bad Content-Length {length!r}")
    return cast(BinaryIO, RequestBody(rfile, size, False, before_read))
