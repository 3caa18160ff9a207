"""HTTP+JSON over the agent's UNIX socket.

The standard library's HTTP server does the protocol; this module adds what the API needs around
it: socket activation, the peer-credential check, body limits, JSON in and out, and NDJSON streams
for long operations. Each connection gets a thread: handlers call blocking D-Bus, ioctls and
subprocesses, and threads keep that simple.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import socketserver
import stat
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from homecloud.agent.peercred import PeerCredentials, is_permitted, peer_credentials
from homecloud.agent.routes import Request, Router, StreamResponse
from homecloud.errors import HomecloudError, PermissionDenied, UserError

log = logging.getLogger(__name__)
SD_LISTEN_FDS_START = 3
# A client may pass up to three descriptors (its stdin, stdout, stderr) with the first bytes of
# its request, the way `systemd-run --pipe` hands them to systemd: commands then read and write
# the user's terminal directly and nothing is relayed through the agent.
MAX_PASSED_FDS = 3


@dataclass(frozen=True)
class ServerPolicy:
    allowed_gid: int | None
    group_name: str
    max_body: int


class PayloadTooLarge(UserError):
    http_status = 413


def inherited_socket() -> socket.socket | None:
    """The listening socket systemd passed us (hcd.socket), if any."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    if int(os.environ.get("LISTEN_FDS", "0")) < 1:
        return None
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)
    return socket.socket(fileno=SD_LISTEN_FDS_START)


def bind_socket(path: Path, gid: int | None) -> socket.socket:
    """Listen on ``path`` ourselves (when started without socket activation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and stat.S_ISSOCK(path.stat().st_mode):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o117)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    if gid is not None:
        os.chown(path, 0, gid)
    sock.listen(128)
    return sock


class ApiServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, sock: socket.socket, router: Router, policy: ServerPolicy) -> None:
        super().__init__("", _RequestHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.router = router
        self.policy = policy


def _json_bytes(body: Any) -> bytes:
    return (json.dumps(body, separators=(",", ":")) + "\n").encode()


class _PrefixedSocketReader(io.RawIOBase):
    """Reads ``prefix`` first, then the socket: the first chunk was taken with recvmsg."""

    def __init__(self, prefix: bytes, sock: socket.socket) -> None:
        self._prefix = prefix
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._prefix:
            count = min(len(buffer), len(self._prefix))
            buffer[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        return self._sock.recv_into(buffer)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiServer
    # Malformed request lines still get a status line (HTTP/0.9 would send a bare body).
    default_request_version = "HTTP/1.0"

    passed_fds: list[int]

    def setup(self) -> None:
        super().setup()
        data, fds, _flags, _addr = socket.recv_fds(self.connection, 65536, MAX_PASSED_FDS)
        self.passed_fds = list(fds)
        self.rfile = io.BufferedReader(_PrefixedSocketReader(data, self.connection))

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            for fd in self.passed_fds:
                os.close(fd)
            self.passed_fds = []

    def version_string(self) -> str:
        return "hcd"

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, "api", *args)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        # Protocol errors found by the standard library answer in JSON like everything else.
        self.close_connection = True
        self._send_json(code, {"error": f"bad request: {message or code}", "kind": "invalid",
                               "exit_code": 1})

    # Every method goes through one dispatcher.
    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _dispatch(self) -> None:
        try:
            peer = peer_credentials(self.request)
            if not is_permitted(peer, self.server.policy.allowed_gid):
                raise PermissionDenied(
                    f"permission denied: uid {peer.uid} may not use homecloud; run as root or "
                    f"join the '{self.server.policy.group_name}' group")
            request = self._read_request(peer)
            route, params = self.server.router.resolve(request.method, request.path)
            result = route.handler(Request(request.method, request.path, params,
                                           request.query, request.body, peer,
                                           tuple(self.passed_fds)))
        except HomecloudError as exc:
            # An unread body would be taken for the next request on a kept-alive connection.
            self.close_connection = True
            self._send_json(exc.http_status, exc.to_json())
            return
        except Exception as exc:  # a bug: say so, keep serving
            log.exception("internal error handling %s %s", self.command, self.path)
            self._send_json(500, {"error": f"internal error in hcd: {exc}", "kind": "error",
                                  "exit_code": 1})
            return
        if isinstance(result, StreamResponse):
            self._send_stream(result)
        else:
            self._send_json(result.status, result.body)

    def _read_request(self, peer: PeerCredentials) -> Request:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query))
        body: Any = None
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise UserError("chunked request bodies are not supported; send Content-Length")
        length_header = self.headers.get("Content-Length")
        if length_header:
            try:
                length = int(length_header)
            except ValueError:
                raise UserError(f"bad Content-Length {length_header!r}") from None
            if length < 0:
                raise UserError(f"bad Content-Length {length_header!r}")
            if length > self.server.policy.max_body:
                raise PayloadTooLarge(f"request body of {length} bytes is larger than the "
                                      f"{self.server.policy.max_body} bytes allowed")
            raw = self.rfile.read(length)
            if len(raw) != length:
                raise UserError("request body ended early")
            if raw.strip():
                try:
                    body = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise UserError(f"request body is not valid JSON: {exc}") from None
        return Request(self.command, url.path, {}, query, body, peer)

    def _send_json(self, status: int, body: Any) -> None:
        data = _json_bytes(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, result: StreamResponse) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        write_chunk = self._write_chunk
        try:
            try:
                for event in result.events:
                    write_chunk(_json_bytes(event))
            except HomecloudError as exc:
                write_chunk(_json_bytes(exc.to_json()))
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception as exc:
                log.exception("internal error streaming %s %s", self.command, self.path)
                write_chunk(_json_bytes({"error": f"internal error in hcd: {exc}",
                                         "kind": "error", "exit_code": 1}))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            # The client went away (after an error event it need not read the end); the
            # generator's finally blocks have run (close()).
            log.info("client left during %s %s", self.command, self.path)
            self.close_connection = True

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
