"""Run a "make the system match the record" function for many callers at once.

Twenty instances created together each need the firewall and the DNS zone rebuilt with
themselves in; one rebuild that starts after all of them were recorded serves them all.
``Coalesced()`` returns once a run that *started after the call* has finished (so it saw the
caller's change), raising that run's error; calls made while a run is going share the next one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Coalesced:
    def __init__(self, run: Callable[[], None]) -> None:
        self._run = run
        self._cond = threading.Condition()
        self._requested = 0  # tickets handed out
        self._covered = 0  # the highest ticket a finished run covers
        self._running = False
        self._error: BaseException | None = None  # of the last finished run
        self.runs = 0  # how many runs there were (for tests and benchmarks)

    def __call__(self) -> None:
        with self._cond:
            self._requested += 1
            ticket = self._requested
            while True:
                if self._covered >= ticket:
                    if self._error is not None:
                        raise self._error
                    return
                if not self._running:
                    self._running = True
                    covers = self._requested
                    break
                self._cond.wait()
        error: BaseException | None = None
        try:
            self._run()
        except BaseException as exc:
            error = exc
        with self._cond:
            self._running = False
            self.runs += 1
            self._covered = covers
            self._error = error
            self._cond.notify_all()
        if error is not None:
            raise error
