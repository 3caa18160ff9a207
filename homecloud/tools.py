"""The one place homecloud runs external tools (debootstrap, cp, tar, btrfs, nft, journalctl…).

Hot paths use the kernel's and systemd's interfaces instead (DESIGN.md principle 2); what is
left runs here, in one of three shapes:

    run_tool     run to the end, output captured as text (with a timeout)
    follow_tool  each line handed over as it is printed (progress); the tool runs in its own
                 process group, so stopping it stops what it started (wget, dpkg, chroot)
    pipe_tool    a binary stream fed to the tool or taken from it (send/receive, tar)
    read_tool    the tool's output as a stream to read while it runs (zstd -dc)
    tool_lines   the tool's output lines as they come, until the reader stops (journalctl -f)

A missing program is a HostError naming its Debian package.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, BinaryIO

from homecloud.errors import HostError

# Seconds a stopped tool gets to clean up (debootstrap unmounts /proc) before SIGKILL.
TERM_GRACE = 10.0
CHUNK = 1 << 20


@dataclass(frozen=True)
class ToolResult:
    returncode: int
    stdout: str = ""
    stderr: str = ""
    tail: list[str] = field(default_factory=list)  # follow_tool: the last lines printed

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def first_error_line(self, default: str = "no message") -> str:
        return (self.stderr.strip().splitlines() or [default])[0]


class ToolFailed(Exception):
    """A tool read with ``read_tool`` exited non-zero; the message is its last error line."""


def require_tool(program: str, package: str) -> str:
    """The path of ``program``; HostError naming the Debian package if it is missing."""
    path = shutil.which(program)
    if path is None:
        raise HostError(f"{program} is not installed on this host: apt-get install {package}")
    return path


def _missing(argv: Sequence[str], package: str | None) -> HostError:
    what = f": install {package} (apt-get install {package})" if package else ""
    return HostError(f"{argv[0]} is missing{what}")


def run_tool(argv: Sequence[str], *, input: str | None = None, timeout: float | None = None,
             env: dict[str, str] | None = None, package: str | None = None) -> ToolResult:
    """Run ``argv`` to its end; stdout and stderr as text. A tool that does not exist is a
    HostError (naming ``package``); one past ``timeout`` is killed and reported as exit -9."""
    try:
        result = subprocess.run(list(argv), input=input, capture_output=True, text=True,
                                errors="replace", timeout=timeout, env=env,
                                stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        raise _missing(argv, package) from None
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        return ToolResult(-signal.SIGKILL, out, f"timed out after {timeout:g} s")
    return ToolResult(result.returncode, result.stdout, result.stderr)


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


def follow_tool(argv: Sequence[str], on_line: Callable[[str], None], *, keep: int = 20,
                env: dict[str, str] | None = None) -> ToolResult:
    """Run ``argv``, calling ``on_line`` with each line it prints (stdout and stderr merged);
    the last ``keep`` lines are in the result's ``tail``.

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
    return ToolResult(returncode, tail=list(tail))


def pipe_tool(argv: Sequence[str], *, out: BinaryIO | None = None,
              inp: BinaryIO | None = None) -> ToolResult:
    """Run a tool whose standard output is copied to ``out`` and/or whose standard input is
    fed from ``inp`` (any binary file object: a file, a socket's makefile(), an HTTP body)."""
    # stderr goes to a file, not a pipe: a chatty tool must not block while we pump stdout.
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if inp is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if out is not None else subprocess.DEVNULL,
            stderr=err,
        )
        for pipe in (proc.stdout, proc.stdin):
            _widen_pipe(pipe)
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
        return ToolResult(returncode, stderr=err.read().decode(errors="replace"))


def _widen_pipe(pipe: IO[bytes] | None) -> None:
    """Give a pipe to or from a streaming tool room for a whole chunk (the default 64 KiB
    wakes both sides sixteen times as often); best effort, within the system's maximum."""
    if pipe is None:
        return
    import fcntl

    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, CHUNK)


@contextmanager
def read_tool(argv: Sequence[str], stdin: int) -> Iterator[BinaryIO]:
    """The output of a tool reading the file descriptor ``stdin``, as a stream. After the block
    the tool's exit is checked: ToolFailed (its last error line) if it failed."""
    process = subprocess.Popen(list(argv), stdin=stdin, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    try:
        yield process.stdout  # type: ignore[misc]
        process.stdout.read()  # the caller drained it; this only waits for EOF
        error = process.stderr.read().decode(errors="replace").strip()
        if process.wait() != 0:
            raise ToolFailed(error.splitlines()[-1] if error else f"{argv[0]} failed")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def tool_lines(argv: Sequence[str]) -> Iterator[str | int]:
    """Each line the tool prints (stderr dropped), then its exit status; closing the iterator
    early kills the tool."""
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, errors="replace")
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            yield line.rstrip("\n")
    finally:
        proc.kill()
        proc.wait()
    yield proc.returncode
