"""Running the external tools images are made with (debootstrap, cp), line by line.

The tool runs in its own process group so that stopping it (a failure in the line handler, or a
cancelled operation) also stops whatever it started (wget, dpkg, chroot).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from homecloud.errors import HostError
from homecloud.storage.failures import NO_SPACE_TEXT

# Seconds a stopped tool gets to clean up (debootstrap unmounts /proc) before SIGKILL.
TERM_GRACE = 10.0


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    tail: list[str]  # the last lines it printed (stdout and stderr merged)


def require_tool(program: str, package: str) -> str:
    """The path of ``program``; HostError naming the Debian package if it is missing."""
    path = shutil.which(program)
    if path is None:
        raise HostError(f"{program} is not installed on this host: apt-get install {package}")
    return path


def _stop(process: subprocess.Popen[str]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=TERM_GRACE)
            return
        except subprocess.TimeoutExpired:
            continue


def run_tool(argv: Sequence[str], on_line: Callable[[str], None], *, keep: int = 20,
             env: dict[str, str] | None = None) -> ToolResult:
    """Run ``argv``, calling ``on_line`` with each line it prints; return its exit status.

    If ``on_line`` raises, the tool and its children are stopped before the exception goes on.
    """
    tail: deque[str] = deque(maxlen=keep)
    process = subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace", start_new_session=True, env=env)
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            on_line(line)
        returncode = process.wait()
    except BaseException:
        _stop(process)
        raise
    finally:
        if process.stdout is not None:
            process.stdout.close()
    return ToolResult(returncode, list(tail))


def mentions_full_disk(lines: Sequence[str]) -> bool:
    return any(NO_SPACE_TEXT in line for line in lines)
