"""Talking to another homecloud host's agent: JSON calls, and a snapshot stream as the body of
one POST (chunked: its length is known only at its end).

A peer is reached through its front door (``https://HOST[:PORT]``, an admin's bearer token,
the API under /_hc/api) or, on the same machine, through its agent's socket (``unix:/PATH``,
where the kernel vouches for the caller).
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable
from typing import Any, BinaryIO
from urllib.parse import quote, urlencode, urlsplit

from homecloud.client import tls
from homecloud.errors import HomecloudError, HostError, NotFound, PoolFull, UserError
from homecloud.frontdoor import API_PREFIX
from homecloud.snapshots.records import PeerRecord

TIMEOUT = 60.0
# Room in the kernel for a few of the sender's 1 MiB chunks, so it goes back to reading `btrfs
# send` while the receiver catches up, rather than waiting on each chunk in turn.
SEND_BUFFER = 4 << 20


class PeerUnreachable(HostError):
    """The peer did not answer (down, or no route): worth retrying later."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock
        _widen_send_buffer(sock)


class _DoorConnection(http.client.HTTPConnection):
    """HTTPS to a peer's front door, its certificate pinned or checked (homecloud.client.tls)."""

    def __init__(self, peer: PeerRecord, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._peer = peer

    def connect(self) -> None:
        peer = self._peer
        try:
            self.sock = tls.connect(self.host, self.port, fingerprint=peer.fingerprint,
                                        ca=peer.ca, timeout=self.timeout)
        except (tls.DoorUnreachable, tls.DoorHandshakeFailed) as exc:
            raise ConnectionError(exc.reason) from None
        except tls.DoorUntrusted as exc:
            raise UserError(f"peer {peer.name}: the certificate of {peer.url} is not trusted "
                            f"({exc.reason}): give its fingerprint (`hc user token NAME` "
                            f"there prints it): `hc peer add {peer.name} --url {peer.url} "
                            "--token T --fingerprint SHA256`") from None
        except tls.WrongFingerprint:
            raise UserError(f"peer {peer.name}: the certificate of {peer.url} does not have "
                            "the fingerprint given: nothing sent (a different host, or its "
                            "certificate changed)") from None
        _widen_send_buffer(self.sock)


def _widen_send_buffer(sock: socket.socket) -> None:
    # The forced variant passes the system's default cap (hcd runs as root); best effort.
    for option in (getattr(socket, "SO_SNDBUFFORCE", 32), socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, SEND_BUFFER)
            return
        except OSError:
            continue


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix" and parts.path.startswith("/"):
        return url
    if parts.scheme == "https" and parts.hostname and not parts.path.strip("/"):
        return url
    raise UserError(f"--url {url!r}: use https://HOST[:PORT] (its front door) or unix:/PATH "
                    "(an agent's socket on this machine)")


class ChunkedWriter:
    """A body of unknown length in HTTP/1.1 chunked transfer coding: each write one chunk,
    passed to ``send`` (a connection's send, a socket file's write) in three pieces rather
    than one joined copy of a large chunk."""

    def __init__(self, send: Callable[[bytes], object],
                 flush: Callable[[], object] = lambda: None) -> None:
        self._send = send
        self._flush = flush

    def write(self, data: bytes) -> int:
        if data:
            self._send(b"%x\r\n" % len(data))
            self._send(data)
            self._send(b"\r\n")
        return len(data)

    def flush(self) -> None:
        self._flush()

    def finish(self) -> None:
        """The last chunk: the body ends."""
        self._send(b"0\r\n\r\n")
        self._flush()


class PeerClient:
    def __init__(self, peer: PeerRecord, timeout: float = TIMEOUT) -> None:
        self.peer = peer
        self.timeout = timeout
        parts = urlsplit(check_url(peer.url))
        self._unix = parts.path if parts.scheme == "unix" else None
        self._host, self._port = parts.hostname or "", parts.port or 443
        self._prefix = "" if self._unix else API_PREFIX.rstrip("/")

    def _connect(self) -> http.client.HTTPConnection:
        if self._unix is not None:
            return _UnixConnection(self._unix, self.timeout)
        return _DoorConnection(self.peer, self._host, self._port, self.timeout)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.peer.token:
            headers["Authorization"] = f"Bearer {self.peer.token}"
        return headers

    def path(self, path: str, query: dict[str, str] | None = None) -> str:
        return self._prefix + path + (f"?{urlencode(query)}" if query else "")

    def call(self, method: str, path: str, query: dict[str, str] | None = None) -> Any:
        conn = self._connect()
        try:
            try:
                conn.request(method, self.path(path, query), headers=self._headers())
                return self._answer(conn.getresponse())
            except (OSError, http.client.HTTPException) as exc:
                raise self._unreachable(exc) from None
        finally:
            conn.close()

    def post_stream(self, path: str, query: dict[str, str],
                    write: Callable[[BinaryIO], None]) -> Any:
        """POST what ``write`` writes to the file it is given, as a chunked body."""
        conn = self._connect()
        try:
            try:
                conn.putrequest("POST", self.path(path, query))
                for name, value in {**self._headers(), "Transfer-Encoding": "chunked",
                                    "Content-Type": "application/octet-stream"}.items():
                    conn.putheader(name, value)
                conn.endheaders()
                body = ChunkedWriter(conn.send)
                write(body)  # type: ignore[arg-type]
                body.finish()
                return self._answer(conn.getresponse())
            except (OSError, http.client.HTTPException) as exc:
                # The peer may have answered (and closed) before reading all: its answer
                # says why.
                try:
                    return self._answer(conn.getresponse())
                except (OSError, http.client.HTTPException):
                    raise self._unreachable(exc) from None
        finally:
            conn.close()

    def _unreachable(self, exc: BaseException) -> PeerUnreachable:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return PeerUnreachable(f"peer {self.peer.name} ({self.peer.url}) did not answer: "
                               f"{reason or type(exc).__name__}")

    def _answer(self, response: http.client.HTTPResponse) -> Any:
        data = response.read()
        try:
            body = json.loads(data) if data else None
        except ValueError:
            body = None
        if 200 <= response.status < 300:
            return body
        message = body.get("error") if isinstance(body, dict) else None
        text = f"peer {self.peer.name} refused: {message or f'HTTP {response.status}'}"
        if response.status == 404:
            raise NotFound(text)
        if response.status in (401, 403):
            raise UserError(text + " (check the peer's token: `hc peer add NAME --url URL "
                            "--token T` replaces it)")
        if response.status == PoolFull.http_status:
            raise PoolFull(text)  # an answer, not an outage: retrying would not help
        if response.status >= 500:
            raise PeerUnreachable(text)
        raise HomecloudError(text)


def quoted(name: str) -> str:
    return quote(name, safe="")
