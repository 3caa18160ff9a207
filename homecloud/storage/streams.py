"""Running the tools that write or read send streams (btrfs send/receive, tar), copying between
their pipes and any binary file object: a file, a socket's makefile(), an HTTP body."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

CHUNK = 1 << 20


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _run(argv: Sequence[str], *, out: BinaryIO | None = None,
         inp: BinaryIO | None = None) -> ToolResult:
    # stderr goes to a file, not a pipe: a chatty tool must not block while we pump stdout.
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if inp is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if out is not None else subprocess.DEVNULL,
            stderr=err,
        )
        try:
            if out is not None and proc.stdout is not None:
                shutil.copyfileobj(proc.stdout, out, CHUNK)
                out.flush()
            if inp is not None and proc.stdin is not None:
                # A tool that gives up early closes the pipe; its exit status and stderr say why.
                with contextlib.suppress(BrokenPipeError):
                    shutil.copyfileobj(inp, proc.stdin, CHUNK)
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        returncode = proc.wait()
        err.seek(0)
        return ToolResult(returncode, err.read().decode(errors="replace"))


def write_stream(argv: Sequence[str], out: BinaryIO) -> ToolResult:
    """Run a tool whose standard output is the stream, copying it to ``out``."""
    return _run(argv, out=out)


def read_stream(argv: Sequence[str], inp: BinaryIO) -> ToolResult:
    """Run a tool that reads the stream on standard input, feeding it from ``inp``."""
    return _run(argv, inp=inp)


def run_tool(argv: Sequence[str]) -> ToolResult:
    return _run(argv)
