"""A small HTTP client for the agent's UNIX socket (standard library only: `hc` starts fast)."""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator
from typing import Any

from homecloud.errors import HomecloudError, HostError, PermissionDenied, error_from_json

DEFAULT_SOCKET = "/run/homecloud/hc.sock"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class ApiClient:
    def __init__(self, socket_path: str | None = None, timeout: float | None = None) -> None:
        self.socket_path = socket_path or os.environ.get("HC_SOCKET", DEFAULT_SOCKET)
        self.timeout = timeout

    def _send(self, method: str, path: str, body: Any) -> http.client.HTTPResponse:
        conn = _UnixConnection(self.socket_path, self.timeout)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            conn.request(method, path, body=data, headers=headers)
            return conn.getresponse()
        except FileNotFoundError:
            raise HostError(f"the homecloud agent is not running (no socket at "
                            f"{self.socket_path}); start it with `systemctl start hcd.socket`") \
                from None
        except ConnectionRefusedError:
            raise HostError(f"the homecloud agent does not answer at {self.socket_path}; "
                            "check `systemctl status hcd`") from None
        except PermissionError:
            raise PermissionDenied(f"permission denied on {self.socket_path}: run as root or "
                                   "join the 'homecloud' group") from None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._send(method, path, body)
        payload = response.read()
        try:
            data = json.loads(payload) if payload else None
        except json.JSONDecodeError:
            raise HomecloudError(f"the agent sent a reply that is not JSON "
                                 f"(HTTP {response.status})") from None
        if response.status >= 400:
            raise error_from_json(data if isinstance(data, dict) else {})
        return data

    def stream(self, method: str, path: str, body: Any = None) -> Iterator[dict[str, Any]]:
        """Yield the progress events of a long operation; return its result via StopIteration."""
        response = self._send(method, path, body)
        if response.status >= 400:
            data = json.loads(response.read() or b"{}")
            raise error_from_json(data)
        result: Any = None
        for line in response:
            event = json.loads(line)
            if "progress" in event:
                yield event["progress"]
            elif "result" in event:
                result = event["result"]
            elif "error" in event:
                raise error_from_json(event)
        return result
