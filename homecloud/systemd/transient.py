"""Transient services started and watched over D-Bus (described and rendered in units.py).

We marshal the property list ourselves
rather than through pystemd's ``StartTransientUnit``, whose ``KNOWN_UNIT_SIGNATURES`` table
raises KeyError for properties it does not list; here every property carries its own D-Bus
signature.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from homecloud.errors import HomecloudError, UserError
from homecloud.systemd.bus import SERVICE_IFACE, UNIT_IFACE, SystemBus, unit_path
from homecloud.systemd.units import USEC, Property, TransientService, render_properties
from homecloud.systemd.watch import UnitWatch

__all__ = ["Property", "Systemd", "TransientService", "UnitFailed", "UnitStatus", "UnitSummary",
           "marshal_properties", "render_properties"]

DISCARD_WAIT = 5.0
log = logging.getLogger(__name__)


class UnitFailed(UserError):
    """A unit did not come up; the message carries its last log lines."""

    def __init__(self, message: str, lines: Sequence[str] = ()) -> None:
        full = message if not lines else message + "; last log lines:\n  " + "\n  ".join(lines)
        super().__init__(full)
        self.lines = list(lines)


def marshal_properties(props: Sequence[Property]) -> list[Any]:
    """pystemd's argument list for a D-Bus ``a(sv)``."""
    from pystemd.dbuslib import apply_signature

    args: list[Any] = [(ord("a"), b"(sv)")]
    for name, signature, value in props:
        args += [(ord("r"), b"sv"), (ord("s"), name.encode()), (ord("v"), signature.encode())]
        args += apply_signature(signature.encode(), [_to_bytes(value)])
        args += [(-1, None), (-1, None)]
    args.append((-1, None))
    return args


