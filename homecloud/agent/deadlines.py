"""Reading a client's requests against deadlines, so a slow or silent client cannot hold a
connection (and its thread) for long.

Three limits, each a deadline for a whole phase rather than a timeout per read, so a client
trickling a byte at a time gains nothing: the wait for the next request on an idle connection,
the request head once it has begun, and the body once the head is in. While a handler runs,
nothing is read and no deadline applies: image builds and `hc logs -f` last as long as they do.
"""

from __future__ import annotations

import io
import socket
import time
from dataclasses import dataclass

from homecloud.errors import UserError

# A client may pass up to three descriptors (its stdin, stdout, stderr) with the first bytes of
# its request, the way `systemd-run --pipe` hands them to systemd: commands then read and write
# the user's terminal directly and nothing is relayed through the agent.
MAX_PASSED_FDS = 3


@dataclass(frozen=True)
class ReadLimits:
    idle: float = 10.0  # seconds a connection may wait before it sends a request
    head: float = 10.0  # seconds from a request's first byte to the end of its head
    body: float = 10.0  # seconds from the end of the head to the end of the body


class RequestTimeout(UserError):
    """The client did not send its request (or its body) in time."""

    http_status = 408

    def __init__(self, message: str, started: bool) -> None:
        super().__init__(message)
        self.started = started  # a request had begun: answer it; an idle one is just closed


class DeadlineReader(io.RawIOBase):
    """The connection's reading side. The first read takes the descriptors passed with the
    first bytes (recvmsg); every read fails with RequestTimeout past the current deadline."""

    def __init__(self, sock: socket.socket, limits: ReadLimits) -> None:
        self._sock = sock
        self._limits = limits
        self._deadline: float | None = None
        self._limit = 0.0
        self._phase = ""
        self._waiting_for_request = False
        self.passed_fds: list[int] | None = None  # None until the first read

    def readable(self) -> bool:
        return True

    def await_request(self) -> None:
        """The connection is idle: the next request must begin within the idle limit."""
        self._set(self._limits.idle, "the next request")
        self._waiting_for_request = True

    def await_body(self) -> None:
        self._set(self._limits.body, "the request body")

    def stop(self) -> None:
        """The request is read: no deadline while the handler runs."""
        self._deadline = None
        self._waiting_for_request = False

    def _set(self, seconds: float, phase: str) -> None:
        self._deadline = time.monotonic() + seconds
        self._limit = seconds
        self._phase = phase

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise self._timeout()
        return remaining

    def _timeout(self) -> RequestTimeout:
        return RequestTimeout(f"{self._phase} did not arrive within {self._limit:g} s",
                              started=not self._waiting_for_request)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self._sock.settimeout(self._remaining())
        try:
            if self.passed_fds is None:
                data, fds, _flags, _addr = socket.recv_fds(self._sock, len(buffer),
                                                           MAX_PASSED_FDS)
                self.passed_fds = list(fds)
                count = len(data)
                buffer[:count] = data
            else:
                count = self._sock.recv_into(buffer)
        except TimeoutError:
            raise self._timeout() from None
        finally:
            # Writing answers and streams is not bound by the reading deadlines.
            self._sock.settimeout(None)
        if count and self._waiting_for_request:
            # The request has begun: from now on its head has the head limit.
            self._waiting_for_request = False
            self._set(self._limits.head, "the request head")
        return count
