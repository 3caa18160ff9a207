"""The spawner on a socket of its own, with a real lambda (a shell script) and real SCGI
requests as the front door sends them: every answer of the contract, and SIGTERM and the idle
time ending it. (In the lambda's sandbox, with systemd and nginx: tests/system/test_lambdas.py.)"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from homecloud.lambdas import spawner
from homecloud.lambdas.cgi import scgi_head

SCRIPT = """#!/bin/sh
case "$PATH_INFO" in
/env) echo "$REQUEST_METHOD|$SCRIPT_NAME|$PATH_INFO|$QUERY_STRING|$REMOTE_USER|$CONTENT_LENGTH|\
$HTTP_X_THING|$HTTP_AUTHORIZATION|$HC_ROUTE"; cat;;
/head) printf 'Status: 201 Created\\nX-A: 1\\n\\nmade';;
/fail) echo partial; exit 3;;
/slow) sleep 1000 & echo $! > slow.pid; sleep 1000;;
/flood) exec yes flood;;
/nap) touch "napping.$$"; sleep 0.5; echo rested;;
/signals) grep SigIgn /proc/self/status;;
esac
"""


def scgi(path: str, body: bytes = b"", **extra: str) -> bytes:
    return scgi_head([("CONTENT_LENGTH", str(len(body))),
                      ("REQUEST_METHOD", "POST" if body else "GET"), ("REQUEST_URI", path),
                      ("HC_ROUTE", "/fn"), *extra.items()]) + body


def ask(path: Path, data: bytes) -> tuple[int, str, str]:
    """(status, head, body) of the answer to ``data``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(str(path))
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(1 << 16):
            reply += chunk
    head, _, body = reply.decode().partition("\r\n\r\n")
    return int(head.split()[1]), head, body


class Running:
    def __init__(self, tmp: Path, *options: str, script: str = SCRIPT) -> None:
        self.socket = tmp / "fn.sock"
        entry = tmp / "fn.sh"
        entry.write_text(script)
        entry.chmod(0o755)
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", spawner.__file__, "--name=fn", f"--entry={entry}",
             "--timeout=1", "--max-body=1000", f"--socket={self.socket}", *options],
            cwd=tmp, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            assert time.monotonic() < deadline and self.proc.poll() is None
            time.sleep(0.01)

    def get(self, path: str, body: bytes = b"", **extra: str) -> tuple[int, str, str]:
        return ask(self.socket, scgi(path, body, **extra))


@pytest.fixture(scope="module")
def lambda_(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = Running(tmp_path_factory.mktemp("spawner"), "--idle=60", "--workers=2")
    yield running
    running.proc.kill()
    running.proc.wait()


def test_request_in_the_environment_and_body_on_stdin(lambda_: Running) -> None:
    status, head, body = lambda_.get("/fn/env?q=1", b"the body", REMOTE_USER="alice",
                                     HTTP_X_THING="x", HTTP_AUTHORIZATION="Basic c2VjcmV0")
    assert status == 200 and "Content-Type: text/plain; charset=utf-8" in head
    # The lambda read its stdin to its end; credentials and the door's variables stay out.
    assert body == "POST|/fn|/env|q=1|alice|8|x||\nthe body"


def test_cgi_headers(lambda_: Running) -> None:
    status, head, body = lambda_.get("/fn/head")
    assert (status, body) == (201, "made") and "X-A: 1" in head
    assert head.startswith("Status: 201 Created\r\n")


def test_signals_as_any_program_gets_them(lambda_: Running) -> None:
    ignored = int(lambda_.get("/fn/signals")[2].split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1))


def test_non_zero_exit_is_502_even_after_output(lambda_: Running) -> None:
    status, _, body = lambda_.get("/fn/fail")
    assert status == 502 and "partial" not in body
    assert body == "lambda fn exited with status 3; see `hc lambda logs fn`\n"


def test_timeout_is_504_and_its_processes_go(lambda_: Running) -> None:
    pid_file = lambda_.socket.with_name("slow.pid")
    started = time.monotonic()
    status, _, body = lambda_.get("/fn/slow")
    assert status == 504 and "ran past its timeout (1s)" in body
    assert time.monotonic() - started < 5
    background = Path(f"/proc/{pid_file.read_text().strip()}/stat")
    deadline = time.monotonic() + 5  # killed already: gone once the kernel has run it
    while background.exists() and background.read_text().split(")")[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the lambda's background process still runs"
        time.sleep(0.01)


def test_output_over_the_limit_is_cut(lambda_: Running) -> None:
    status, _, body = lambda_.get("/fn/flood")
    assert status == 502 and "wrote more than 16 MiB" in body


@pytest.mark.parametrize("data, status, message", [
    (b"GET / HTTP/1.0\r\n\r\n", 400, "not an SCGI request\n"),
    (scgi("/fn/env", b"x" * 1001), 413, "request body over 1000 bytes\n"),
])
def test_bad_requests(lambda_: Running, data: bytes, status: int, message: str) -> None:
    assert ask(lambda_.socket, data)[0::2] == (status, message)
    assert lambda_.get("/fn/head")[0] == 201  # and it goes on serving


def test_more_requests_than_slots_wait(tmp_path: Path) -> None:
    running = Running(tmp_path, "--idle=60", "--workers=1", "--running=1")
    try:
        started = time.monotonic()
        socks = []
        for _ in range(3):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(running.socket))
            sock.sendall(scgi("/fn/nap"))
            socks.append(sock)
        for sock in socks:
            with sock:
                sock.settimeout(20)
                assert sock.makefile("rb").read().endswith(b"rested\n")
        assert time.monotonic() - started >= 1.5  # one at a time
    finally:
        running.proc.kill()
        running.proc.wait()


def test_sigterm_lets_running_requests_finish(tmp_path: Path) -> None:
    running = Running(tmp_path, "--idle=60", "--workers=2")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(running.socket))
        sock.sendall(scgi("/fn/nap"))
        deadline = time.monotonic() + 10
        while not list(tmp_path.glob("napping.*")):  # taken: its process runs
            assert time.monotonic() < deadline
            time.sleep(0.01)
        running.proc.send_signal(signal.SIGTERM)
        sock.settimeout(20)
        assert sock.makefile("rb").read().endswith(b"rested\n")
    assert running.proc.wait(10) == 0


def test_exits_when_idle(tmp_path: Path) -> None:
    running = Running(tmp_path, "--idle=0.3", "--workers=2")
    assert running.get("/fn/head")[0] == 201
    assert running.proc.wait(10) == 0  # on its own


def test_a_lambda_that_cannot_start_is_502(tmp_path: Path) -> None:
    running = Running(tmp_path, "--idle=60", "--workers=1",
                      script="#!/nonexistent/interpreter\n")
    try:
        status, _, body = running.get("/fn/x", b"a body")
        assert status == 502
        assert body == ("lambda fn could not start: No such file or directory; "
                        "see `hc lambda logs fn`\n")
        assert running.get("/fn/x")[0] == 502  # and it goes on answering
        assert len(os.listdir(f"/proc/{running.proc.pid}/fd")) < 10  # nothing left open
    finally:
        running.proc.kill()
        running.proc.wait()
