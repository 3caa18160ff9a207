"""How `hc` shows things: tables, JSON, progress."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence

# `typing` costs `hc` milliseconds at start-up; only the type checker reads it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO


def print_json(data: Any, out: TextIO = sys.stdout) -> None:
    json.dump(data, out, indent=2, sort_keys=True)
    out.write("\n")


def print_table(rows: Sequence[Sequence[str]], headers: Sequence[str],
                out: TextIO = sys.stdout) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for line in (headers, *rows):
        out.write("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        out.write("\n")


def ago(timestamp: float, now: float | None = None) -> str:
    seconds = int((now or time.time()) - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


class ProgressDisplay:
    """A one-line bar on a terminal; otherwise (``--progress`` into a log) one line for each
    phase, the first time it is seen (steps run at the same time interleave their events)."""

    # A plain class: importing dataclasses (it imports inspect) costs `hc` ~10 ms at start-up.
    def __init__(self, title: str, out: TextIO = sys.stderr, tty: bool | None = None) -> None:
        self.title = title
        self.out = out
        self.tty = sys.stderr.isatty() if tty is None else tty
        self._phase = ""
        self._seen: set[str] = set()
        self._width = 0

    def update(self, event: dict[str, Any]) -> None:
        phase = str(event.get("phase", ""))
        done, total = event.get("done") or 0, event.get("total")
        message = str(event.get("message", ""))
        if self.tty:
            if total:
                filled = int(30 * min(done / total, 1))
                bar = f"[{'#' * filled}{'.' * (30 - filled)}] {100 * done // total:3d}% {phase}"
            else:  # no bar to draw: the phase in its place, once
                bar = f"[{phase}]"
            line = f"\r{self.title} {bar} {message}".rstrip()[:120]
            self.out.write(line.ljust(self._width))
            self._width = len(line)
            self.out.flush()
        elif phase not in self._seen:
            self._seen.add(phase)
            self.out.write(f"{self.title}: {phase} {message}".rstrip() + "\n")
            self.out.flush()
        self._phase = phase

    def finish(self) -> None:
        if self.tty and self._width:
            self.out.write("\r" + " " * self._width + "\r")
            self.out.flush()


def follow(stream: Iterator[dict[str, Any]], title: str, show: bool,
           describe: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Any:
    """Drive a streamed operation, drawing its progress if ``show``; return its result.
    ``describe`` turns an operation's own events into progress (phase, done, total,
    message)."""
    display = ProgressDisplay(title)
    update: Callable[[dict[str, Any]], None] = display.update if show else (lambda _e: None)
    try:
        while True:
            event = next(stream)
            update(describe(event) if describe else event)
    except StopIteration as stop:
        return stop.value
    finally:
        display.finish()
