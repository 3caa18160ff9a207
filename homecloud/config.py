"""Host configuration: /etc/homecloud/config.yaml, read into plain dataclasses.

Everything has a default, so a host with no config file works; the file only overrides.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from homecloud.errors import UserError
from homecloud.names import validate_instance_name, validate_name
from homecloud.sizes import parse_size

CONFIG_PATH = Path(os.environ.get("HC_CONFIG", "/etc/homecloud/config.yaml"))
POOL_DRIVERS = ("auto", "btrfs", "reflink", "copy", "zfs")


@dataclass(frozen=True)
class PoolConfig:
    """Where datasets live. ``driver: auto`` picks btrfs, then reflink, then plain copy, from the
    filesystem under ``path``; when nothing is mounted there and the state directory is not on
    btrfs, homecloud makes the embedded pool: a sparse btrfs file of ``size`` at ``image_file``."""

    driver: str = "auto"
    path: Path = Path("/var/lib/homecloud/pool")
    image_file: Path = Path("/var/lib/homecloud/pool.img")
    size: int = 20 << 30
    embedded: bool = True


@dataclass(frozen=True)
class ImagesConfig:
    """``mirror``: the Debian mirror image builds use (default: the one apt uses here)."""

    mirror: str | None = None


@dataclass(frozen=True)
class InstancesConfig:
    """``drivers``: kinds of instance beyond homecloud's own, each ``KIND: module:Class`` (an
    importable InstanceDriver) with its service set ``KIND.yaml`` in
    /etc/homecloud/service-sets."""

    drivers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PeerHostConfig:
    """Another homecloud host: a child (``children``: its zone ``<name>.<this host's zone>`` is
    delegated to it) or this host's parent (``parent``: the host whose zone is this host's
    ``domain``). ``addresses``: where its DNS server answers (default: the first address of
    each of its ``subnets``, where homecloud's DNS listens); ``via``: its addresses on a link
    this host shares, the next hops of routes to its instances; ``subnets``: its instances'
    subnets (see its `hc network ls`). With an IPv6 ``via``, its IPv6 /48 is routed too: it
    follows from its name."""

    name: str | None = None
    addresses: tuple[str, ...] = ()
    via: tuple[str, ...] = ()
    subnets: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetworkConfig:
    """The instances' network. ``bridge``: the host bridge they plug into; ``subnet4``: its
    IPv4 subnet (unset: a free private /24 is chosen once and kept); ``host_name``: this host's
    label in DNS (unset: the machine's host name); instances are named
    ``<instance>.<host_name>.<domain>``. ``children``: hosts to delegate subdomains to;
    ``parent``: the host whose zone ``domain`` is (names under it that are not ours are asked
    there). Values are checked when the agent sets the network up (see `hc doctor`)."""

    bridge: str = "hc0"
    subnet4: str | None = None
    domain: str = "home.arpa"
    host_name: str | None = None
    children: tuple[PeerHostConfig, ...] = ()
    parent: PeerHostConfig | None = None


@dataclass(frozen=True)
class FrontdoorConfig:
    """The authenticated HTTP front door (homecloud's own nginx). ``http``/``https``: its
    ports (HTTP only redirects); ``certificate``/``key``: the user's own TLS files (unset: a
    self-signed pair made at set-up); ``max_body``: the largest request body; ``timeout``:
    seconds a client may take to send a request head or between body reads (slow clients are
    cut off); ``per_client``: connections one address may hold; ``session``: seconds a login
    lasts; ``failures`` failed logins within ``window`` seconds ban the address (or the user
    name) for ``ban`` seconds."""

    http: int = 80
    https: int = 443
    certificate: Path | None = None
    key: Path | None = None
    max_body: int = 10 << 20
    timeout: int = 10
    per_client: int = 64
    session: int = 12 * 3600
    failures: int = 5
    window: int = 120
    ban: int = 300


@dataclass(frozen=True)
class NamedPolicy:
    """A snapshot policy of config.yaml: ``keep`` and ``every`` as `hc policy set` takes them
    (checked when the agent starts, by the snapshots service)."""

    name: str
    keep: str
    every: str | None = None
    replicate_to: str | None = None


@dataclass(frozen=True)
class SnapshotsConfig:
    """``policies``: named snapshot policies, ``NAME: {keep: "daily=7 weekly=4", every: 1d,
    replicate_to: PEER}``; ``instances``: which instance follows which, ``INSTANCE: NAME``.
    A policy set with `hc policy set` on one of those instances wins until `hc policy rm`."""

    policies: tuple[NamedPolicy, ...] = ()
    instances: tuple[tuple[str, str], ...] = ()

    def policy_of(self, instance: str) -> NamedPolicy | None:
        name = dict(self.instances).get(instance)
        return next((p for p in self.policies if p.name == name), None)


@dataclass(frozen=True)
class Config:
    state_dir: Path = Path("/var/lib/homecloud")
    run_dir: Path = Path("/run/homecloud")
    group: str = "homecloud"
    max_request_body: int = 1 << 20
    pool: PoolConfig = field(default_factory=PoolConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    instances: InstancesConfig = field(default_factory=InstancesConfig)
    frontdoor: FrontdoorConfig = field(default_factory=FrontdoorConfig)
    snapshots: SnapshotsConfig = field(default_factory=SnapshotsConfig)

    @property
    def socket_path(self) -> Path:
        return self.run_dir / "hc.sock"

    @property
    def database_path(self) -> Path:
        return self.state_dir / "state.db"


def _coerce(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    known = {f.name: f for f in fields(cls)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        key = key.replace("-", "_")
        if key not in known:
            raise UserError(f"{where}: unknown setting {key!r} (known: {', '.join(known)})")
        if key in {"path", "image_file", "state_dir", "run_dir"}:
            value = Path(str(value))
        elif key in {"certificate", "key"}:
            value = None if value is None else Path(str(value))
        elif key in _FRONTDOOR_NUMBERS:
            value = _positive(value, f"{where}: {key}")
        elif key in {"size", "max_request_body", "max_body"}:
            value = parse_size(value if isinstance(value, int) else str(value), f"{where}: {key}")
        elif key in {"bridge", "subnet4", "domain", "host_name"}:
            value = None if value is None else str(value)
        elif key == "children":
            value = _children(value, f"{where}: children")
        elif key == "parent":
            value = None if value is None else _peer(value, f"{where}: parent", named=False)
        elif key == "drivers":
            value = _drivers(value, f"{where}: drivers")
        elif key == "policies":
            value = _policies(value, f"{where}: policies")
        elif key == "instances" and cls is SnapshotsConfig:
            value = _policy_instances(value, f"{where}: instances")
        out[key] = value
    return out


_PEER_KEYS = {"name", "addresses", "via", "subnets"}
_FRONTDOOR_NUMBERS = {"http", "https", "timeout", "per_client", "session", "failures", "window",
                      "ban"}


def _positive(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{where}: expected a positive whole number, not {value!r}")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    """A list of strings, or one string."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{where}: expected a list of addresses")
    return tuple(value)


def _peer(item: Any, where: str, named: bool) -> PeerHostConfig:
    keys = _PEER_KEYS if named else _PEER_KEYS - {"name"}
    if not isinstance(item, dict) or not set(item) <= keys:
        raise UserError(f"{where}: expected a mapping with {', '.join(sorted(keys))}")
    if named and "name" not in item:
        raise UserError(f"{where}: 'name' is missing")
    peer = PeerHostConfig(
        name=str(item["name"]) if named else None,
        **{key: _strings(item.get(key), f"{where}: {key}")
           for key in ("addresses", "via", "subnets")})
    if not peer.addresses and not peer.subnets:
        raise UserError(f"{where}: needs 'addresses' (where its DNS answers) or 'subnets'")
    return peer


def _children(value: Any, where: str) -> tuple[PeerHostConfig, ...]:
    """``[{name: beta, addresses: [...], via: [...], subnets: [...]}, ...]``; an entry's lists
    may be single strings."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise UserError(f"{where}: expected a list of {{name, addresses, via, subnets}}")
    return tuple(_peer(item, f"{where}: entry {index}", named=True)
                 for index, item in enumerate(value, 1))


def _drivers(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    """``{kind: "module:Class", ...}``."""
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.count(":") == 1
            for k, v in value.items()):
        raise UserError(f"{where}: expected a mapping of kind names to 'module:Class'")
    return tuple(sorted(value.items()))


_POLICY_KEYS = ("keep", "every", "replicate_to")


def _policies(value: Any, where: str) -> tuple[NamedPolicy, ...]:
    """``{NAME: {keep: COUNTS, every: INTERVAL, replicate_to: PEER}, ...}``."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected a mapping of policy names to "
                        "{keep, every, replicate_to}")
    out = []
    for name, item in value.items():
        here = f"{where}: {name}"
        try:
            validate_name(str(name), "policy name")
        except UserError as exc:
            raise UserError(f"{where}: {exc.message}") from None
        if not isinstance(item, dict):
            raise UserError(f"{here}: expected a mapping with {', '.join(_POLICY_KEYS)}")
        item = {str(k).replace("-", "_"): v for k, v in item.items()}
        unknown = sorted(set(item) - set(_POLICY_KEYS))
        if unknown:
            raise UserError(f"{here}: unknown setting {unknown[0]!r} (known: "
                            f"{', '.join(_POLICY_KEYS)})")
        if "keep" not in item:
            raise UserError(f"{here}: 'keep' is missing (e.g. keep: \"daily=7 weekly=4\")")
        for key in _POLICY_KEYS:
            if item.get(key) is not None and not isinstance(item[key], str):
                raise UserError(f"{here}: {key} must be a string, not {item[key]!r}")
        out.append(NamedPolicy(name=str(name), keep=item["keep"], every=item.get("every"),
                               replicate_to=item.get("replicate_to")))
    return tuple(out)


