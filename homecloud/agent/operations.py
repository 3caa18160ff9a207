"""Long operations streamed to the client as they run.

The work runs in its own thread and reports progress through a callback; the HTTP handler
yields those reports as they come. If the client goes away (Ctrl-C on `hc image build`), the
next progress report raises OperationCancelled inside the work, whose own clean-up then removes
what it had made: nothing is left half-made.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, is_dataclass
from typing import Any

ProgressReport = Callable[[Any], None]


class OperationCancelled(Exception):
    """Raised inside an operation whose client has gone away."""


_DONE = object()


def _to_json(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def stream_operation(work: Callable[[ProgressReport], Any], name: str) -> Iterator[dict[str, Any]]:
    """Run ``work(progress)`` in a thread; yield {"progress": …} events, then {"result": …}.

    Errors the user should see are re-raised in the caller's thread (the server turns them into a
    final {"error": …} line).
    """
    events: queue.Queue[Any] = queue.Queue()
    cancelled = threading.Event()
    outcome: dict[str, Any] = {}

    def progress(report: Any) -> None:
        if cancelled.is_set():
            raise OperationCancelled(f"{name}: cancelled by the client")
        events.put({"progress": _to_json(report)})

    def run() -> None:
        try:
            outcome["result"] = work(progress)
        except BaseException as exc:  # handed to the streaming thread below
            outcome["error"] = exc
        finally:
            events.put(_DONE)

    thread = threading.Thread(target=run, name=f"op-{name}", daemon=True)
    thread.start()
    try:
        while (event := events.get()) is not _DONE:
            yield event
    finally:
        # Reached early only when the client left: tell the work to stop and wait for its undo.
        cancelled.set()
        thread.join()
    if "error" in outcome:
        raise outcome["error"]
    yield {"result": _to_json(outcome.get("result"))}
