"""Front-door routes: what a user types (`blog.example.home`, `/app`, `host/app`) as data,
and the clash rules. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from homecloud.errors import UserError
from homecloud.frontdoor import OWN_PREFIX
from homecloud.names import validate_instance_name

_HOST_RE = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
                      r"(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
# Characters nginx takes literally in a location prefix (no spaces, quotes, braces or ';').
_PATH_RE = re.compile(r"(/[A-Za-z0-9._~!$&'()*+,=:@%-]+)+")


@dataclass(frozen=True)
class Route:
    host: str  # "" for every host name
    path: str  # "/" or a prefix without a trailing '/'
    instance: str
    port: int
    group: str | None = None
    public: bool = False
    address: str | None = None  # the instance's address when the route was last applied
    lambda_name: str | None = None  # a route to a lambda (instance "" and port 0 then)

    @property
    def target(self) -> str:
        """Where the route leads, as `hc route ls` shows it."""
        return f"lambda {self.lambda_name}" if self.lambda_name else f"{self.instance}:{self.port}"

    @property
    def name(self) -> str:
        """How the user names the route (what `hc route add` was given, normalised)."""
        if not self.host:
            return self.path
        return self.host if self.path == "/" else f"{self.host}{self.path}"


def parse_match(text: str) -> tuple[str, str]:
    """``HOST``, ``/PATH`` or ``HOST/PATH`` as (host, path); one clear error otherwise."""
    shown = repr(text) if text.isprintable() else ascii(text)
    host, slash, path = text.partition("/")
    path = (slash + path).rstrip("/") or "/"
    host = host.lower().rstrip(".")
    if host and not _HOST_RE.fullmatch(host):
        raise UserError(f"route {shown} is invalid: {host!r} is not a host name (letters, "
                        "digits, '-' and '.')")
    if not host and path == "/":
        raise UserError(f"route {shown} is invalid: give a host name, a path (/app) or both")
    if path != "/" and (not _PATH_RE.fullmatch(path) or "/../" in path + "/"
                        or "/./" in path + "/"):
        raise UserError(f"route {shown} is invalid: a path is '/' and letters, digits and "
                        "-._~!$&'()*+,=:@% (no spaces, quotes, '..' or '.' segments)")
    if (path + "/").startswith(OWN_PREFIX):
        raise UserError(f"route {shown} is invalid: {OWN_PREFIX} belongs to homecloud "
                        "(login, authentication)")
    return host, path


def parse_target(text: str) -> tuple[str, int]:
    """``INSTANCE:PORT``."""
    instance, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"target {text!r} is invalid: use INSTANCE:PORT (a port 1-65535)")
    return validate_instance_name(instance), int(port)


def clash(new: Route, existing: list[Route]) -> Route | None:
    """The existing route serving the same host and path as ``new``, if any. Nested paths do
    not clash (the longest prefix wins, as in nginx)."""
    return next((r for r in existing if (r.host, r.path) == (new.host, new.path)), None)
