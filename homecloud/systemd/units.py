"""Transient services as plain data, rendered to D-Bus properties: pure, unit-tested without
systemd (transient.py starts them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

USEC = 1_000_000

# (name, D-Bus signature, value)
Property = tuple[str, str, Any]


@dataclass(frozen=True)
class TransientService:
    name: str  # "hc-web.service"
    argv: Sequence[str]
    description: str = ""
    service_type: str = "notify"  # notify | exec | simple | oneshot
    notify_access: str | None = None  # None: systemd's default (main)
    slice: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    cpus: float | None = None  # CPUQuota=cpus*100%
    memory_max: int | None = None  # bytes
    tasks_max: int | None = None
    timeout_stop: float | None = None  # seconds
    timeout_start: float | None = None
    kill_mode: str | None = None  # control-group | mixed | process | none
    kill_signal: int | None = None
    delegate: bool = False
    restart: str = "no"  # no | always | on-failure
    restart_sec: float | None = None
    remain_after_exit: bool = False
    success_exit_status: Sequence[int] = ()
    restart_force_exit_status: Sequence[int] = ()
    watchdog_sec: float | None = None
    device_policy: str | None = None
    device_allow: Sequence[tuple[str, str]] = ()
    accounting: bool = True  # CPU/memory/tasks accounting, so status can report usage
    # The client's stdin, stdout and stderr, as `systemd-run --pipe` passes them; None: the
    # journal.
    stdio: tuple[int, int, int] | None = None
    extra: Sequence[Property] = ()  # anything else, already typed


def _usec(seconds: float) -> int:
    return int(round(seconds * USEC))


def render_properties(svc: TransientService) -> list[Property]:
    """The StartTransientUnit property list for ``svc``, each with its D-Bus signature."""
    if not svc.argv:
        raise ValueError(f"{svc.name}: empty command line")
    props: list[Property] = [
        ("Description", "s", svc.description or svc.name),
        ("Type", "s", svc.service_type),
        ("ExecStart", "a(sasb)", [(svc.argv[0], list(svc.argv), False)]),
    ]
    if svc.notify_access:
        props.append(("NotifyAccess", "s", svc.notify_access))
    if svc.slice:
        props.append(("Slice", "s", svc.slice))
    if svc.environment:
        props.append(("Environment", "as", [f"{k}={v}" for k, v in svc.environment.items()]))
    if svc.accounting:
        props += [("CPUAccounting", "b", True), ("MemoryAccounting", "b", True),
                  ("TasksAccounting", "b", True)]
    if svc.cpus is not None:
        props.append(("CPUQuotaPerSecUSec", "t", _usec(svc.cpus)))
    if svc.memory_max is not None:
        props.append(("MemoryMax", "t", svc.memory_max))
    if svc.tasks_max is not None:
        props.append(("TasksMax", "t", svc.tasks_max))
    if svc.timeout_stop is not None:
        props.append(("TimeoutStopUSec", "t", _usec(svc.timeout_stop)))
    if svc.timeout_start is not None:
        props.append(("TimeoutStartUSec", "t", _usec(svc.timeout_start)))
    if svc.kill_mode:
        props.append(("KillMode", "s", svc.kill_mode))
    if svc.kill_signal is not None:
        props.append(("KillSignal", "i", svc.kill_signal))
    if svc.delegate:
        props.append(("Delegate", "b", True))
    props.append(("Restart", "s", svc.restart))
    if svc.restart_sec is not None:
        props.append(("RestartUSec", "t", _usec(svc.restart_sec)))
    if svc.remain_after_exit:
        props.append(("RemainAfterExit", "b", True))
    if svc.success_exit_status:
        props.append(("SuccessExitStatus", "(aiai)", (list(svc.success_exit_status), [])))
    if svc.restart_force_exit_status:
        props.append(("RestartForceExitStatus", "(aiai)",
                      (list(svc.restart_force_exit_status), [])))
    if svc.watchdog_sec is not None:
        props.append(("WatchdogUSec", "t", _usec(svc.watchdog_sec)))
    if svc.device_policy:
        props.append(("DevicePolicy", "s", svc.device_policy))
    if svc.device_allow:
        props.append(("DeviceAllow", "a(ss)", [tuple(d) for d in svc.device_allow]))
    if svc.stdio is not None:
        for stream, fd in zip(("Input", "Output", "Error"), svc.stdio, strict=True):
            props.append((f"Standard{stream}FileDescriptor", "h", fd))
    props += list(svc.extra)
    return props
