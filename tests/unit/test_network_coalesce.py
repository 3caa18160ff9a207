"""Coalesced rebuilds: every caller is served by a run that started after it asked."""

from __future__ import annotations

import threading
import time

import pytest

from homecloud.network.coalesce import Coalesced


def test_callers_during_a_run_share_the_next_one() -> None:
    state = {"version": 0}
    seen_by_run: list[int] = []
    entered = threading.Event()
    release = threading.Event()

    def rebuild() -> None:
        seen_by_run.append(state["version"])
        entered.set()
        if len(seen_by_run) == 1:
            release.wait(5)

    run = Coalesced(rebuild)
    first = threading.Thread(target=run)
    first.start()
    entered.wait(5)
    # Changes made while the first run is going: each caller must see a run that saw them.
    state["version"] = 1
    waiters = [threading.Thread(target=run) for _ in range(10)]
    for thread in waiters:
        thread.start()
    time.sleep(0.1)
    release.set()
    for thread in [first, *waiters]:
        thread.join(5)
    assert run.runs == 2
    assert seen_by_run == [0, 1]


def test_an_error_reaches_the_callers_of_that_run() -> None:
    calls = {"n": 0}

    def rebuild() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("nft refused")

    run = Coalesced(rebuild)
    with pytest.raises(RuntimeError, match="nft refused"):
        run()
    run()  # the next run works again
    assert run.runs == 2
