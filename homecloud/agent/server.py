"""HTTP+JSON over the agent's UNIX socket.

The standard library's HTTP server does the protocol; this module adds what the API needs around
it: the peer-credential check, limits on what a client may send and how
slowly, JSON in and out, and NDJSON streams for long operations.

Two sockets serve the same routes. hc.sock is for local clients: the kernel's record of the
peer (root or the homecloud group) is the only credential. door.sock is for the front door
(https://HOST/_hc/api/): nginx has authenticated the caller as an admin and names them in
X-Remote-User. That header is trusted on door.sock alone, and only from root or nginx's
workers (the socket's mode already keeps everyone else out); on hc.sock it means nothing, so a
local client gains nothing by sending it.

Each connection gets a thread: handlers call blocking D-Bus, ioctls and subprocesses, and threads
keep that simple. Their number is bounded; a connection over the bound waits a moment for a
free one, then gets 503. Idle and slow clients are cut off by the reading deadlines
(deadlines.py), so only requests being served hold a thread for long, and those include streams
(`hc logs -f`, image builds) that must not be cut off: they keep theirs as long as they run.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from homecloud.agent.bodystream import request_body
from homecloud.agent.deadlines import DeadlineReader, ReadLimits, RequestTimeout
from homecloud.agent.fields import check_body, decode_body
from homecloud.agent.peercred import PeerCredentials, is_permitted, peer_credentials
from homecloud.agent.routes import MethodNotAllowed, Request, Router, StreamResponse
from homecloud.errors import HomecloudError, PermissionDenied, UserError
from homecloud.frontdoor import REMOTE_USER_HEADER

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerPolicy:
    allowed_gid: int | None
    group_name: str
    max_body: int
    # No route's body nests more than a few levels; the limit keeps the JSON parser's
    # recursion (and a handler's walk) far from Python's.
    max_depth: int = 32
    reading: ReadLimits = field(default_factory=ReadLimits)
    max_connections: int = 128  # connections served at once (a thread each)
    connection_wait: float = 5.0  # seconds a connection over the bound waits for a free one
    # Set for the front door's socket: the uid of nginx's workers, who alone (with root) may
    # speak on it, naming the authenticated admin in the X-Remote-User header.
    door_uid: int | None = None


class PayloadTooLarge(UserError):
    http_status = 413


class ServerBusy(HomecloudError):
    http_status = 503


class ApiServer(socketserver.UnixStreamServer):
    def __init__(self, sock: socket.socket, router: Router, policy: ServerPolicy) -> None:
        super().__init__("", _RequestHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.router = router
        self.policy = policy
        self._slots = threading.BoundedSemaphore(policy.max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(timeout=self.policy.connection_wait):
            _refuse_busy(request, self.policy.max_connections)
            self.shutdown_request(request)
            return
        try:
            threading.Thread(target=self._serve, args=(request, client_address),
                             name="hcd-connection", daemon=True).start()
        except BaseException:
            self._slots.release()
            self.shutdown_request(request)
            raise

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("connection ended by an error", exc_info=True)


def _refuse_busy(sock: socket.socket, bound: int) -> None:
    error = ServerBusy(f"hcd is serving its maximum of {bound} connections; try again")
    data = _json_bytes(error.to_json())
    head = (f"HTTP/1.1 {error.http_status} Service Unavailable\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")
    try:
        sock.settimeout(1.0)  # a fresh connection's buffer takes this at once
        sock.sendall(head.encode() + data)
    except OSError:
        pass
    log.warning("refused a connection: %s", error.message)


def _json_bytes(body: Any) -> bytes:
    return (json.dumps(body, separators=(",", ":")) + "\n").encode()


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiServer
    # Malformed request lines still get a status line (HTTP/0.9 would send a bare body).
    default_request_version = "HTTP/1.0"

    _reader: DeadlineReader
    _expects_continue: bool

    def setup(self) -> None:
        super().setup()
        self._reader = DeadlineReader(self.connection, self.server.policy.reading)
        self.rfile = io.BufferedReader(self._reader)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            for fd in self._reader.passed_fds or []:
                os.close(fd)
            self._reader.passed_fds = []

    def handle_one_request(self) -> None:
        self._expects_continue = False
        # What an answer before a complete request line needs (parse_request sets them).
        self.requestline, self.command = "", ""
        self.request_version = self.default_request_version
        self._reader.await_request()
        try:
            super().handle_one_request()
        except RequestTimeout as exc:
            self.close_connection = True
            if exc.started:
                self._send_error(exc)
        finally:
            self._reader.stop()

    def handle_expect_100(self) -> bool:
        # 100 Continue only once the request is known to be acceptable (_read_body).
        self._expects_continue = True
        return True

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
        self._reader.stop()  # the head is in
        try:
            peer = peer_credentials(self.request)
            self._authorise(peer)
            url = urlsplit(self.path)
            route, params = self.server.router.resolve(self.command, url.path)
            stream = None
            if route.raw_body:
                # Read by the handler as it goes; what it leaves unread ends the connection.
                self.close_connection = True
                body, stream = None, request_body(self.rfile, self.headers,
                                                    self._reader.await_body)
                if self._expects_continue:
                    self.send_response_only(100)
                    self.end_headers()
            else:
                body = self._read_body()
            check_body(route.body, body, f"{self.command} {route.pattern}")
            result = route.handler(Request(self.command, url.path, params,
                                           dict(parse_qsl(url.query)), body, peer,
                                           tuple(self._reader.passed_fds or ()), stream))
        except HomecloudError as exc:
            self._send_error(exc)
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

    def _authorise(self, peer: PeerCredentials) -> None:
        policy = self.server.policy
        if policy.door_uid is None:
            if not is_permitted(peer, policy.allowed_gid):
                raise PermissionDenied(
                    f"permission denied: uid {peer.uid} may not use homecloud; run as root or "
                    f"join the '{policy.group_name}' group")
            return
        user = self.headers.get(REMOTE_USER_HEADER, "")
        if peer.uid not in (0, policy.door_uid) or not user:
            raise PermissionDenied(f"permission denied for uid {peer.uid}: only the front door "
                                   "may use this socket, naming the admin it authenticated")
        log.info("%s %s by %s through the front door", self.command, self.path, user)

    def _send_error(self, exc: HomecloudError) -> None:
        # An unread body would be taken for the next request on a kept-alive connection.
        self.close_connection = True
        headers = {"Allow": ", ".join(exc.allowed)} if isinstance(exc, MethodNotAllowed) else {}
        self._send_json(exc.http_status, exc.to_json(), headers)

    def _read_body(self) -> Any:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raise UserError("chunked request bodies are not supported; send Content-Length")
        length_header = self.headers.get("Content-Length")
        if not length_header:
            return None
        try:
            length = int(length_header)
        except ValueError:
            raise UserError(f"bad Content-Length {length_header!r}") from None
        if length < 0:
            raise UserError(f"bad Content-Length {length_header!r}")
        if length > self.server.policy.max_body:
            raise PayloadTooLarge(f"request body of {length} bytes is larger than the "
                                  f"{self.server.policy.max_body} bytes allowed")
        if self._expects_continue and length:
            self.send_response_only(100)
            self.end_headers()
        self._reader.await_body()
        try:
            raw = self.rfile.read(length)
        finally:
            self._reader.stop()
        if len(raw) != length:
            raise UserError("request body ended early")
        return decode_body(raw, self.server.policy.max_depth)

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = _json_bytes(body)
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
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
