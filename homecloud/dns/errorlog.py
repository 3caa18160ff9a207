"""Errors caused by what arrives from the network, logged at a bounded rate: one line at most per
``interval`` seconds, with how many happened, so a flood of packets that trip a bug cannot fill
the journal (or slow the server down writing to it)."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_INTERVAL = 60.0

Schedule = Callable[[float, Callable[[], None]], object]  # (delay, callback), as loop.call_later


def describe(exc: BaseException) -> str:
    """``TypeError: message (at file.py:123)``: the error and where it was raised, one line."""
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        where = f" (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
    return f"{type(exc).__name__}: {exc}{where}"


@dataclass
class RateLimitedLog:
    """Counts errors of one kind (``what``: "answering a query") and logs them at most once per
    ``interval``: the first at once, later ones as a count when the interval is over."""

    logger: logging.Logger
    what: str
    interval: float = DEFAULT_INTERVAL
    clock: Callable[[], float] = time.monotonic
    schedule: Schedule | None = None  # without one, the count waits for the next error
    _last: float | None = None
    _count: int = 0
    _latest: str = ""
    _flush_due: bool = False
    total: int = 0

    def record(self, exc: BaseException) -> None:
        self.total += 1
        self._count += 1
        self._latest = describe(exc)
        now = self.clock()
        if self._last is None or now - self._last >= self.interval:
            self.flush()
        elif not self._flush_due and self.schedule is not None:
            self._flush_due = True
            self.schedule(self._last + self.interval - now, self.flush)

    def flush(self) -> None:
        """Log what was counted since the last line, if anything."""
        self._flush_due = False
        if not self._count:
            return
        self.logger.error("%d error(s) %s in the last %.0f s (%d since start); latest: %s",
                          self._count, self.what, self.interval, self.total, self._latest)
        self._count = 0
        self._last = self.clock()
