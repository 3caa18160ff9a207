"""Progress of a long operation (an image build, a snapshot send), streamed by the agent to the
CLI's progress bar."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` units of the whole operation (``total`` None: not known yet).

    ``phase`` names the current step ("download", "extract", ...); ``message`` says what is being
    worked on right now.
    """

    phase: str
    done: int
    total: int | None
    message: str = ""


ProgressCallback = Callable[[Progress], None]


def ignore_progress(_: Progress) -> None:
    """A callback for callers that do not show progress."""
