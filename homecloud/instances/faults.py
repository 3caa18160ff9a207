"""Fault injection for the crash-consistency tests (tests/system/test_cli_instances.py): with
HC_TEST_CRASH_AFTER_STEP=<step id> in the agent's environment, the agent SIGKILLs itself as soon
as that creation step has completed, as a crash at that point would."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from homecloud.instances.context import Progress
from homecloud.instances.steps import StepEvent

CRASH_AFTER_STEP_ENV = "HC_TEST_CRASH_AFTER_STEP"


def crash_after_step(progress: Progress | None,
                     step: str | None) -> Callable[[StepEvent], None] | None:
    """``progress``, or with ``step`` set, a progress that kills this process after ``step``."""
    if not step:
        return progress

    def report(event: StepEvent) -> None:
        if event.step == step and event.phase == "done":
            os.kill(os.getpid(), signal.SIGKILL)
        if progress is not None:
            progress(event)
    return report


def from_environment(progress: Progress | None) -> Callable[[StepEvent], None] | None:
    return crash_after_step(progress, os.environ.get(CRASH_AFTER_STEP_ENV))
