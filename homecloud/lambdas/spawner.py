"""A lambda's own process: hc-NAME.service runs it in the lambda's sandbox, started by
hc-NAME.socket on the first request of a burst.

For every request the front door sends (SCGI on the socket systemd passes: cgi.py), it starts a
fresh process of the lambda's code with ``posix_spawn``, in a session and process group of its
own and in the unit's working directory (the code), with the request in its environment, the
body on its stdin (a memory file: the process
reads it to its end at its own pace) and its stdout on a pipe; it reads the response (at most
MAX_OUTPUT bytes) within the lambda's time, then kills whatever is left of the group. A run past
the time answers 504, a non-zero exit 502, too much output 502. Because the spawner holds the
response until the process is done, a lambda that fails after printing part of its answer still
gets the 502, never half an answer.

A few processes (``--workers``) share the socket, each serving its connections with one epoll
loop: no thread per request. Each blocks while a new process execs (posix_spawn returns once it
has), so the others keep taking and starting requests meanwhile. At most ``--running`` requests
run at once (each process taking its share); more wait up to QUEUE_WAIT, then get 503. After
``--idle`` seconds without a request the processes exit, so nothing of a lambda runs between
bursts (systemd keeps the socket: a request arriving meanwhile waits in its queue and starts it
again). SIGTERM (a deployment, `hc stop`) stops accepting, lets the requests
already taken finish, and exits.

It runs as `python3 -I -S spawner.py`: it imports the standard library and homecloud's
lambdas package only, which import nothing else, so it starts in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import os
import select
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, replace

TYPE_CHECKING = False  # `typing` would cost the start-up milliseconds

if TYPE_CHECKING:
    from collections.abc import Callable

if __package__ in (None, ""):  # run as a file: the package is three levels up
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))

from homecloud.lambdas.cgi import (  # noqa: E402 - after the path above
    Request,
    Response,
    environment,
    parse_output,
    render,
    scgi_head_length,
    scgi_request,
)

MAX_OUTPUT = 16 << 20  # bytes of response a lambda may write; more is cut off with a 502
MAX_HEAD = 64 << 10
HEAD_TIMEOUT = 10.0  # for the request's head and body to arrive
QUEUE_WAIT = 5.0  # a request waits this long for a free slot, then gets 503
# Connections held at once (each one a descriptor, well under the unit's 1024); more wait in
# the socket's queue.
MAX_OPEN = 768
TICK = 0.25  # the loop looks at SIGTERM and the idle time at least this often
SD_LISTEN_FDS_START = 3
# Variables of the spawner's own unit that are not the lambda's.
_SYSTEMD_VARS = {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_PID",
                 "WATCHDOG_USEC", "INVOCATION_ID", "JOURNAL_STREAM", "MANAGERPID",
                 "SYSTEMD_EXEC_PID"}
_REASONS = {400: "Bad Request", 413: "Payload Too Large", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}
# Python ignores these; a lambda gets them as any program does (as subprocess restores them).
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
_IN = select.EPOLLIN
_OUT = select.EPOLLOUT


class Call:
    """One connection: its request's head and body arriving, then waiting for a slot, then its
    process running, then the answer going out."""

    def __init__(self, conn: socket.socket, deadline: float) -> None:
        self.conn = conn
        self.fd = conn.fileno()
        self.deadline = deadline  # of the phase it is in
        self.head = b""
        self.request: Request | None = None
        self.body_fd = -1  # a memory file with the body; the process's stdin
        self.body_left = 0
        self.pid = 0
        self.pidfd = -1
        self.out_fd = -1
        self.output: list[bytes] = []
        self.size = 0
        self.eof = False  # its stdout reached its end
        self.exited = False
        self.answer = b""


class Spawner:
    def __init__(self, options: Options, env: dict[str, str]) -> None:
        self.name = options.name
        self.entry = options.entry
        self.timeout = options.timeout
        self.idle = options.idle
        self.max_body = options.max_body
        self.running_max = options.running
        self.env = env
        self.stopping = False
        self.poll = select.epoll()
        # What to do when a descriptor is ready, and for which call.
        self.handlers: dict[int, tuple[Callable[[Call], None], Call]] = {}
        self.calls: set[Call] = set()
        self.running = 0
        self.waiting: deque[Call] = deque()
        # (deadline, order, call): a call's deadline passes when its entry's is still its own.
        self.deadlines: list[tuple[float, int, Call]] = []
        self.order = itertools.count()
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.last = time.monotonic()

    # -- the loop ----------------------------------------------------------------------------
    def serve(self, listener: socket.socket) -> None:
        listener.setblocking(False)
        self.listener = listener
        accepting = False
        while True:
            want = not self.stopping and len(self.calls) < MAX_OPEN
            if want != accepting:
                if want:
                    # One of the spawners sharing the socket wakes per connection.
                    self.poll.register(listener.fileno(), _IN | select.EPOLLEXCLUSIVE)
                else:
                    self.poll.unregister(listener.fileno())
                accepting = want
            now = time.monotonic()
            if not self.calls and (self.stopping or now - self.last >= self.idle):
                return
            wait = min(TICK, self.idle - (now - self.last)) if not self.calls else TICK
            if self.deadlines:
                wait = min(wait, self.deadlines[0][0] - now)
            for fd, _ in self.poll.poll(max(wait, 0.0)):
                if fd == listener.fileno():
                    self._accept()
                    continue
                handler = self.handlers.get(fd)
                if handler is not None:
                    handler[0](handler[1])
            self._expire(time.monotonic())

    def _watch(self, fd: int, events: int, handler: Callable[[Call], None], call: Call) -> None:
        self.poll.register(fd, events)
        self.handlers[fd] = (handler, call)

    def _unwatch(self, fd: int) -> None:
        if self.handlers.pop(fd, None) is not None:
            self.poll.unregister(fd)

    def _due(self, call: Call, deadline: float) -> None:
        call.deadline = deadline
        heapq.heappush(self.deadlines, (deadline, next(self.order), call))

    def _expire(self, now: float) -> None:
        while self.deadlines and self.deadlines[0][0] <= now:
            deadline, _, call = heapq.heappop(self.deadlines)
            if call in self.calls and call.deadline == deadline:
                self._late(call)

    def _late(self, call: Call) -> None:
        if call.pid:
            self._stop(call, "timeout")
        elif call in self.waiting:
            self.waiting.remove(call)
            self._reply(call, _plain(503, f"lambda {self.name} is busy: too many requests at "
                                          "once; retry\n", [("Retry-After", "1")]))
        else:
            self._close(call)  # the head, the body or the answer took too long

    # -- a request arriving ------------------------------------------------------------------
    def _accept(self) -> None:
        while len(self.calls) < MAX_OPEN:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors: the rest wait in the queue
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return
                raise
            conn.setblocking(False)
            call = Call(conn, 0.0)
            self.calls.add(call)
            self._due(call, time.monotonic() + HEAD_TIMEOUT)
            self._receive(call)  # the whole request usually came with the connection

    def _receive(self, call: Call) -> None:
        """Whatever of the head and body has arrived."""
        while True:
            try:
                chunk = call.conn.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                if call.fd not in self.handlers:
                    self._watch(call.fd, _IN, self._receive, call)
                return
            except OSError:
                chunk = b""
            if not chunk:  # the door left (or sent less than it announced)
                self._close(call)
                return
            if call.request is None:
                chunk = self._head(call, chunk)
                if call not in self.calls or call.request is None:
                    return
            if chunk:
                os.write(call.body_fd, chunk[:call.body_left])
                call.body_left -= min(len(chunk), call.body_left)
            if call.body_left == 0:
                self._unwatch(call.fd)
                self._ready(call)
                return

    def _head(self, call: Call, chunk: bytes) -> bytes:
        """Take the head from ``chunk``; what of the body came with it."""
        call.head += chunk
        try:
            size = scgi_head_length(call.head)
            if size is None or len(call.head) < size:
                if len(call.head) > MAX_HEAD:
                    raise ValueError("head too long")
                return b""
            request = scgi_request(call.head[:size])
        except ValueError:
            self._unwatch(call.fd)
            self._reply(call, _plain(400, "not an SCGI request\n"))
            return b""
        rest, call.head = call.head[size:], b""
        if request.body_length > self.max_body:
            self._unwatch(call.fd)
            self._reply(call, _plain(413, f"request body over {self.max_body} bytes\n"))
            return b""
        call.request = request
        call.body_left = request.body_length
        if request.body_length:
            call.body_fd = os.memfd_create("body", os.MFD_CLOEXEC)
        return rest

    def _ready(self, call: Call) -> None:
        if self.running < self.running_max:
            self._start(call)
        else:
            self.waiting.append(call)
            self._due(call, time.monotonic() + QUEUE_WAIT)

    # -- its process -------------------------------------------------------------------------
    def _start(self, call: Call) -> None:
        """A fresh process for the call's request; its stdout on a pipe to this loop."""
        assert call.request is not None
        stdin = self.devnull
        if call.body_fd >= 0:
            os.lseek(call.body_fd, 0, os.SEEK_SET)
            stdin = call.body_fd
        out_r, out_w = os.pipe()
        error = None
        try:
            call.pid = os.posix_spawn(
                self.entry, [self.entry], {**self.env, **environment(call.request)},
                file_actions=[(os.POSIX_SPAWN_DUP2, stdin, 0),
                              (os.POSIX_SPAWN_DUP2, out_w, 1)],
                setsid=True, setsigdef=_DEFAULT_SIGNALS)
        except OSError as exc:  # the file, or its #! interpreter, would not run
            error = exc.strerror
        os.close(out_w)
        if call.body_fd >= 0:
            os.close(call.body_fd)
            call.body_fd = -1
        if error is not None:
            os.close(out_r)
            self._reply(call, _plain(502, f"lambda {self.name} could not start: {error}; "
                                          f"see `hc lambda logs {self.name}`\n"))
            return
        self.running += 1
        call.out_fd = out_r
        os.set_blocking(out_r, False)
        call.pidfd = os.pidfd_open(call.pid)
        self._due(call, time.monotonic() + self.timeout)
        self._watch(out_r, _IN, self._read, call)
        self._watch(call.pidfd, _IN, self._exited, call)

    def _read(self, call: Call) -> None:
        while True:
            try:
                chunk = os.read(call.out_fd, 1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            if not chunk:
                call.eof = True
                self._unwatch(call.out_fd)
                if call.exited:
                    self._done(call)
                return
            call.size += len(chunk)
            if call.size > MAX_OUTPUT:
                self._stop(call, "output")
                return
            call.output.append(chunk)

    def _exited(self, call: Call) -> None:
        """Its process has exited; it is reaped once the group is killed (a process not yet
        reaped keeps its group's id from being taken by another)."""
        # The event may be stale: the descriptor's number closed and reused in one batch.
        if os.waitid(os.P_PID, call.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            return
        call.exited = True
        self._unwatch(call.pidfd)
        if call.eof:
            self._done(call)

    def _stop(self, call: Call, why: str) -> None:
        """Kill the call's process group and answer why."""
        self._finish(call, self._answer(_kill_and_reap(call.pid), b"", why))

    def _done(self, call: Call) -> None:
        """Its output ended and its process exited: what it left running goes."""
        status = _kill_and_reap(call.pid)
        self._finish(call, self._answer(status, b"".join(call.output), None))

    def _finish(self, call: Call, response: Response) -> None:
        for fd in (call.out_fd, call.pidfd):
            self._unwatch(fd)
            os.close(fd)
        call.out_fd = call.pidfd = -1
        call.pid = 0
        call.output = []
        self.running -= 1
        self._reply(call, response)
        while self.waiting and self.running < self.running_max:
            self._start(self.waiting.popleft())

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

    # -- the answer going out ----------------------------------------------------------------
    def _reply(self, call: Call, response: Response) -> None:
        call.answer = render(response)
        self._due(call, time.monotonic() + HEAD_TIMEOUT)
        self._send(call)
        if call in self.calls and call.answer:
            self._watch(call.fd, _OUT, self._send, call)

    def _send(self, call: Call) -> None:
        try:
            sent = call.conn.send(call.answer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            sent = len(call.answer)  # the door left: nothing more to say
        call.answer = call.answer[sent:]
        if not call.answer:
            self._close(call)

    def _close(self, call: Call) -> None:
        self._unwatch(call.fd)
        if call.body_fd >= 0:
            os.close(call.body_fd)
            call.body_fd = -1
        call.conn.close()
        self.calls.discard(call)
        self.last = time.monotonic()


def _kill_and_reap(pid: int) -> int:
    """Kill process ``pid``'s group (a request's processes) and reap it; its exit code."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _plain(status: int, text: str, extra: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, _REASONS.get(status, ""),
                    [("Content-Type", "text/plain; charset=utf-8"), *(extra or [])],
                    text.encode())


def _listener(path: str | None) -> socket.socket:
    if path is None:
        if os.environ.get("LISTEN_PID") != str(os.getpid()):
            raise SystemExit("no socket from systemd: give --socket PATH")
        sock = socket.socket(fileno=SD_LISTEN_FDS_START)
        sock.set_inheritable(False)  # no lambda's process may take connections
        return sock
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
    # Spawner processes sharing the socket. On 2 loaded cores, 1 made 255 req/s, 2 700, 4
    # 900-1000, 8 1080; each counts toward the unit's memory (units.SPAWNER_MEMORY).
    workers: int = 4


def parse_args(argv: list[str]) -> Options:
    """``--name=N --entry=F --timeout=S --max-body=B [--idle=S] [--running=N] [--socket=P]
    [--workers=N]`` (argparse alone would double the start-up time)."""
    given: dict[str, str] = {}
    for arg in argv:
        key, equals, value = arg.partition("=")
        if not key.startswith("--") or not equals:
            raise SystemExit(f"spawner.py: {arg!r}: expected --NAME=VALUE")
        given[key[2:].replace("-", "_")] = value
    types = {"timeout": float, "idle": float, "max_body": int, "running": int, "workers": int}
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


def serve(options: Options, listener: socket.socket, env: dict[str, str]) -> None:
    """One spawner on ``listener`` until it is idle or told to stop."""
    spawner = Spawner(options, env)
    signal.signal(signal.SIGTERM, lambda *_: setattr(spawner, "stopping", True))
    spawner.serve(listener)


def main(argv: list[str] | None = None) -> int:
    """``--workers`` spawner processes, each taking its share of the requests that may run at
    once; this one waits for them, passes SIGTERM on, and exits when all have."""
    options = parse_args(sys.argv[1:] if argv is None else argv)
    env = {k: v for k, v in os.environ.items() if k not in _SYSTEMD_VARS}
    listener = _listener(options.socket)
    workers = max(1, min(options.workers, options.running))
    if workers == 1:
        serve(options, listener, env)
        return 0
    share = replace(options, running=max(1, options.running // workers))
    children = {_fork(share, listener, env) for _ in range(workers)}

    def stop(*_: object) -> None:
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    failed = False
    while children:
        pid, status = os.wait()
        children.discard(pid)
        failed = failed or status != 0
    return 1 if failed else 0


def _fork(options: Options, listener: socket.socket, env: dict[str, str]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        serve(options, listener, env)
        code = 0
    except BaseException:
        sys.excepthook(*sys.exc_info())
    finally:
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