def _to_bytes(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list):
        return [_to_bytes(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_bytes(v) for v in value)
    return value


# -- talking to systemd --------------------------------------------------------------------------

def _dbus_error_name(exc: BaseException) -> str:
    name = getattr(exc, "err_name", b"") or b""
    text = name.decode() if isinstance(name, bytes) else str(name)
    return text + " " + str(exc)


def _is_no_such_unit(exc: BaseException) -> bool:
    text = _dbus_error_name(exc)
    return "NoSuchUnit" in text or "not loaded" in text


@dataclass(frozen=True)
class UnitStatus:
    name: str
    load_state: str
    active_state: str  # active | activating | deactivating | inactive | failed
    sub_state: str  # running | exited | dead | failed | auto-restart | start | ...
    main_pid: int | None
    exec_main_status: int | None
    result: str  # success | exit-code | signal | timeout | ...
    started: float | None  # seconds since the epoch
    memory: int | None  # bytes
    cpu_nsec: int | None
    tasks: int | None
    invocation_id: str | None


_UNSET = (1 << 64) - 1


def _opt(value: Any) -> int | None:
    return None if value in (None, _UNSET) else int(value)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Systemd:
    """The few manager operations homecloud needs, over one :class:`SystemBus`."""

    def __init__(self, bus: SystemBus) -> None:
        self.bus = bus

    def start_transient(self, svc: TransientService, *, timeout: float = 90.0,
                        accept_exited: bool = False) -> UnitStatus:
        """Start ``svc`` and wait until its start job is done.

        Succeeds when the unit is active (for Type=notify: READY was sent), or, with
        ``accept_exited`` (commands, Type=exec), once the command was started at all: however it
        ends is its exit status, read with wait_finished. Otherwise the unit is stopped and
        reset (nothing is left behind) and UnitFailed carries its last log lines.
        """
        from pystemd.dbuslib import apply_signature

        args = apply_signature(b"ss", [svc.name.encode(), b"fail"])
        args += marshal_properties(render_properties(svc))
        args += [(ord("a"), b"(sa(sv))"), (-1, None)]  # no auxiliary units
        try:
            self.bus.manager(b"StartTransientUnit", args)
        except Exception as exc:
            if "already exists" in str(exc) or "UnitExists" in _dbus_error_name(exc):
                raise UserError(f"unit {svc.name} already exists; stop it with "
                                f"`systemctl stop {svc.name}` first") from exc
            raise HomecloudError(f"systemd refused to start {svc.name}: {exc}") from exc
        try:
            status = self.wait_for_job(svc.name, timeout)
        except BaseException:
            self.discard(svc.name)
            raise
        if status.active_state == "active" or accept_exited:
            return status
        from homecloud.systemd.journal import unit_lines

        lines = unit_lines(svc.name, 15, invocation=status.invocation_id)
        self.discard(svc.name)
        why = status.result if status.result != "success" else status.sub_state
        raise UnitFailed(f"{svc.name} failed to start ({why})", lines)

    def wait_for_job(self, unit: str, timeout: float) -> UnitStatus:
        """Wait until ``unit`` has no pending job; UnitFailed (with log lines) after
        ``timeout`` seconds."""
        if self._job_done(unit, timeout):
            return self.unit_status(unit) or _gone(unit)
        status = self.unit_status(unit) or _gone(unit)
        from homecloud.systemd.journal import unit_lines

        raise UnitFailed(f"{unit} did not finish starting within {timeout:.0f}s",
                         unit_lines(unit, 15, invocation=status.invocation_id))

    def _job_done(self, unit: str, timeout: float) -> bool:
        """Wait until ``unit`` has no job (True) or ``timeout`` passes (False)."""
        path = unit_path(unit)

        def no_job() -> bool:
            job_id, _ = self.bus.get(path, UNIT_IFACE, b"Job", b"(uo)")
            return bool(job_id == 0)

        return self._wait_for(path, no_job, timeout, 0.01)

    def wait_finished(self, unit: str, timeout: float | None = None) -> UnitStatus:
        """Wait until the unit's main process has ended (sub-state exited, or the unit is
        inactive or failed); return its last status. TimeoutError after ``timeout`` seconds.
        Checks two properties (a full unit_status is ~10x the cost, in systemd's CPU too) and
        reads the full status once, at the end."""
        path = unit_path(unit)

        def ended() -> bool:
            active = _s(self.bus.get(path, UNIT_IFACE, b"ActiveState", b"s"))
            sub = _s(self.bus.get(path, UNIT_IFACE, b"SubState", b"s"))
            return sub == "exited" or active in ("inactive", "failed")

        if not self._wait_for(path, ended, timeout, 0.005):
            raise TimeoutError(f"{unit} still runs after {timeout:.0f}s")
        return self.unit_status(unit) or _gone(unit)

    def _wait_for(self, path: bytes, done: Callable[[], bool], timeout: float | None,
                  fast_cap: float) -> bool:
        """Check ``done()`` until it is True, or False once ``timeout`` seconds pass. Between
        checks the wait sleeps until systemd signals a change of the unit (watch.py; slow polls
        only as a fallback), or, if no watch can be opened, polls: every ms at first, backing
        off to ``fast_cap``."""
        if done():
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        watch = self._watch(path)
        pauses = _poll_pauses(fast_cap)
        try:
            while not done():
                pause = SLOW_WAIT_PAUSE if watch is not None else next(pauses)
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    pause = min(pause, remaining)
                if watch is not None:
                    watch.wait(pause)
                else:
                    time.sleep(pause)
            return True
        finally:
            if watch is not None:
                watch.close()

    def _watch(self, path: bytes) -> UnitWatch | None:
        try:
            return UnitWatch(self.bus.address, path)
        except Exception as exc:  # e.g. the bus's connection limit: polling works as well
            log.debug("cannot watch %s, polling instead: %s", path.decode(), exc)
            return None

    def stop_unit(self, unit: str, timeout: float | None = None) -> None:
        """Stop ``unit`` if loaded, and wait. nspawn powers the guest off on SIGTERM; systemd
        kills what is left after the unit's TimeoutStopSec, or we do after ``timeout``
        (TimeoutStopUSec cannot be changed on a running unit)."""
        from pystemd.dbuslib import apply_signature

        name = unit.encode()
        try:
            self.bus.manager(b"StopUnit", apply_signature(b"ss", [name, b"replace"]))
        except Exception as exc:
            if _is_no_such_unit(exc):
                return
            raise HomecloudError(f"cannot stop {unit}: {exc}") from exc
        if self._job_done(unit, timeout if timeout is not None else 3600.0):
            return
        try:
            self.bus.manager(b"KillUnit", apply_signature(b"ssi", [name, b"all",
                                                                   int(signal.SIGKILL)]))
        except Exception as exc:
            if not _is_no_such_unit(exc):
                raise HomecloudError(f"cannot kill {unit}: {exc}") from exc
        if not self._job_done(unit, 30.0):
            raise HomecloudError(f"{unit} did not stop, even after SIGKILL; see "
                                 f"`journalctl -u {unit}`")

    def reset_failed(self, unit: str) -> None:
        from pystemd.dbuslib import apply_signature

        try:
            self.bus.manager(b"ResetFailedUnit", apply_signature(b"s", [unit.encode()]))
        except Exception as exc:
            if not _is_no_such_unit(exc):
                raise

    def start_unit(self, unit: str, timeout: float = 30.0) -> UnitStatus:
        """Start an installed unit (no-op if it runs) and wait for its start job."""
        from pystemd.dbuslib import apply_signature

        try:
            self.bus.manager(b"StartUnit", apply_signature(b"ss", [unit.encode(), b"replace"]))
        except Exception as exc:
            raise HomecloudError(f"systemd cannot start {unit}: {exc}") from exc
        return self.wait_for_job(unit, timeout)

    def signal_unit(self, unit: str, signum: int, whom: str = "main") -> bool:
        """Send ``signum`` to the unit's main process (or ``whom``: all, control); False if
        the unit is not running."""
        from pystemd.dbuslib import apply_signature

        try:
            self.bus.manager(b"KillUnit", apply_signature(b"ssi", [unit.encode(),
                                                                   whom.encode(), signum]))
        except Exception as exc:
            if _is_no_such_unit(exc) or "No main PID" in str(exc) or "not running" in str(exc):
                return False
            raise HomecloudError(f"cannot signal {unit}: {exc}") from exc
        return True

    def discard(self, unit: str) -> None:
        """Stop and forget a transient unit; idempotent (undo steps and reconcile use it).
        Returns once systemd has unloaded it (a unit another client still references, as
        machined may for a moment after a container stops, stays loaded, and a new transient
        unit of its name is refused meanwhile), or after DISCARD_WAIT seconds."""
        self.stop_unit(unit)
        self.reset_failed(unit)
        path = unit_path(unit)
        deadline = time.monotonic() + DISCARD_WAIT
        pauses = _poll_pauses(0.01)
        while _s(self.bus.get(path, UNIT_IFACE, b"LoadState", b"s")) == "loaded":
            if time.monotonic() > deadline:
                return
            time.sleep(next(pauses))

    def main_pid(self, unit: str) -> int | None:
        """The main process of service ``unit`` (None: it runs none, or is not a service):
        one property read, for hot paths (a snapshot) that need nothing more of its state."""
        if not unit.endswith(".service"):
            return None
        return int(self.bus.get(unit_path(unit), SERVICE_IFACE, b"MainPID", b"u")) or None

    def unit_status(self, unit: str) -> UnitStatus | None:
        """The unit's state, or None when systemd has no such unit loaded."""
        path = unit_path(unit)
        props = self.bus.get_all(path, UNIT_IFACE)
        if _s(props.get(b"LoadState", b"")) in ("not-found", ""):
            return None
        svc: dict[bytes, Any] = {}
        if unit.endswith(".service"):
            svc = self.bus.get_all(path, SERVICE_IFACE)
        started = props.get(b"ActiveEnterTimestamp") or 0
        invocation = props.get(b"InvocationID") or b""
        pid = svc.get(b"MainPID") or 0
        return UnitStatus(
            name=unit, load_state=_s(props[b"LoadState"]),
            active_state=_s(props.get(b"ActiveState", b"")),
            sub_state=_s(props.get(b"SubState", b"")),
            main_pid=int(pid) or None,
            exec_main_status=_opt(svc.get(b"ExecMainStatus")),
            result=_s(svc.get(b"Result", b"success")),
            started=started / USEC if started else None,
            memory=_opt(svc.get(b"MemoryCurrent")),
            cpu_nsec=_opt(svc.get(b"CPUUsageNSec")),
            tasks=_opt(svc.get(b"TasksCurrent")),
            invocation_id=bytes(invocation).hex() if invocation else None,
        )

    def list_units(self, patterns: Sequence[str] = ("hc-*",)) -> dict[str, UnitSummary]:
        """Loaded units matching ``patterns``: one D-Bus round trip whatever their number."""
        from pystemd.dbuslib import apply_signature

        body = self.bus.manager(b"ListUnitsByPatterns", apply_signature(
            b"asas", [[], [p.encode() for p in patterns]]))
        rows = body[0] if isinstance(body, tuple) else body
        out = {}
        for row in rows:
            summary = UnitSummary(name=_s(row[0]), load_state=_s(row[2]),
                                  active_state=_s(row[3]), sub_state=_s(row[4]))
            out[summary.name] = summary
        return out


@dataclass(frozen=True)
class UnitSummary:
    name: str
    load_state: str
    active_state: str
    sub_state: str


# Waits without a watch (watch.py) poll: every 1 ms at first, so short waits end at once,
# backing off to a few ms; once a wait has lasted a second, to 50 ms. With a watch, 50 ms is the
# pause between checks when no signal comes.
# Each poll costs ~0.3 ms of CPU between the agent, dbus-daemon and systemd: twenty guests
# booting at once (~5 s each on 2 cores) polled every 10 ms took ~1.3 s of CPU from the
# machine booting them; with the slower polls after a second, ~0.9 s (measured in a dev host).
SLOW_WAIT = 1.0
SLOW_WAIT_PAUSE = 0.05


def _poll_pauses(fast_cap: float) -> Iterator[float]:
    """Sleeps between the polls of one wait."""
    start = time.monotonic()
    pause = 0.001
    while True:
        yield pause
        cap = fast_cap if time.monotonic() - start < SLOW_WAIT else SLOW_WAIT_PAUSE
        pause = min(pause * 1.5, cap)


def _gone(unit: str) -> UnitStatus:
    """A unit systemd already forgot: it ran and was collected (success, not failure)."""
    return UnitStatus(name=unit, load_state="not-found", active_state="inactive",
                      sub_state="dead", main_pid=None, exec_main_status=None, result="success",
                      started=None, memory=None, cpu_nsec=None, tasks=None, invocation_id=None)
