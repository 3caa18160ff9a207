"""What the user asks for when deploying a lambda, validated before anything is made. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from homecloud.errors import UserError
from homecloud.names import MAX_NAME
from homecloud.sizes import format_size, parse_seconds, parse_size

# Lambda names become instance, unit (hc-NAME.service) and dataset names.
_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0}
MIN_MEMORY = 16 << 20
DEFAULT_MEMORY = 128 << 20
DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 3600.0
# A lambda's sandbox stops this long after its last request (the next one starts it again).
DEFAULT_IDLE = 2.0


def validate_lambda_name(name: str) -> str:
    shown = repr(name) if name.isprintable() else ascii(name)
    if not name:
        raise UserError("lambda name must not be empty")
    if len(name) > MAX_NAME:
        raise UserError(f"lambda name {shown[:24]}... is too long ({len(name)} characters, at "
                        f"most {MAX_NAME})")
    if not _NAME_RE.fullmatch(name):
        raise UserError(f"lambda name {shown} is invalid: use lower-case letters, digits and "
                        "'-', not starting or ending with '-'")
    return name


def parse_duration(text: str | float, what: str = "--timeout") -> float:
    """``10s``, ``500ms``, ``2m`` or a number of seconds."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        parsed = parse_seconds(text, _DURATION_UNITS)
        if parsed is None:
            raise UserError(f"{what} {text!r} is invalid: use seconds (10, 10s), 500ms or 2m")
        seconds = parsed
    if not 0.1 <= seconds <= MAX_TIMEOUT:
        raise UserError(f"{what} must be between 100ms and {MAX_TIMEOUT:g}s")
    return seconds


def parse_env(items: Mapping[str, str]) -> dict[str, str]:
    for key, value in items.items():
        if not _ENV_KEY_RE.fullmatch(key):
            raise UserError(f"--env {key!r} is invalid: a name is letters, digits and '_'")
        if "\0" in value or "\n" in value:
            raise UserError(f"--env {key}: the value must be one line without NUL bytes")
    return dict(items)


@dataclass(frozen=True)
class LambdaSpec:
    name: str
    memory: int = DEFAULT_MEMORY  # bytes
    timeout: float = DEFAULT_TIMEOUT  # seconds
    env: dict[str, str] = field(default_factory=dict)
    network: bool = False
    route: str | None = None  # a front-door HOST_OR_PATH
    public: bool = False
    group: str | None = None
    idle: float = DEFAULT_IDLE  # seconds
    # Where its code was deployed from, the file a request runs (relative to the code's top)
    # and when: set as it is deployed.
    source: str = ""
    entry: str = ""
    deployed: float = 0.0

    def options(self) -> dict[str, Any]:
        """What a lambda instance's spec keeps of it (InstanceSpec.options)."""
        options = asdict(self)
        del options["name"]
        return options

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any]) -> LambdaSpec:
        try:
            return cls(name, **options)
        except TypeError as exc:
            raise UserError(f"lambda {name}: its options are not a lambda's ({exc})") from exc

    @classmethod
    def parse(cls, name: str, *, memory: str | int | None = None,
              timeout: str | float | None = None, env: Mapping[str, str] | None = None,
              network: bool = False, route: str | None = None, public: bool = False,
              group: str | None = None, idle: str | float | None = None) -> LambdaSpec:
        spec = cls(validate_lambda_name(name),
                   DEFAULT_MEMORY if memory is None else parse_size(memory, "--memory"),
                   DEFAULT_TIMEOUT if timeout is None else parse_duration(timeout),
                   parse_env(env or {}), network, route, public, group,
                   DEFAULT_IDLE if idle is None else parse_duration(idle, "--idle"))
        if spec.memory < MIN_MEMORY:
            raise UserError(f"--memory must be at least {format_size(MIN_MEMORY)}")
        if (public or group) and route is None:
            raise UserError("--public and --group are for a lambda with a --route")
        if public and group:
            raise UserError("a route is either --public or for a --group, not both")
        return spec
