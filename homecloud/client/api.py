"""The client of the agent's API on its UNIX socket (kept light: `hc` must start fast)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator

from homecloud.cli.wire import ProtocolError, Reply, send_request
from homecloud.errors import HomecloudError, HostError, PermissionDenied, error_from_json

# `typing` costs `hc` milliseconds at start-up; only the type checker reads it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_SOCKET = "/run/homecloud/hc.sock"


class ApiClient:
    def __init__(self, socket_path: str | None = None, timeout: float | None = None) -> None:
        self.socket_path = socket_path or os.environ.get("HC_SOCKET", DEFAULT_SOCKET)
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except FileNotFoundError:
            sock.close()
            raise HostError(f"the homecloud agent is not running (no socket at "
                            f"{self.socket_path}); start it with `systemctl start hcd.socket`") \
                from None
        except ConnectionRefusedError:
            sock.close()
            raise HostError(f"the homecloud agent does not answer at {self.socket_path}; "
                            "check `systemctl status hcd`") from None
        except PermissionError:
            sock.close()
            raise PermissionDenied(f"permission denied on {self.socket_path}: run as root or "
                                   "join the 'homecloud' group") from None
        return sock

    def _send(self, sock: socket.socket, method: str, path: str, body: Any,
              fds: tuple[int, ...]) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        try:
            return send_request(sock, method, path, data, fds)
        except (ProtocolError, ConnectionError) as exc:
            raise HomecloudError(f"lost the connection to the agent: {exc}; see "
                                 "`journalctl -u hcd`") from None

    def call(self, method: str, path: str, body: Any = None, fds: tuple[int, ...] = ()) -> Any:
        with self._connect() as sock:
            reply = self._send(sock, method, path, body, fds)
            try:
                payload = reply.read()
            except (ProtocolError, ConnectionError) as exc:
                raise HomecloudError(f"lost the connection to the agent: {exc}") from None
        try:
            data = json.loads(payload) if payload else None
        except json.JSONDecodeError:
            raise HomecloudError(f"the agent sent a reply that is not JSON "
                                 f"(HTTP {reply.status})") from None
        if reply.status >= 400:
            raise error_from_json(data if isinstance(data, dict) else {})
        return data

    def stream(self, method: str, path: str, body: Any = None,
               fds: tuple[int, ...] = ()) -> Iterator[dict[str, Any]]:
        """Yield the progress events of a long operation; return its result via StopIteration.
        ``fds`` (stdin, stdout, stderr) are passed to the agent for commands to use."""
        with self._connect() as sock:
            reply = self._send(sock, method, path, body, fds)
            if reply.status >= 400:
                raise error_from_json(json.loads(reply.read() or b"{}"))
            result: Any = None
            try:
                for line in reply.lines():
                    event = json.loads(line)
                    if "progress" in event:
                        yield event["progress"]
                    elif "result" in event:
                        result = event["result"]
                    elif "error" in event:
                        raise error_from_json(event)
            except (ProtocolError, ConnectionError) as exc:
                raise HomecloudError(f"lost the connection to the agent: {exc}; see "
                                     "`journalctl -u hcd`") from None
            return result
