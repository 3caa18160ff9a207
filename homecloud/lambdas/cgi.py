"""The contract between a request and a lambda's process (CGI/1.1 style), and the SCGI request
the front door sends a lambda's socket. Pure.

In: the method, path, query and headers in the environment (REQUEST_METHOD, SCRIPT_NAME (the
route), PATH_INFO (the rest of the path), QUERY_STRING, CONTENT_LENGTH, CONTENT_TYPE, HTTP_*
for the other headers, REMOTE_USER for a logged-in user, REMOTE_ADDR), the body on stdin.
Out: on stdout, optional CGI headers (``Status: 404 Not Found``, ``Content-Type: ...``, any
other header) and a blank line, then the body. Output that does not start with header lines
and a blank line is all body, answered 200 text/plain.

The door (nginx, ``scgi_pass``) sends each request as one netstring of NUL-separated names and
values (CONTENT_LENGTH first, then the variables the door sets, then the client's headers as
HTTP_*), followed by the body; the answer is a CGI response (``Status:`` and headers, a blank
line, the body), read until the connection closes. A client's headers all arrive as HTTP_*, so
the variables without that prefix (the route, the user, the client's address) are the door's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# The variable naming the route's path prefix: the door's ROUTE_VARIABLE (homecloud.frontdoor,
# which the spawner does without importing).
ROUTE_VARIABLE = "HC_ROUTE"
# Headers a lambda must not see: the client's credentials, and names homecloud once set itself
# (a client sending them proves nothing).
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


def scgi_head_length(data: bytes) -> int | None:
    """How many bytes of ``data`` (what arrived so far) the SCGI head takes, its netstring
    with the length and the trailing comma; None while its length is still arriving.
    ValueError if it is not a netstring."""
    digits, colon, _ = data.partition(b":")
    if len(digits) > 8 or digits and not digits.isdigit() or colon and not digits:
        raise ValueError("not an SCGI request")
    return len(digits) + 1 + int(digits) + 1 if colon else None


def scgi_head(variables: Iterable[tuple[str, str]]) -> bytes:
    """The SCGI head the door would send with ``variables`` (CONTENT_LENGTH first): to speak
    to a lambda's socket without the door."""
    content = b"".join(f"{name}\0{value}\0".encode("latin-1") for name, value in variables)
    return b"%d:%s," % (len(content), content)


def scgi_request(head: bytes) -> Request:
    """The request in the SCGI head ``head`` (as long as scgi_head_length said).
    ValueError if it is malformed."""
    digits, _, rest = head.partition(b":")
    if rest[-1:] != b"," or len(rest) != int(digits) + 1:
        raise ValueError("not an SCGI request")
    items = rest[:-1].decode("latin-1").split("\0")
    if len(items) % 2 == 0 or items[-1] != "":  # name, value, ..., and the last NUL
        raise ValueError("not an SCGI request")
    found: dict[str, str] = {}
    headers = []
    for name, value in zip(items[0:-1:2], items[1::2], strict=True):
        if name.startswith("HTTP_"):  # the client's header, back to its name
            headers.append((name[5:].lower().replace("_", "-"), value))
        else:
            found[name] = value
    length = found.get("CONTENT_LENGTH", "")
    if not length.isdigit():
        raise ValueError("an SCGI request without its CONTENT_LENGTH")
    path, _, query = found.get("REQUEST_URI", "/").partition("?")
    return Request(found.get("REQUEST_METHOD", "GET"), path, query, headers, int(length),
                   found.get(ROUTE_VARIABLE) or "/", found.get("REMOTE_USER") or None,
                   found.get("REMOTE_ADDR", ""))


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


def render(response: Response) -> bytes:
    """``response`` as the CGI response the door reads (to the connection's end)."""
    lines = [f"Status: {response.status} {response.reason}".rstrip()]
    lines += [f"{name}: {value}" for name, value in response.headers]
    lines += [f"Content-Length: {len(response.body)}", "", ""]
    return "\r\n".join(lines).encode("latin-1") + response.body
