"""Which instances have a console open in a browser: an open console keeps a sleeping
(``--idle``) instance awake, as an open connection does.

The proxy (one process) keeps a file per instance with a console open under ``OPEN_DIR``,
holding its own PID; hc-wake's idle check reads the names. A file whose PID is gone (a proxy
that was killed) says nothing, so a crash never keeps an instance awake for ever.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from homecloud.consoles import RUN_DIR

OPEN_DIR = f"{RUN_DIR}/open"


class OpenConsoles:
    """The proxy's side: counts consoles per instance and keeps the files in step."""

    def __init__(self, directory: str = OPEN_DIR) -> None:
        self.directory = Path(directory)
        self.counts: dict[str, int] = {}
        self._pid = str(os.getpid())

    def opened(self, instance: str) -> None:
        self.counts[instance] = self.counts.get(instance, 0) + 1
        if self.counts[instance] == 1:
            self.directory.mkdir(mode=0o755, parents=True, exist_ok=True)
            staged = self.directory / f".{instance}.new"
            staged.write_text(self._pid)
            staged.replace(self.directory / instance)

    def closed(self, instance: str) -> None:
        left = self.counts.get(instance, 0) - 1
        if left > 0:
            self.counts[instance] = left
            return
        self.counts.pop(instance, None)
        (self.directory / instance).unlink(missing_ok=True)


def instances_with_open_consoles(directory: str = OPEN_DIR) -> set[str]:
    """The instances that have a console open now (hc-wake's side)."""
    names = set()
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            if entry.name.startswith("."):
                continue
            try:
                pid = Path(entry.path).read_text().strip()
            except OSError:
                continue
            if pid.isdigit() and os.path.exists(f"/proc/{pid}"):
                names.add(entry.name)
    return names
