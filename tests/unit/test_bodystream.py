"""Streamed request bodies (homecloud.agent.bodystream): Content-Length or chunked, read as
they come, every read of the connection announced first (the server arms its deadline there),
a body that ends early or is badly framed refused; and the chunked bodies homecloud sends
(homecloud.snapshots.transport.ChunkedWriter) read back as written."""

from __future__ import annotations

import io
from email.message import Message
from typing import BinaryIO

import pytest

from homecloud.agent.bodystream import request_body
from homecloud.errors import UserError
from homecloud.snapshots.transport import ChunkedWriter


def headers(**fields: str) -> Message:
    message = Message()
    for name, value in fields.items():
        message[name.replace("_", "-")] = value
    return message


def read_all(body: BinaryIO, size: int = 5) -> bytes:
    return b"".join(iter(lambda: body.read(size), b""))


def test_a_chunked_body_reads_back_exactly_and_announces_each_read() -> None:
    wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\nNEXT"
    reads = []
    rfile = io.BufferedReader(io.BytesIO(wire))
    body = request_body(rfile, headers(Transfer_Encoding="chunked"), lambda: reads.append(1))
    assert read_all(body, 4) == b"hello, world"
    assert len(reads) >= 4
    assert rfile.read() == b"NEXT"  # nothing read past the body


def test_a_sized_body_stops_at_its_length() -> None:
    rfile = io.BufferedReader(io.BytesIO(b"0123456789MORE"))
    assert read_all(request_body(rfile, headers(Content_Length="10"))) == b"0123456789"
    assert rfile.read() == b"MORE"


@pytest.mark.parametrize(("fields", "wire", "message"), [
    ({"Content_Length": "10"}, b"short", "request body ended early"),
    ({"Transfer_Encoding": "chunked"}, b"zz\r\nhello\r\n", "bad chunk in the request body"),
    ({"Transfer_Encoding": "chunked"}, b"10\r\nhello", "request body ended early"),
    ({"Content_Length": "-1"}, b"", "bad Content-Length"),
    ({"Content_Length": "x"}, b"", "bad Content-Length"),
])
def test_a_bad_body_is_refused(fields: dict[str, str], wire: bytes, message: str) -> None:
    with pytest.raises(UserError, match=message):
        read_all(request_body(io.BufferedReader(io.BytesIO(wire)), headers(**fields)))


def test_what_the_chunked_writer_sends_reads_back_as_written() -> None:
    wire = io.BytesIO()
    flushes = []
    writer = ChunkedWriter(wire.write, lambda: flushes.append(1))
    pieces = [b"a", b"", b"x" * 70000, b"end"]
    for piece in pieces:
        assert writer.write(piece) == len(piece)
    writer.finish()
    assert flushes == [1]
    assert wire.getvalue().startswith(b"1\r\na\r\n11170\r\n")  # nothing sent for b""
    assert wire.getvalue().endswith(b"3\r\nend\r\n0\r\n\r\n")
    rfile = io.BufferedReader(io.BytesIO(wire.getvalue() + b"NEXT"))
    assert read_all(request_body(rfile, headers(Transfer_Encoding="chunked")), 4096) == \
        b"".join(pieces)
    assert rfile.read() == b"NEXT"
