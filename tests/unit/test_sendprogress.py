"""A send's progress: reported at the start, then at most every interval, with the rate."""

from __future__ import annotations

import io

import pytest

from homecloud.images.progress import Progress
from homecloud.snapshots.sendprogress import ProgressWriter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_reports_at_the_start_then_once_per_interval_with_the_rate() -> None:
    out, clock, reports = io.BytesIO(), Clock(), []
    writer = ProgressWriter(out, "volumes/db/data@s2 (from s1)", reports.append, every=0.5,
                            clock=clock)
    for _ in range(4):  # 4 MiB within the first interval: no report for them
        writer.write(b"x" * (1 << 20))
        clock.now += 0.1
    clock.now = 101.0
    writer.write(b"x" * (1 << 20))
    assert out.getvalue() == b"x" * (5 << 20)
    assert reports == [
        Progress("volumes/db/data@s2 (from s1)", 0, None, ""),
        Progress("volumes/db/data@s2 (from s1)", 5 << 20, None, "5.0M at 5.0M/s"),
    ]
    writer.report()  # the end of the stream: reported whatever the interval
    assert len(reports) == 3 and reports[-1].done == 5 << 20


def test_a_progress_that_raises_stops_the_stream() -> None:
    clock = Clock()

    def gone(report: Progress) -> None:
        if report.done:
            raise ConnectionAbortedError("the client went away")

    writer = ProgressWriter(io.BytesIO(), "instances/web@s1 (full)", gone, clock=clock)
    clock.now += 1
    with pytest.raises(ConnectionAbortedError):
        writer.write(b"data")
