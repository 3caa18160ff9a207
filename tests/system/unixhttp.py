"""HTTP clients for the agent's UNIX socket, reached from the machine through the dev host's
/proc/PID/root: a requests session (for schemathesis) and raw exchanges (for what no library
would send)."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

from homecloud.devhost import DevHost, guest_file

AGENT_SOCKET = "/run/homecloud/hc.sock"


def agent_socket(host: DevHost) -> str:
    return str(guest_file(host, AGENT_SOCKET))


class _UnixConnection(urllib3.connection.HTTPConnection):
    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__("hcd", **kwargs)
        self._path = path

    def _new_conn(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if isinstance(self.timeout, (int, float)):
            sock.settimeout(self.timeout)
        sock.connect(self._path)
        return sock


class _UnixPool(urllib3.HTTPConnectionPool):
    def __init__(self, path: str) -> None:
        super().__init__("hcd", timeout=60)
        self._path = path

    def _new_conn(self) -> _UnixConnection:  # type: ignore[override]
        return _UnixConnection(self._path, timeout=60)


class _UnixAdapter(HTTPAdapter):
    """Every http:// URL of the session goes to one UNIX socket."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._pool = _UnixPool(path)

    def get_connection_with_tls_context(self, request: Any, verify: Any, proxies: Any = None,
                                        cert: Any = None) -> _UnixPool:
        return self._pool

    def close(self) -> None:
        self._pool.close()
        super().close()


def unix_session(path: str) -> requests.Session:
    """A requests session whose http://hcd/... requests reach the agent's socket."""
    session = requests.Session()
    session.mount("http://", _UnixAdapter(path))
    return session


@dataclass(frozen=True)
class Reply:
    status: int
    head: str  # status line and headers
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        for line in self.head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


def read_reply(sock: socket.socket) -> Reply:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass  # the agent hung up with part of our request unread, after its answer
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else 0
    return Reply(status, head.decode(errors="replace"), body)


def connect(path: str, timeout: float = 60) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    return sock


def exchange(path: str, data: bytes) -> Reply:
    """Send ``data`` on a new connection, then read the answer until the agent hangs up."""
    with connect(path) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered before reading it all
        return read_reply(sock)
