"""The contract between a request and a lambda's process (CGI/1.1 style). Pure.

In: the method, path, query and headers in the environment (REQUEST_METHOD, SCRIPT_NAME (the
route), PATH_INFO (the rest of the path), QUERY_STRING, CONTENT_LENGTH, CONTENT_TYPE, HTTP_*
for the other headers, REMOTE_USER for a logged-in user, REMOTE_ADDR), the body on stdin.
Out: on stdout, optional CGI headers (``Status: 404 Not Found``, ``Content-Type: ...``, any
other header) and a blank line, then the body. Output that does not start with header lines
and a blank line is all body, answered 200 text/plain.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# Headers nginx or the gateway set that a lambda must not see as the client's.
_HIDDEN = {"authorization", "x-hc-lambda", "x-hc-route", "x-remote-user",
           "x-real-ip", "connection", "proxy"}  # Proxy: the httpoxy trap (HTTP_PROXY)
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_STATUS_RE = re.compile(r"([1-5]\d\d)(?: (.*))?")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade",
               "proxy-connection", "te", "trailer"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # the path as requested, without the query
    query: str
    headers: list[tuple[str, str]]
    body_length: int
    route: str = "/"  # the route's path prefix ("/" for a host route)
    user: str | None = None
    remote_addr: str = ""


def environment(request: Request, server_name: str = "homecloud") -> dict[str, str]:
    """The process environment for ``request`` (the lambda's own --env comes on top)."""
    script = "" if request.route == "/" else request.route
    rest = request.path[len(script):] if request.path.startswith(script) else request.path
    env = {"GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1",
           "SERVER_SOFTWARE": "homecloud", "SERVER_NAME": server_name,
           "REQUEST_METHOD": request.method, "SCRIPT_NAME": script, "PATH_INFO": rest,
           "QUERY_STRING": request.query, "REMOTE_ADDR": request.remote_addr,
           "REQUEST_URI": request.path + (f"?{request.query}" if request.query else "")}
    if request.body_length:
        env["CONTENT_LENGTH"] = str(request.body_length)
    if request.user:
        env["REMOTE_USER"] = request.user
    for name, value in request.headers:
        key = name.lower()
        if key in _HIDDEN or not _TOKEN_RE.fullmatch(name) or "\0" in value:
            continue
        if key == "content-type":
            env["CONTENT_TYPE"] = value
        elif key == "content-length":
            continue
        else:
            var = "HTTP_" + name.upper().replace("-", "_")
            env[var] = f"{env[var]}, {value}" if var in env else value
        if key == "host":
            env["SERVER_NAME"] = value.split(":")[0] or server_name
    return env


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def _header_lines(head: bytes) -> list[tuple[str, str]] | None:
    """Header lines as (name, value), or None if ``head`` is not all header lines."""
    out = []
    for raw in head.split(b"\n"):
        line = raw.rstrip(b"\r").decode("latin-1")
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN_RE.fullmatch(name):
            return None
        out.append((name, value.strip()))
    return out


def parse_output(output: bytes) -> Response:
    """What the lambda printed, as an HTTP response."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, body = output.partition(separator)
        if found and head and b"\n\n" not in head and b"\r\n\r\n" not in head:
            headers = _header_lines(head)
            if headers is not None:
                return _response(headers, body)
    return Response(200, "OK", [("Content-Type", "text/plain; charset=utf-8")], output)


def _response(headers: Iterable[tuple[str, str]], body: bytes) -> Response:
    status, reason, out = 200, "OK", []
    for name, value in headers:
        key = name.lower()
        if key == "status":
            match = _STATUS_RE.fullmatch(value)
            if match:
                status, reason = int(match.group(1)), match.group(2) or ""
        elif key not in _HOP_BY_HOP:
            out.append((name, value))
    if not any(name.lower() == "content-type" for name, _ in out):
        out.append(("Content-Type", "text/plain; charset=utf-8"))
    return Response(status, reason, out, body)