def _policy_instances(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    """``{INSTANCE: POLICY, ...}``."""
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise UserError(f"{where}: expected a mapping of instance names to policy names")
    for instance in value:
        try:
            validate_instance_name(str(instance))
        except UserError as exc:
            raise UserError(f"{where}: {exc.message}") from None
    return tuple(sorted((str(k), v) for k, v in value.items()))


def parse_config(data: dict[str, Any] | None, where: str = "config") -> Config:
    """Build a Config from the YAML mapping ``data`` (None means all defaults)."""
    data = dict(data or {})
    sections: dict[str, Any] = {}
    for key, cls in (("pool", PoolConfig), ("images", ImagesConfig),
                     ("network", NetworkConfig), ("instances", InstancesConfig),
                     ("frontdoor", FrontdoorConfig), ("snapshots", SnapshotsConfig)):
        section = data.pop(key, None) or {}
        if not isinstance(section, dict):
            raise UserError(f"{where}: {key!r} must be a mapping")
        sections[key] = replace(cls(), **_coerce(cls, section, f"{where}: {key}"))
    if sections["pool"].driver not in POOL_DRIVERS:
        raise UserError(f"{where}: pool driver {sections['pool'].driver!r} is not one of "
                        f"{', '.join(POOL_DRIVERS)}")
    snapshots = sections["snapshots"]
    named = {p.name for p in snapshots.policies}
    for instance, policy in snapshots.instances:
        if policy not in named:
            raise UserError(f"{where}: snapshots: instances: {instance}: no policy named "
                            f"{policy!r} under snapshots: policies "
                            f"(there: {', '.join(sorted(named)) or 'none'})")
    return replace(Config(), **sections, **_coerce(Config, data, where))


def load_config(path: Path = CONFIG_PATH) -> Config:
    """Read the config file; a missing file means defaults."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Config()
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from exc
    if data is not None and not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of settings")
    return parse_config(data, str(path))
