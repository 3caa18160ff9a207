"""Host configuration: /etc/homecloud/config.yaml, read into plain dataclasses.

Everything has a default, so a host with no config file works; the file only overrides.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from homecloud.errors import UserError
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
class Config:
    state_dir: Path = Path("/var/lib/homecloud")
    run_dir: Path = Path("/run/homecloud")
    group: str = "homecloud"
    max_request_body: int = 1 << 20
    pool: PoolConfig = field(default_factory=PoolConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)

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
        elif key in {"size", "max_request_body"}:
            value = parse_size(value if isinstance(value, int) else str(value), f"{where}: {key}")
        out[key] = value
    return out


def parse_config(data: dict[str, Any] | None, where: str = "config") -> Config:
    """Build a Config from the YAML mapping ``data`` (None means all defaults)."""
    data = dict(data or {})
    sections: dict[str, Any] = {}
    for key, cls in (("pool", PoolConfig), ("images", ImagesConfig)):
        section = data.pop(key, None) or {}
        if not isinstance(section, dict):
            raise UserError(f"{where}: {key!r} must be a mapping")
        sections[key] = replace(cls(), **_coerce(cls, section, f"{where}: {key}"))
    if sections["pool"].driver not in POOL_DRIVERS:
        raise UserError(f"{where}: pool driver {sections['pool'].driver!r} is not one of "
                        f"{', '.join(POOL_DRIVERS)}")
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
