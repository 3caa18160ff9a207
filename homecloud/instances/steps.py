"""A graph of small steps, run concurrently, undone on failure (DESIGN.md principle 3).

Each step has an id, the ids it must run after, ``do(ctx)`` and ``undo(ctx)``. Steps whose
dependencies are done run at once on a thread pool. If any step fails, no new step starts; the
steps already running are waited for; then every step that completed is undone, most recently
completed first, and the original error is re-raised. Undo errors are logged and never mask it.

Contract for step authors: a step whose ``do`` raises must leave nothing behind itself (it is
not undone: its failure may mean "that already exists", and undoing would remove what is not
ours). ``undo`` must be idempotent: reconcile may call it again for work a crash left half-made.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)
C = TypeVar("C")


class StepGraphError(ValueError):
    """The graph itself is wrong: a duplicate id, an unknown dependency, a cycle."""


@dataclass(frozen=True)
class Step(Generic[C]):
    id: str
    do: Callable[[C], Any]
    undo: Callable[[C], Any] | None = None
    after: tuple[str, ...] = ()


@dataclass
class StepEvent:
    """Progress of one step: ``phase`` is start, done, undo or undo-failed."""

    step: str
    phase: str
    seconds: float = 0.0


@dataclass
class RunResult:
    completed: list[str] = field(default_factory=list)  # in completion order
    seconds: dict[str, float] = field(default_factory=dict)


def check_graph(steps: Iterable[tuple[str, Sequence[str]]], where: str = "step graph") -> list[str]:
    """Validate (id, after) pairs; return the ids in a dependency order."""
    deps: dict[str, tuple[str, ...]] = {}
    for step_id, after in steps:
        if step_id in deps:
            raise StepGraphError(f"{where}: step {step_id!r} is defined twice")
        deps[step_id] = tuple(after)
    for step_id, after in deps.items():
        for dep in after:
            if dep not in deps:
                raise StepGraphError(f"{where}: step {step_id!r} runs after unknown step {dep!r}")
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            cycle = path[path.index(node):] + [node]
            raise StepGraphError(f"{where}: steps form a cycle: {' -> '.join(cycle)}")
        state[node] = 1
        for dep in deps[node]:
            visit(dep, path + [node])
        state[node] = 2
        order.append(node)

    for node in deps:
        visit(node, [])
    return order


class StepGraph(Generic[C]):
    def __init__(self, steps: Sequence[Step[C]], name: str = "step graph") -> None:
        check_graph(((s.id, s.after) for s in steps), name)
        self.name = name
        self.steps = {s.id: s for s in steps}

    def run(self, ctx: C, *, progress: Callable[[StepEvent], None] | None = None,
            max_workers: int = 8) -> RunResult:
        result = RunResult()
        done: set[str] = set()
        running: dict[Future[Any], tuple[str, float]] = {}
        errors: list[tuple[str, BaseException]] = []
        report = progress or (lambda event: None)

        def ready() -> list[Step[C]]:
            started = {sid for sid, _ in running.values()}
            return [s for s in self.steps.values()
                    if s.id not in done and s.id not in started and set(s.after) <= done]

        def finished(step_id: str, began: float, exc: BaseException | None) -> None:
            if exc is not None:
                errors.append((step_id, exc))
                return
            done.add(step_id)
            result.completed.append(step_id)
            result.seconds[step_id] = time.monotonic() - began
            if not errors:
                report(StepEvent(step_id, "done", result.seconds[step_id]))

        with ThreadPoolExecutor(max_workers=max_workers,
                                thread_name_prefix=f"steps-{self.name}") as pool:
            try:
                while True:
                    if not errors:
                        startable = ready()
                        if len(startable) == 1 and not running:
                            # Alone, a step runs in this thread: a hand-over to a pool thread
                            # and back costs two thread wake-ups and buys nothing.
                            step = startable[0]
                            report(StepEvent(step.id, "start"))
                            began = time.monotonic()
                            try:
                                step.do(ctx)
                            except Exception as exc:
                                finished(step.id, began, exc)
                            except BaseException:
                                # Interrupted part-way (Ctrl-C, exit): undone with the rest,
                                # as undo is idempotent.
                                done.add(step.id)
                                result.completed.append(step.id)
                                raise
                            else:
                                finished(step.id, began, None)
                            continue
                        for step in startable:
                            report(StepEvent(step.id, "start"))
                            running[pool.submit(step.do, ctx)] = (step.id, time.monotonic())
                    if not running:
                        break
                    done_now, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for future in done_now:
                        step_id, began = running.pop(future)
                        finished(step_id, began, future.exception())
            except BaseException as exc:  # a progress callback raised (client gone, Ctrl-C)
                errors.append(("progress", exc))
                for future, (step_id, _) in list(running.items()):
                    if future.exception() is None:
                        done.add(step_id)
                        result.completed.append(step_id)
            if errors:
                self._undo(ctx, result.completed, report)
                first_step, first = errors[0]
                for step_id, other in errors[1:]:
                    log.warning("%s: step %s also failed: %s", self.name, step_id, other)
                raise first
        if len(done) != len(self.steps):  # unreachable after check_graph; kept as a guard
            raise StepGraphError(f"{self.name}: steps left unrun: "
                                 f"{', '.join(sorted(set(self.steps) - done))}")
        return result

    def _undo(self, ctx: C, completed: Sequence[str],
              report: Callable[[StepEvent], None]) -> None:
        for step_id in reversed(completed):
            step = self.steps[step_id]
            if step.undo is None:
                continue
            try:
                step.undo(ctx)
            except BaseException as exc:  # logged: the original error is what the user sees
                log.error("%s: undoing step %s failed: %s", self.name, step_id, exc)
                _safe(report, StepEvent(step_id, "undo-failed"))
            else:
                _safe(report, StepEvent(step_id, "undo"))


def _safe(report: Callable[[StepEvent], None], event: StepEvent) -> None:
    """Progress during undo is informational; a gone client must not stop the clean-up."""
    with contextlib.suppress(BaseException):
        report(event)
