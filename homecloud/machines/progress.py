"""A machine's way through its workflow: each step's state, duration and message.

The installer reports events (``{"step", "status", "message"}``); this module folds them into
step states and says where a new boot of the installer goes on from. Pure: the caller gives the
clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from homecloud.errors import UserError

PENDING = "pending"
RUNNING = "running"
OK = "ok"
FAILED = "failed"
STEP_STATES = (PENDING, RUNNING, OK, FAILED)
# What the installer may report, and the step state each one leads to.
EVENTS: Mapping[str, str] = {"started": RUNNING, "ok": OK, "failed": FAILED}
MAX_MESSAGE = 2000

# A machine's own states: waiting for its first network boot, the installer at work, the
# workflow finished (only the installer's /done sets it), or a step failed.
WAITING = "waiting"
INSTALLING = "installing"
INSTALLED = "installed"
MACHINE_FAILED = "failed"
MACHINE_STATES = (WAITING, INSTALLING, INSTALLED, MACHINE_FAILED)


@dataclass(frozen=True)
class StepState:
    id: str
    status: str = PENDING
    started: float | None = None
    finished: float | None = None
    message: str = ""

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished if self.finished is not None else self.started) - self.started

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "duration": self.duration}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepState:
        return cls(id=str(data["id"]), status=str(data.get("status", PENDING)),
                   started=data.get("started"), finished=data.get("finished"),
                   message=str(data.get("message", "")))


def fresh_steps(ids: Sequence[str]) -> tuple[StepState, ...]:
    return tuple(StepState(step) for step in ids)


def align(steps: Sequence[StepState], ids: Sequence[str]) -> tuple[StepState, ...]:
    """``steps`` in the workflow's order: a step the workflow gained is pending, one it lost
    is dropped (a user may edit their workflow between installs)."""
    known = {s.id: s for s in steps}
    return tuple(known.get(step, StepState(step)) for step in ids)


def apply_event(steps: Sequence[StepState], step: str, status: str, message: str,
                now: float) -> tuple[StepState, ...]:
    """The steps after the installer reported ``status`` for ``step``."""
    if status not in EVENTS:
        raise UserError(f"status {status!r} is invalid: use {', '.join(EVENTS)}")
    if step not in {s.id for s in steps}:
        raise UserError(f"the workflow has no step {step!r}")
    message = message[:MAX_MESSAGE]
    out = []
    for state in steps:
        if state.id != step:
            out.append(state)
        elif status == "started":
            out.append(StepState(step, RUNNING, started=now, message=message))
        else:
            started = state.started if state.started is not None else now
            out.append(replace(state, status=EVENTS[status], started=started, finished=now,
                               message=message))
    return tuple(out)


def current_step(steps: Sequence[StepState]) -> str | None:
    """The step running now, else the one that failed, else the next one to run."""
    for wanted in (RUNNING, FAILED, PENDING):
        for state in steps:
            if state.status == wanted:
                return state.id
    return None


def resume_from(steps: Sequence[StepState]) -> str | None:
    """Where a new boot of the installer goes on: the first step not finished ok once an
    earlier one has; None to start from the beginning (nothing done yet, or everything done
    but never confirmed: a disk not known to be whole is written again)."""
    if not steps or steps[0].status != OK:
        return None
    for state in steps:
        if state.status != OK:
            return state.id
    return None


def all_ok(steps: Sequence[StepState]) -> bool:
    return bool(steps) and all(s.status == OK for s in steps)


def machine_state_after(steps: Sequence[StepState]) -> str:
    """The machine's state while its installer reports: failed once a step failed."""
    return MACHINE_FAILED if any(s.status == FAILED for s in steps) else INSTALLING
