"""What the user asked for when creating an instance, validated before anything is made."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from homecloud.errors import UserError
from homecloud.instances.kinds import BUILTIN_KINDS
from homecloud.names import validate_instance_name, validate_name
from homecloud.network.ports import PortMapping, check_unique, parse_port_mapping
from homecloud.ownunits import RESERVED_NAMES
from homecloud.sizes import format_size, parse_seconds, parse_size

RESTART_POLICIES = ("no", "always")
# default: an address on the host's bridge, a DNS name, firewall rules for published ports;
# none: a private network namespace with loopback only.
NETWORK_MODES = ("default", "none")
MIN_MEMORY = 32 << 20
# --idle: long enough for a guest to boot and answer, short enough to be a real bound.
MIN_IDLE = 1.0
MAX_IDLE = 7 * 86400.0
_IDLE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Bind:
    source: str
    target: str
    readonly: bool = False
    # The guest's user namespace mapped onto the files (nspawn's idmap): set by homecloud for
    # its data datasets, whose files the guest owns; never parsed from --bind.
    idmap: bool = False

    @classmethod
    def parse(cls, text: str) -> Bind:
        """``SRC:DST[:ro|rw]`` as typed after ``--bind``."""
        parts = text.split(":")
        mode = "rw"
        if len(parts) == 3 and parts[2] in ("ro", "rw"):
            mode = parts.pop()
        if len(parts) != 2 or not all(parts):
            raise UserError(f"--bind {text!r} is invalid: use SOURCE:TARGET or SOURCE:TARGET:ro")
        return cls(parts[0], parts[1], mode == "ro")


@dataclass(frozen=True)
class HostLimits:
    """What the host has; injected so validation stays testable."""

    cpus: int
    memory: int  # bytes

    @classmethod
    def probe(cls) -> HostLimits:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return cls(cpus=os.cpu_count() or 1, memory=int(pages))


@dataclass(frozen=True)
class InstanceSpec:
    name: str
    image: str
    kind: str = "container"
    cpus: float | None = None
    memory: int | None = None  # bytes
    env: dict[str, str] = field(default_factory=dict)
    binds: list[Bind] = field(default_factory=list)
    command: list[str] | None = None  # command mode: run this instead of booting
    restart: str = "no"
    boot: bool = True
    ports: tuple[PortMapping, ...] = ()  # published: `-p HOST:GUEST[/udp]`
    network: str = "default"  # NETWORK_MODES; rows from before it read as "default"
    # Virtual machines (kind "vm"); other kinds refuse them (their drivers' validate).
    machine: str | None = None  # microvm | q35; None: the kind's default
    uefi: bool = False  # boot through OVMF (UEFI) with NVRAM of its own
    tpm: bool = False  # a TPM 2.0 (swtpm) whose state persists
    disk: int | None = None  # bytes: the disk grown to this size
    cdrom: str | None = None  # a host path: an ISO attached as a CD-ROM
    ssh_keys: tuple[str, ...] = ()  # public keys for root (authorized_keys lines)
    user_data: str | None = None  # cloud-init user-data, passed through
    # Seconds with no connection open after which the instance sleeps (stops, and a
    # connection to it wakes it); None: it runs until stopped.
    idle: float | None = None
    # What only the instance's kind reads (a lambda's code and limits), checked by its driver.
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Command mode means no boot, whatever the caller said.
        if self.command:
            object.__setattr__(self, "boot", False)

    def vm_options(self) -> list[str]:
        """The options given that only a VM takes, as the user typed them."""
        given = [("--machine", self.machine is not None), ("--uefi", self.uefi),
                 ("--tpm", self.tpm), ("--disk", self.disk is not None),
                 ("--cdrom", self.cdrom is not None), ("--ssh-key", bool(self.ssh_keys)),
                 ("--user-data", self.user_data is not None)]
        return [option for option, present in given if present]

    @property
    def networked(self) -> bool:
        """Whether the instance is put on the host's network (lease, netns, DNS, rules)."""
        return self.network != "none"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstanceSpec:
        data = dict(data)
        data["binds"] = [Bind(**b) for b in data.get("binds", [])]
        data["ports"] = tuple(PortMapping.from_json(p) for p in data.get("ports", []))
        data["ssh_keys"] = tuple(data.get("ssh_keys", ()))
        return cls(**data)

    def validate(self, host: HostLimits | None = None,
                 kinds: Sequence[str] | None = None, *, uses_image: bool = True
                 ) -> InstanceSpec:
        """Raise a one-line UserError for the first thing wrong; return self when all is well.
        ``kinds``: the kinds this host has drivers for (default: homecloud's own);
        ``uses_image``: whether the kind is made from an image (else it must name none)."""
        host = host or HostLimits.probe()
        kinds = tuple(BUILTIN_KINDS) if kinds is None else kinds
        validate_instance_name(self.name)
        if self.name in RESERVED_NAMES:
            raise UserError(f"instance name {self.name!r} is reserved ("
                            f"{RESERVED_NAMES[self.name]}); choose another")
        if uses_image:  # a kind made from something else says what it takes (its driver)
            validate_name(self.image, "image name")
        if self.kind not in kinds:
            raise UserError(f"instance kind {self.kind!r} is not supported (use: "
                            f"{', '.join(kinds)})")
        if self.restart not in RESTART_POLICIES:
            raise UserError(f"--restart {self.restart!r} is invalid: use "
                            f"{' or '.join(RESTART_POLICIES)}")
        _check_cpus(self.cpus, host)
        _check_memory(self.memory, host)
        for key in self.env:
            if not _ENV_KEY_RE.fullmatch(key):
                raise UserError(f"--env {key!r} is not a valid variable name: use letters, "
                                "digits and '_', not starting with a digit")
        for key, value in self.env.items():
            if "\0" in value or "\n" in value:
                raise UserError(f"--env {key}: the value must not contain newlines or NUL")
        targets: set[str] = set()
        for bind in self.binds:
            _check_bind(bind)
            if bind.target in targets:
                raise UserError(f"--bind target {bind.target} is given twice")
            targets.add(bind.target)
        if self.command is not None and not self.command:
            raise UserError("the command after `--` is empty")
        if self.network not in NETWORK_MODES:
            raise UserError(f"--network {self.network!r} is invalid: use "
                            f"{' or '.join(NETWORK_MODES)}")
        if self.ports and not self.networked:
            raise UserError("-p needs networking: an instance with --network none has "
                            "loopback only; drop -p or --network none")
        check_unique(self.ports)
        self._check_idle()
        return self

    def _check_idle(self) -> None:
        if self.idle is None:
            return
        if self.command is not None:
            raise UserError("--idle needs a booted instance: a command runs once and ends, "
                            "so there is nothing to wake; drop --idle or the command")
        if not self.networked:
            raise UserError("--idle needs networking: a connection to the instance wakes it, "
                            "and with --network none nothing can connect; drop one of them")
        if not MIN_IDLE <= self.idle <= MAX_IDLE:
            raise UserError(f"--idle {self.idle:g}s is out of range: give {MIN_IDLE:g}s to "
                            f"{MAX_IDLE / 86400:g}d")


