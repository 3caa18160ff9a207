"""The few bytes of HTTP/1.1 `hc` needs to talk to its own agent.

The standard library's http.client imports the email package for header parsing, which costs
25-30 ms on every `hc` invocation: a third of the 100 ms budget for a command. The agent answers
in exactly two shapes (a JSON body with Content-Length, or a chunked NDJSON stream), so reading
those two is all this does; the agent side uses the standard library's server.
"""

from __future__ import annotations

from _socket import SCM_RIGHTS, SOL_SOCKET  # not `socket`: see api.py

# `typing` costs `hc` milliseconds at start-up; only the type checker reads it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from _socket import socket
    from collections.abc import Iterator

MAX_HEADER_LINE = 65536


class ProtocolError(Exception):
    pass


class Reply:
    # A plain class: importing dataclasses (it imports inspect) costs `hc` ~10 ms at start-up.
    def __init__(self, status: int, headers: dict[str, str], reader: _Reader) -> None:
        self.status = status
        self.headers = headers
        self._reader = reader

    def read(self) -> bytes:
        """The whole body (Content-Length or chunked)."""
        return b"".join(self.chunks())

    def chunks(self) -> Iterator[bytes]:
        length = self.headers.get("content-length")
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = self._reader.line()
                try:
                    size = int(size_line.split(b";")[0], 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {size_line!r}") from None
                if size == 0:
                    self._reader.line()
                    return
                yield self._reader.exactly(size)
                self._reader.line()
        elif length is not None:
            yield self._reader.exactly(int(length))
        else:
            yield self._reader.rest()

    def lines(self) -> Iterator[bytes]:
        """The body split into lines, as they arrive (NDJSON streams)."""
        pending = b""
        for chunk in self.chunks():
            pending += chunk
            *complete, pending = pending.split(b"\n")
            yield from (line for line in complete if line.strip())
        if pending.strip():
            yield pending


class _Reader:
    def __init__(self, sock: socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEADER_LINE or not self._fill():
                raise ProtocolError("the agent closed the connection mid-reply")
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise ProtocolError("the agent closed the connection mid-reply")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def rest(self) -> bytes:
        while self._fill():
            pass
        data, self.buffer = self.buffer, b""
        return data


def send_request(sock: socket, method: str, path: str, body: bytes | None,
                 fds: tuple[int, ...] = (), host: str = "hcd",
                 headers: tuple[str, ...] = ()) -> Reply:
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close", *headers]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    data = ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")
    if fds:
        # The descriptors travel with the first bytes of the request (SCM_RIGHTS).
        from array import array

        sent = sock.sendmsg([data], [(SOL_SOCKET, SCM_RIGHTS, array("i", fds))])
        if sent < len(data):
            # Only the rest: an empty send to an agent that already answered and closed (a
            # refused request) would fail with EPIPE and hide its answer.
            sock.sendall(data[sent:])
    else:
        sock.sendall(data)
    reader = _Reader(sock)
    status_line = reader.line().decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {status_line!r}")
    received: dict[str, str] = {}
    while line := reader.line():
        key, _, value = line.decode("latin-1").partition(":")
        received[key.strip().lower()] = value.strip()
    return Reply(int(parts[1]), received, reader)
