"""The API's routes as data: method, path pattern, handler and a description.

The same table serves requests and the OpenAPI description, so the two cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import unquote

from homecloud.agent.peercred import PeerCredentials
from homecloud.errors import NotFound, UserError

JSON = Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: dict[str, str]  # from the path pattern
    query: dict[str, str]
    body: JSON
    peer: PeerCredentials
    fds: tuple[int, ...] = ()  # descriptors the client passed (its stdin, stdout, stderr)
    stream: BinaryIO | None = None  # the body as bytes, for routes with raw_body


@dataclass(frozen=True)
class Response:
    body: JSON
    status: int = 200


Handler = Callable[[Request], "Response | StreamResponse"]


@dataclass(frozen=True)
class StreamResponse:
    """A long operation's events (dicts): the server streams them as NDJSON lines
    ({"progress": ...}) ending with {"result": ...} or {"error": ...}."""

    events: Iterator[dict[str, JSON]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    handler: Handler
    summary: str
    body: dict[str, str] | None = None  # the request body's fields (see schemas.BodySpec)
    streams: bool = False
    raw_body: bool = False  # the body is a byte stream (Request.stream), not JSON
    # The JSON schema of the answer (of the final {"result": ...} of a stream).
    response: dict[str, JSON] | None = None
    # JSON schemas of the path parameters (a name's pattern); a string if not given.
    params: dict[str, dict[str, JSON]] = field(default_factory=dict)
    regex: re.Pattern[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # An empty parameter still matches, so `hc image rm ""` reaches the handler and gets
        # its "must not be empty" rather than "no such API path".
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]*)", self.pattern)
        object.__setattr__(self, "regex", re.compile(f"^{regex}$"))


@dataclass
class Router:
    routes: list[Route] = field(default_factory=list)

    def add(self, route: Route) -> None:
        self.routes.append(route)

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed: list[str] = []
        for route in self.routes:
            match = route.regex.match(path)
            if not match:
                continue
            if route.method == method:
                return route, {k: unquote(v) for k, v in match.groupdict().items()}
            allowed.append(route.method)
        if allowed:
            raise MethodNotAllowed(method, path, sorted(allowed))
        raise NotFound(f"no such API path: {path}")


class MethodNotAllowed(UserError):
    http_status = 405
    kind = "invalid"

    def __init__(self, method: str, path: str, allowed: list[str]) -> None:
        super().__init__(f"{method} is not allowed on {path} (allowed: {', '.join(allowed)})")
        self.allowed = allowed  # for the Allow header (RFC 9110, 15.5.6)