def parse_ports(items: list[str]) -> tuple[PortMapping, ...]:
    """``HOST:GUEST[/udp]`` strings as typed after ``-p``."""
    return tuple(parse_port_mapping(item) for item in items)


def parse_idle(text: str | int | float) -> float:
    """``--idle``: ``30s``, ``10m``, ``2h``, ``1d`` or a number of seconds."""
    if isinstance(text, bool):
        raise UserError(f"--idle {text!r} is invalid: give a duration like 30s, 10m or 2h")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        parsed = parse_seconds(text, _IDLE_UNITS)
        if parsed is None:
            raise UserError(f"--idle {text!r} is invalid: give a duration like 30s, 10m, 2h "
                            "or 1d")
        seconds = parsed
    if not MIN_IDLE <= seconds <= MAX_IDLE:
        raise UserError(f"--idle {text!r} is out of range: give {MIN_IDLE:g}s to "
                        f"{MAX_IDLE / 86400:g}d")
    return seconds


def parse_memory(text: str | int) -> int:
    return parse_size(text, "--memory")


def _check_cpus(cpus: float | None, host: HostLimits) -> None:
    if cpus is None:
        return
    if not isinstance(cpus, int | float) or cpus != cpus or cpus <= 0:
        raise UserError(f"--cpus {cpus!r} is invalid: give a number of CPUs greater than 0, "
                        "like 1 or 0.5")
    if cpus < 0.01:
        raise UserError(f"--cpus {cpus} is too small: at least 0.01")
    if cpus > host.cpus:
        raise UserError(f"--cpus {cpus:g} is more than this host has ({host.cpus})")


def _check_memory(memory: int | None, host: HostLimits) -> None:
    if memory is None:
        return
    if memory < MIN_MEMORY:
        raise UserError(f"--memory {format_size(memory)} is too small: a container needs at "
                        f"least {format_size(MIN_MEMORY)}")
    if memory > host.memory:
        raise UserError(f"--memory {format_size(memory)} is more than this host has "
                        f"({format_size(host.memory)})")


def _check_bind(bind: Bind) -> None:
    if not bind.target.startswith("/"):
        raise UserError(f"--bind target {bind.target!r} must be an absolute path in the instance")
    if any(part == ".." for part in Path(bind.target).parts):
        raise UserError(f"--bind target {bind.target!r} must not contain '..'")
    if not bind.source.startswith("/"):
        raise UserError(f"--bind source {bind.source!r} must be an absolute path on the host")
    if not os.path.exists(bind.source):
        raise UserError(f"--bind source {bind.source} does not exist on the host; create it "
                        "first")
    for text in (bind.source, bind.target):
        if any(ch in text for ch in ":,\n\0"):
            raise UserError(f"--bind path {text!r} must not contain ':' ',' or newlines")
