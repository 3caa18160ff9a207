"""The step graph: ordering, concurrency, undo on failure at every position."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from homecloud.instances.steps import Step, StepEvent, StepGraph, StepGraphError, check_graph


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[str] = []

    def add(self, entry: str) -> None:
        with self.lock:
            self.log.append(entry)

    def step(self, sid: str, after: tuple[str, ...] = (), fail: bool = False,
             undo_fails: bool = False, delay: float = 0.0) -> Step[None]:
        def do(_: None) -> None:
            time.sleep(delay)
            if fail:
                raise RuntimeError(f"{sid} broke")
            self.add(f"do {sid}")

        def undo(_: None) -> None:
            self.add(f"undo {sid}")
            if undo_fails:
                raise RuntimeError(f"undo {sid} broke")

        return Step(sid, do, undo, after)


def chain(rec: Recorder, n: int, fail_at: int | None = None) -> StepGraph[None]:
    steps = [rec.step(f"s{i}", (f"s{i - 1}",) if i else (), fail=i == fail_at) for i in range(n)]
    return StepGraph(steps)


def test_dependencies_run_in_order() -> None:
    rec = Recorder()
    result = chain(rec, 4).run(None)
    assert rec.log == ["do s0", "do s1", "do s2", "do s3"]
    assert result.completed == ["s0", "s1", "s2", "s3"]


@pytest.mark.parametrize("fail_at", range(4))
def test_failure_at_each_position_undoes_completed_steps_in_reverse(fail_at: int) -> None:
    rec = Recorder()
    with pytest.raises(RuntimeError, match=f"s{fail_at} broke"):
        chain(rec, 4, fail_at).run(None)
    done = [f"s{i}" for i in range(fail_at)]
    assert rec.log == [f"do {s}" for s in done] + [f"undo {s}" for s in reversed(done)]


def test_independent_steps_run_concurrently() -> None:
    barrier = threading.Barrier(3, timeout=5)
    steps = [Step(f"p{i}", lambda _: barrier.wait()) for i in range(3)]
    StepGraph(steps).run(None)  # would time out (BrokenBarrierError) if run one by one


def test_failure_waits_for_running_steps_and_undoes_them_too() -> None:
    rec = Recorder()
    graph = StepGraph([rec.step("slow", delay=0.2), rec.step("bad", fail=True),
                       rec.step("later", ("slow",))])
    with pytest.raises(RuntimeError, match="bad broke"):
        graph.run(None)
    assert rec.log == ["do slow", "undo slow"]  # 'later' never started


def test_undo_errors_are_logged_and_do_not_mask_the_cause(caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    rec = Recorder()
    graph = StepGraph([rec.step("a"), rec.step("b", ("a",), undo_fails=True),
                       rec.step("c", ("b",), fail=True)])
    with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError, match="c broke"):
        graph.run(None)
    assert rec.log == ["do a", "do b", "undo b", "undo a"]
    assert "undoing step b failed" in caplog.text


def test_progress_events_and_a_raising_progress_cancels() -> None:
    rec = Recorder()
    events: list[StepEvent] = []
    chain(rec, 2).run(None, progress=events.append)
    assert [(e.step, e.phase) for e in events] == [("s0", "start"), ("s0", "done"),
                                                   ("s1", "start"), ("s1", "done")]

    class Gone(Exception):
        pass

    def cancel(event: StepEvent) -> None:
        if event.step == "s1" and event.phase == "start":
            raise Gone("client left")

    rec = Recorder()
    with pytest.raises(Gone):
        chain(rec, 3).run(None, progress=cancel)
    assert rec.log == ["do s0", "undo s0"]


def test_steps_without_undo_are_skipped() -> None:
    rec = Recorder()
    graph = StepGraph([Step("plain", lambda _: rec.add("do plain")), rec.step("bad", ("plain",),
                                                                             fail=True)])
    with pytest.raises(RuntimeError):
        graph.run(None)
    assert rec.log == ["do plain"]


@pytest.mark.parametrize(("pairs", "message"), [
    ([("a", ()), ("a", ())], "defined twice"),
    ([("a", ("nope",))], "unknown step 'nope'"),
    ([("a", ("b",)), ("b", ("a",))], "cycle: a -> b -> a"),
    ([("a", ("a",))], "cycle: a -> a"),
])
def test_bad_graphs(pairs: list[tuple[str, tuple[str, ...]]], message: str) -> None:
    with pytest.raises(StepGraphError, match=message):
        check_graph(pairs)


def test_check_graph_orders_dependencies_first() -> None:
    order = check_graph([("c", ("a", "b")), ("b", ("a",)), ("a", ())])
    assert order.index("a") < order.index("b") < order.index("c")


def test_crash_hook_kills_the_process_after_the_named_step_only() -> None:
    """The fault injection the crash-consistency system tests use (HC_TEST_CRASH_AFTER_STEP)."""
    import os
    import signal

    from homecloud.instances.faults import crash_after_step

    seen: list[StepEvent] = []
    assert crash_after_step(seen.append, None) == seen.append  # off: progress unchanged
    report = crash_after_step(seen.append, "dataset")
    assert report is not None
    report(StepEvent("record", "done"))
    report(StepEvent("dataset", "start"))
    assert [(e.step, e.phase) for e in seen] == [("record", "done"), ("dataset", "start")]
    pid = os.fork()
    if pid == 0:  # the child plays the agent
        report(StepEvent("dataset", "done"))
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_a_step_that_runs_alone_runs_in_the_callers_thread() -> None:
    threads: dict[str, threading.Thread] = {}

    def note(sid: str) -> Step[None]:
        return Step(sid, lambda _: threads.__setitem__(sid, threading.current_thread()),
                    after=("first",) if sid != "first" else ())

    StepGraph([note("first"), note("a"), note("b")]).run(None)
    assert threads["first"] is threading.current_thread()
    # Two ready at once: both on the pool, at the same time.
    assert threading.current_thread() not in (threads["a"], threads["b"])


def test_a_step_interrupted_alone_is_undone_with_the_rest() -> None:
    rec = Recorder()

    def interrupted(_: None) -> None:
        rec.add("do half")
        raise KeyboardInterrupt

    graph = StepGraph([rec.step("a"), Step("half", interrupted, lambda _: rec.add("undo half"),
                                          ("a",)), rec.step("c", ("half",))])
    with pytest.raises(KeyboardInterrupt):
        graph.run(None)
    assert rec.log == ["do a", "do half", "undo half", "undo a"]
