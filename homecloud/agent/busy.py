"""Names with an operation under way, so two requests cannot build the same thing at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from homecloud.errors import Conflict


class BusyNames:
    def __init__(self, what: str) -> None:
        self.what = what
        self._lock = threading.Lock()
        self._busy: dict[str, str] = {}

    @contextmanager
    def hold(self, name: str, action: str) -> Iterator[None]:
        with self._lock:
            if name in self._busy:
                raise Conflict(f"{self.what} {name!r} is busy: {self._busy[name]} is under way; "
                               "try again when it has finished")
            self._busy[name] = action
        try:
            yield
        finally:
            with self._lock:
                del self._busy[name]
