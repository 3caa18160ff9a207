"""A lambda's own process: hc-NAME.service runs it in the lambda's sandbox, started by
hc-NAME.socket on the first request of a burst.

For every request nginx sends (HTTP/1.0 on the socket systemd passes), it forks and execs a
fresh process of the lambda's code, in a process group of its own, with the request in its
environment (cgi.py) and the body on its stdin; it reads the response from its stdout (at most
MAX_OUTPUT bytes) within the lambda's time, then kills whatever is left of the group. A run past
the time answers 504, a non-zero exit 502, too much output 502. After ``--idle`` seconds without
a request it exits, so nothing of a lambda runs between bursts (systemd keeps the socket: a
request arriving meanwhile waits in its queue and starts it again). SIGTERM (a deployment, `hc
stop`) stops accepting, lets the running requests finish, and exits.

It runs as `python3 -I -S spawner.py`: it imports the standard library and homecloud's
lambdas package only, which import nothing else, so it starts in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

TYPE_CHECKING = False  # `typing` would cost the start-up milliseconds

if TYPE_CHECKING:
    from typing import IO

if __package__ in (None, ""):  # run as a file: the package is three levels up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))

from homecloud.lambdas import CODE_MOUNT  # noqa: E402 - after the path above
from homecloud.lambdas.cgi import Request, Response, environment, parse_output  # noqa: E402

MAX_OUTPUT = 16 << 20  # bytes of response a lambda may write; more is cut off with a 502
MAX_HEAD = 64 << 10
HEAD_TIMEOUT = 10.0
QUEUE_WAIT = 5.0  # a request waits this long for a free slot, then gets 503
SD_LISTEN_FDS_START = 3
# Variables of the spawner's own unit that are not the lambda's.
_SYSTEMD_VARS = {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_PID",
                 "WATCHDOG_USEC", "INVOCATION_ID", "JOURNAL_STREAM", "MANAGERPID"}
_REASONS = {200: "OK", 400: "Bad Request", 411: "Length Required", 413: "Payload Too Large",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


class Spawner:
    def __init__(self, options: Options, env: dict[str, str]) -> None:
        self.name = options.name
        self.entry = options.entry
        self.timeout = options.timeout
        self.idle = options.idle
        self.max_body = options.max_body
        self.env = env
        self.slots = threading.BoundedSemaphore(options.running)
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._active = 0
        self._last = time.monotonic()

    # -- the accept loop ---------------------------------------------------------------------
    def serve(self, listener: socket.socket) -> None:
        listener.setblocking(False)
        while not self.stopping.is_set():
            ready, _, _ = select.select([listener], [], [], min(self.idle, 0.25))
            if ready:
                self._accept(listener)
            elif self._idle():
                return
        self._drain()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            with self._lock:
                self._active += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _idle(self) -> bool:
        with self._lock:
            return self._active == 0 and time.monotonic() - self._last >= self.idle

    def _drain(self) -> None:
        """Let the requests already running finish (systemd kills what outlives its stop
        timeout, which is the lambda's time and a little)."""
        while True:
            with self._lock:
                if self._active == 0:
                    return
            time.sleep(0.01)

    # -- one connection ----------------------------------------------------------------------
    def _handle(self, conn: socket.socket) -> None:
        try:
            with conn:
                conn.settimeout(HEAD_TIMEOUT)
                response = self._respond(conn)
                if response is not None:
                    conn.sendall(_http(response))
        except (OSError, ValueError):
            pass  # the client left or sent nonsense: nothing to answer
        finally:
            with self._lock:
                self._active -= 1
                self._last = time.monotonic()

    def _respond(self, conn: socket.socket) -> Response | None:
        head, body = _read_head(conn)
        if head is None:
            return None
        request_line, headers = head
        method, _, target = request_line.partition(" ")
        target = target.rpartition(" ")[0] or target
        length_text = next((v for k, v in headers if k.lower() == "content-length"), "0")
        if not length_text.isdigit():
            return _plain(400, "send the body with a Content-Length\n")
        length = int(length_text)
        if length > self.max_body:
            return _plain(413, f"request body over {self.max_body} bytes\n")
        while len(body) < length:
            chunk = conn.recv(min(1 << 16, length - len(body)))
            if not chunk:
                return None
            body += chunk
        if not self.slots.acquire(timeout=QUEUE_WAIT):
            return _plain(503, f"lambda {self.name} is busy: too many requests at once; "
                               "retry\n", [("Retry-After", "1")])
        try:
            path, _, query = target.partition("?")
            found = {k.lower(): v for k, v in headers}
            request = Request(method, path, query, headers, length,
                              found.get("x-hc-route", "/") or "/",
                              found.get("x-remote-user") or None, found.get("x-real-ip", ""))
            return self.run(request, body[:length])
        finally:
            self.slots.release()

    def run(self, request: Request, body: bytes) -> Response:
        """A fresh process for ``request``; whatever it started is gone when this returns."""
        try:
            proc = subprocess.Popen([self.entry], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    env={**self.env, **environment(request)}, cwd=CODE_MOUNT,
                                    start_new_session=True)
        except OSError as exc:
            return _plain(502, f"lambda {self.name} could not start: {exc.strerror}; "
                               f"see `hc lambda logs {self.name}`\n")
        assert proc.stdin is not None and proc.stdout is not None
        deadline = time.monotonic() + self.timeout
        writer = threading.Thread(target=_feed, args=(proc.stdin, body), daemon=True)
        writer.start()
        try:
            output, why = _collect(proc.stdout.fileno(), deadline)
            if why is None:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    why = "timeout"
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # the request's whole process group
            proc.wait()
            proc.stdout.close()
        return self._answer(proc.returncode, output, why)

    def _answer(self, status: int, output: bytes, why: str | None) -> Response:
        logs = f"see `hc lambda logs {self.name}`"
        if why == "output":
            return _plain(502, f"lambda {self.name} wrote more than {MAX_OUTPUT >> 20} MiB; it "
                               f"was stopped; {logs}\n")
        if why == "timeout":
            return _plain(504, f"lambda {self.name} ran past its timeout ({self.timeout:g}s) "
                               f"and was stopped; {logs}\n")
        if status > 0:
            return _plain(502, f"lambda {self.name} exited with status {status}; {logs}\n")
        if status < 0:
            return _plain(502, f"lambda {self.name} was killed by signal {-status} (its memory "
                               f"limit?); {logs}\n")
        return parse_output(output)


def _read_head(conn: socket.socket) -> tuple[tuple[str, list[tuple[str, str]]] | None, bytes]:
    """(request line, headers) and what of the body came with them; None at a bad head."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(1 << 16)
        if not chunk or len(data) > MAX_HEAD:
            return None, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers.append((name.strip(), value.strip()))
    return (lines[0], headers), rest


def _plain(status: int, text: str, extra: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, _REASONS.get(status, ""),
                    [("Content-Type", "text/plain; charset=utf-8"), *(extra or [])],
                    text.encode())


def _http(response: Response) -> bytes:
    reason = response.reason or _REASONS.get(response.status, "")
    lines = [f"HTTP/1.0 {response.status} {reason}".rstrip()]
    lines += [f"{name}: {value}" for name, value in response.headers]
    lines += [f"Content-Length: {len(response.body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + response.body


def _feed(stdin: IO[bytes], body: bytes) -> None:
    """The body to the lambda's stdin; a lambda that reads none of it is fine."""
    with contextlib.suppress(OSError), stdin:
        if body:
            stdin.write(body)


def _collect(fd: int, deadline: float) -> tuple[bytes, str | None]:
    """Read ``fd`` to its end; (output, None), or what was read and why it stopped early
    ('timeout', 'output')."""
    chunks: list[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks), "timeout"
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks), None
        size += len(chunk)
        if size > MAX_OUTPUT:
            return b"", "output"
        chunks.append(chunk)


