"""When `hc` shows progress: on a terminal, or when asked; each phase once into a log."""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from homecloud.cli.output import ProgressDisplay, follow
from homecloud.cli.parsers import progress_options, show_progress


def parse(*words: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    progress_options(parser)
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(list(words))


@pytest.mark.parametrize(("words", "tty", "shown"), [
    ((), True, True),
    ((), False, False),
    (("-q",), True, False),
    (("--json",), True, False),
    (("--progress",), False, True),
    (("--progress", "--json"), False, True),
])
def test_show_progress(monkeypatch: pytest.MonkeyPatch, words: tuple[str, ...], tty: bool,
                       shown: bool) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    assert show_progress(parse(*words)) is shown


def test_a_log_gets_each_phase_once_even_interleaved() -> None:
    out = io.StringIO()
    display = ProgressDisplay("starting w", out=out, tty=False)
    for phase, message in (("record", ""), ("fork", ""), ("record", "done"), ("fork", "done"),
                           ("spawn", "")):
        display.update({"phase": phase, "message": message})
    display.finish()
    assert out.getvalue() == "starting w: record\nstarting w: fork\nstarting w: spawn\n"


def test_a_terminal_gets_one_line_redrawn_and_cleared() -> None:
    out = io.StringIO()
    display = ProgressDisplay("building b", out=out, tty=True)
    display.update({"phase": "fetch", "done": 1, "total": 2})
    display.finish()
    text = out.getvalue()
    assert text.startswith("\rbuilding b [###############...............]  50% fetch")
    assert "\n" not in text and text.endswith("\r")


def test_without_a_total_the_phase_stands_in_for_the_bar_once() -> None:
    out = io.StringIO()
    display = ProgressDisplay("sending web to beta", out=out, tty=True)
    display.update({"phase": "instances/web@s1 (full)", "done": 5 << 20, "total": None,
                    "message": "5.0M at 2.5M/s"})
    assert out.getvalue() == "\rsending web to beta [instances/web@s1 (full)] 5.0M at 2.5M/s"


def test_follow_returns_the_result_and_draws_nothing_unless_shown(
        capsys: pytest.CaptureFixture[str]) -> None:
    def stream() -> Iterator[dict[str, Any]]:
        yield {"phase": "one"}
        return {"name": "w"}

    assert follow(stream(), "starting w", show=False) == {"name": "w"}
    assert capsys.readouterr().err == ""
