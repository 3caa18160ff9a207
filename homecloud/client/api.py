"""The client of the agent's API: on its UNIX socket, or through a host's front door
(HC_HOST=https://HOST, HC_TOKEN: an admin's bearer token), kept light: `hc` must start fast.

The door's certificate is checked before the token is sent: against the system's CAs (a
certificate of the user's own), against $HC_CA (a file), or pinned by its SHA-256 fingerprint
($HC_FINGERPRINT, which `hc user token` prints for homecloud's self-signed certificate).
Verification is never switched off.
"""

from __future__ import annotations

import json
import os

# The socket type itself, from the C module: the `socket` module around it builds four enums and
# imports selectors when imported (2-3 ms of every `hc`), for nothing a client of a UNIX socket
# uses. A TLS connection (ssl.SSLSocket) is one of these too.
from _socket import AF_UNIX, SOCK_STREAM, socket

from homecloud.client.wire import ProtocolError, Reply, send_request
from homecloud.errors import (
    HomecloudError,
    HostError,
    PermissionDenied,
    UserError,
    error_from_json,
)

# `typing` costs `hc` milliseconds at start-up; only the type checker reads it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

DEFAULT_SOCKET = "/run/homecloud/hc.sock"
DOOR_API_PREFIX = "/_hc/api"  # homecloud.frontdoor.API_PREFIX (not imported: start-up time)
# What the door itself answers (text, not the agent's JSON) when it refuses a request.
_DOOR_REFUSALS = {
    401: "the front door at {host} refused the token: {text} (make one with `hc user token "
         "NAME` on that host)",
    403: "the front door at {host} refused: this token's user is not an admin there "
         "(`hc user add NAME --admin` on that host)",
    429: "the front door at {host} refused: {text}",
    502: "the front door at {host} cannot reach its agent (is hcd running there?)",
}


class RemoteHost:
    """Where and how to reach an agent through a front door."""

    def __init__(self, url: str, token: str | None, fingerprint: str | None,
                 ca: str | None) -> None:
        from urllib.parse import urlsplit

        from homecloud.client.tls import normal_fingerprint

        parts = urlsplit(url if "://" in url else f"https://{url}")
        if parts.scheme != "https" or not parts.hostname or parts.path.strip("/"):
            raise UserError(f"--host {url!r} is not a front door address: use https://HOST or "
                            "https://HOST:PORT")
        if not token:
            raise UserError(f"--host {url} needs an admin's token: --token TOKEN or $HC_TOKEN "
                            "(`hc user token NAME` on that host prints one)")
        self.hostname = parts.hostname
        self.port = parts.port or 443
        self.shown = f"{parts.hostname}:{self.port}"
        self.token = token
        self.fingerprint = normal_fingerprint(fingerprint) if fingerprint else None
        if fingerprint and self.fingerprint is None:
            raise UserError(f"--fingerprint {fingerprint!r} is not a SHA-256 fingerprint (64 "
                            "hex digits, colons allowed)")
        self.ca = ca

    def connect(self, timeout: float | None) -> socket:
        from homecloud.client import tls

        try:
            return tls.connect(self.hostname, self.port, fingerprint=self.fingerprint,
                                   ca=self.ca, timeout=timeout)
        except tls.DoorUnreachable as exc:
            raise HostError(f"cannot reach the front door at {self.shown}: "
                            f"{exc.reason}") from None
        except tls.DoorUntrusted as exc:
            raise UserError(f"the certificate of {self.shown} is not trusted "
                            f"({exc.reason}): pass --fingerprint (printed by `hc user "
                            "token` on that host) or --ca FILE") from None
        except tls.DoorHandshakeFailed as exc:
            raise HostError(f"no TLS connection to {self.shown}: {exc.reason}") from None
        except tls.WrongFingerprint:
            raise UserError(f"the certificate of {self.shown} does not have the "
                            "fingerprint given: not sending the token (a different host, "
                            "or its certificate changed)") from None


class ApiClient:
    def __init__(self, socket_path: str | None = None, timeout: float | None = None,
                 remote: RemoteHost | None = None) -> None:
        self.socket_path = socket_path or os.environ.get("HC_SOCKET", DEFAULT_SOCKET)
        self.timeout = timeout
        host = os.environ.get("HC_HOST")
        self.remote = remote or (RemoteHost(host, os.environ.get("HC_TOKEN"),
                                            os.environ.get("HC_FINGERPRINT"),
                                            os.environ.get("HC_CA") or None)
                                 if host and socket_path is None else None)

    def _connect(self) -> socket:
        if self.remote is not None:
            return self.remote.connect(self.timeout)
        sock = socket(AF_UNIX, SOCK_STREAM)
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

    def _send(self, sock: socket, method: str, path: str, body: Any,
              fds: tuple[int, ...]) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        remote = self.remote
        try:
            if remote is None:
                return send_request(sock, method, path, data, fds)
            if fds:
                raise UserError("this command hands the terminal to the agent, which works "
                                f"on the host itself only: run it on {remote.hostname} (over "
                                "ssh, for example)")
            reply = send_request(sock, method, DOOR_API_PREFIX + path, data, host=remote.shown,
                                 headers=(f"Authorization: Bearer {remote.token}",))
        except (ProtocolError, ConnectionError) as exc:
            raise HomecloudError(f"lost the connection to the agent: {exc}; see "
                                 "`journalctl -u hcd`") from None
        if reply.status >= 400 and "json" not in reply.headers.get("content-type", ""):
            text = reply.read().decode("utf-8", "replace").strip().splitlines()
            template = _DOOR_REFUSALS.get(reply.status,
                                          "the front door at {host} answered HTTP {status}: "
                                          "{text}")
            message = template.format(host=remote.shown, status=reply.status,
                                      text=text[0] if text else "no reason given")
            raise (UserError if reply.status < 500 else HostError)(message)
        return reply

    def call(self, method: str, path: str, body: Any = None, fds: tuple[int, ...] = ()) -> Any:
        sock = self._connect()
        try:
            reply = self._send(sock, method, path, body, fds)
            try:
                payload = reply.read()
            except (ProtocolError, ConnectionError) as exc:
                raise HomecloudError(f"lost the connection to the agent: {exc}") from None
        finally:
            sock.close()
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
        sock = self._connect()
        try:
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
        finally:
            sock.close()