def _listener(path: str | None) -> socket.socket:
    if path is None:
        if os.environ.get("LISTEN_PID") != str(os.getpid()):
            raise SystemExit("no socket from systemd: give --socket PATH")
        return socket.socket(fileno=SD_LISTEN_FDS_START)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(1024)
    return sock


@dataclass(frozen=True)
class Options:
    name: str
    entry: str  # the file each request runs
    timeout: float  # seconds per request
    max_body: int
    idle: float = 2.0  # exit after this long without a request
    running: int = 32  # requests at once; more wait, then 503
    socket: str | None = None  # listen here instead of on systemd's socket


def parse_args(argv: list[str]) -> Options:
    """``--name=N --entry=F --timeout=S --max-body=B [--idle=S] [--running=N] [--socket=P]``
    (argparse alone would double the start-up time)."""
    given: dict[str, str] = {}
    for arg in argv:
        key, equals, value = arg.partition("=")
        if not key.startswith("--") or not equals:
            raise SystemExit(f"spawner.py: {arg!r}: expected --NAME=VALUE")
        given[key[2:].replace("-", "_")] = value
    types = {"timeout": float, "idle": float, "max_body": int, "running": int}
    values: dict[str, object] = {}
    for key, value in given.items():
        try:
            values[key] = types.get(key, str)(value)
        except ValueError:
            raise SystemExit(f"spawner.py: --{key}={value}: not a number") from None
    try:
        return Options(**values)  # type: ignore[arg-type]
    except TypeError as exc:
        raise SystemExit(f"spawner.py: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    options = parse_args(sys.argv[1:] if argv is None else argv)
    threading.stack_size(256 << 10)  # threads' stacks count toward the lambda's LimitDATA=
    env = {k: v for k, v in os.environ.items() if k not in _SYSTEMD_VARS}
    spawner = Spawner(options, env)
    signal.signal(signal.SIGTERM, lambda *_: spawner.stopping.set())
    spawner.serve(_listener(options.socket))
    return 0


if __name__ == "__main__":
    sys.exit(main())
