"""A send's progress: each stream's bytes so far and their rate, reported as they go but not
for every chunk."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from homecloud.images.progress import Progress, ProgressCallback
from homecloud.sizes import format_size


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


class ProgressWriter:
    """Passes writes on to ``out``, telling ``progress`` the bytes so far (phase ``stream``,
    with the rate) at the start and then at most every ``every`` seconds: a stream of
    gigabytes shows it moves without a report for each MiB. A progress callback that raises
    (its client went away) stops the stream there."""

    def __init__(self, out: Sink, stream: str, progress: ProgressCallback,
                 every: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self._out = out
        self._stream = stream
        self._progress = progress
        self._every = every
        self._clock = clock
        self._started = clock()
        self._next = self._started + every
        self.done = 0
        self.report()

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self.done += len(data)
        if self._clock() >= self._next:
            self.report()
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    def report(self) -> None:
        now = self._clock()
        self._next = now + self._every
        seconds = now - self._started
        message = ""
        if self.done:
            message = format_size(self.done)
            if seconds > 0:
                message += f" at {format_size(int(self.done / seconds))}/s"
        self._progress(Progress(self._stream, self.done, None, message))
