"""What `hc ls` and `hc inspect` show of an instance: its record joined with systemd's view."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from homecloud.instances.records import Instance
from homecloud.systemd.transient import UnitStatus, UnitSummary

if TYPE_CHECKING:
    from homecloud.network.plan import InstanceAddresses


@dataclass(frozen=True)
class InstanceInfo:
    name: str
    image: str
    kind: str
    # creating | starting | running | exited | stopping | stopped | sleeping | failed | removing
    state: str
    unit: str
    pid: int | None  # the unit's main PID (systemd-nspawn's for a container)
    started: float | None  # seconds since the epoch
    uptime: float | None  # seconds
    cpus: float | None
    memory: int | None  # the limit, bytes
    command: list[str] | None
    restart: str
    created: float
    memory_used: int | None = None
    cpu_seconds: float | None = None
    exit_status: int | None = None
    ipv4: str | None = None
    ipv6: str | None = None
    ports: list[str] = field(default_factory=list)  # "8080:80/tcp"
    network: str = "default"  # default | none (loopback only)
    capabilities: list[str] = field(default_factory=list)  # what its kind can do: exec, ...
    idle: float | None = None  # seconds: it sleeps after that long with no connection open


def instance_state(phase: str, unit: UnitSummary | UnitStatus | None,
                   idle: bool = False) -> str:
    """``idle``: stopped, it sleeps (a connection wakes it)."""
    if phase != "ready":
        return phase
    if unit is None:
        return "sleeping" if idle else "stopped"
    active, sub = unit.active_state, unit.sub_state
    if active == "active":
        return "exited" if sub == "exited" else "running"
    if active == "activating":
        return "failed" if sub == "auto-restart" else "starting"
    if active == "deactivating":
        return "stopping"
    if active == "failed":
        return "failed"
    return "sleeping" if idle else "stopped"


def describe(instance: Instance, unit: UnitSummary | UnitStatus | None,
             addresses: InstanceAddresses | None,
             capabilities: frozenset[str] = frozenset(), state: str | None = None
             ) -> InstanceInfo:
    """``state``: as its driver reads it (default: from ``unit``, its hc-NAME.service)."""
    spec = instance.spec
    status = unit if isinstance(unit, UnitStatus) else None
    running = (unit is not None and unit.active_state in ("active", "deactivating")
               and unit.sub_state != "exited")
    started = status.started if status and running else None
    return InstanceInfo(
        name=spec.name, image=spec.image, kind=spec.kind,
        state=state or instance_state(instance.phase, unit, spec.idle is not None),
        unit=instance.unit,
        pid=status.main_pid if status else None, started=started,
        uptime=time.time() - started if started else None,
        cpus=spec.cpus, memory=spec.memory, command=spec.command, restart=spec.restart,
        created=instance.created,
        memory_used=status.memory if status else None,
        cpu_seconds=status.cpu_nsec / 1e9 if status and status.cpu_nsec is not None else None,
        exit_status=status.exec_main_status if status and not running else None,
        ipv4=str(addresses.ipv4) if addresses else None,
        ipv6=str(addresses.ipv6) if addresses else None,
        ports=[str(p) for p in spec.ports], network=spec.network,
        capabilities=sorted(capabilities), idle=spec.idle,
    )
