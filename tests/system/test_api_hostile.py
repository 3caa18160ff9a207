"""Hostile and broken clients against the real agent on its real socket, in a dev host: each
gets a clear answer (or is cut off), nothing is made, and the same agent goes on serving."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from unixhttp import agent_socket, connect, exchange, read_reply

from homecloud.devhost import DevHost

pytestmark = pytest.mark.system
IMPORT = "POST /v1/images/import HTTP/1.1\r\nHost: hcd\r\n"
READ_LIMIT = 10  # seconds: hcd's idle, head and body limits (deadlines.ReadLimits)


def post(head: str, body: bytes, extra: str = "") -> bytes:
    return (f"{head}Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
            .encode() + body)


def agent_pid(host: DevHost) -> int:
    return int(host.run("systemctl", "show", "-p", "MainPID", "--value", "hcd.service").stdout)


def agent_threads(host: DevHost) -> int:
    status = host.run("cat", f"/proc/{agent_pid(host)}/status").stdout
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("Threads:")))


def served(path: str) -> bool:
    reply = exchange(path, b"GET /v1/version HTTP/1.1\r\nConnection: close\r\n\r\n")
    return reply.status == 200 and "version" in reply.json()


@contextmanager
def unharmed(host: DevHost) -> Iterator[str]:
    """The agent's socket path; afterwards: same agent, no new image, still serving."""
    path = agent_socket(host)
    assert served(path)
    pid, images = agent_pid(host), host.hc("image", "ls", json=True)
    yield path
    assert agent_pid(host) == pid, "the agent restarted"
    assert host.hc("image", "ls", json=True) == images
    assert served(path)


def test_deeply_nested_json_is_a_bad_request(devhost: DevHost) -> None:
    with unharmed(devhost) as path:
        reply = exchange(path, post(IMPORT, b"[" * 100_000))
        assert (reply.status, reply.json()) == (400, {
            "error": "request body nests arrays or objects more than 32 levels deep",
            "kind": "invalid", "exit_code": 1})
        assert "Traceback" not in devhost.run("journalctl", "-u", "hcd.service", "-n", "20",
                                              "--no-pager").stdout


def test_unknown_body_fields_are_refused_by_name(devhost: DevHost) -> None:
    with unharmed(devhost) as path:
        reply = exchange(path, post(IMPORT, b'{"name": "hostile", "path": "/tmp", "force": 1}'))
        assert (reply.status, reply.json()["error"]) == (
            400, "unknown field 'force' in the request body (allowed: name, path)")
        start = "POST /v1/instances/nothing/start HTTP/1.1\r\n"
        reply = exchange(path, post(start, b'{"timeout": 3}'))
        assert (reply.status, reply.json()["error"]) == (
            400, "POST /v1/instances/{name}/start takes no request body")


def test_405_names_the_allowed_methods(devhost: DevHost) -> None:
    with unharmed(devhost) as path:
        reply = exchange(path, b"PUT /v1/images/x HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert reply.status == 405
        assert reply.header("Allow") == "DELETE, GET"
        assert reply.json()["error"] == "PUT is not allowed on /v1/images/x (allowed: DELETE, GET)"


def test_100_continue_comes_after_the_length_check(devhost: DevHost) -> None:
    expect = "Expect: 100-continue\r\n"
    with unharmed(devhost) as path:
        with connect(path) as sock:
            sock.sendall(f"{IMPORT}Content-Length: {2 << 20}\r\n{expect}\r\n".encode())
            reply = read_reply(sock)
        assert reply.status == 413 and "100 Continue" not in reply.head
        body = b'{"name": "x y", "path": "/nonexistent"}'
        with connect(path) as sock:
            sock.sendall(f"{IMPORT}Content-Length: {len(body)}\r\n{expect}"
                         "Connection: close\r\n\r\n".encode())
            assert sock.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(body)
            reply = read_reply(sock)
        assert (reply.status, reply.json()["error"]) == (
            400, "image name 'x y' is invalid: use letters, digits, '.', '_' and '-', "
                 "starting with a letter or digit")


def test_idle_and_slow_clients_are_cut_off_and_release_their_threads(devhost: DevHost) -> None:
    with unharmed(devhost) as path:
        threads = agent_threads(devhost)
        idle = [connect(path, timeout=3 * READ_LIMIT) for _ in range(100)]
        bare = connect(path, timeout=3 * READ_LIMIT)
        bare.sendall(b"GET /v1/version HTTP/1.1\r\n")  # a request line, and no end of head
        slow = connect(path, timeout=3 * READ_LIMIT)
        slow.sendall(f"{IMPORT}Content-Length: 100\r\n\r\n{{".encode())  # 1 byte of 100
        started = time.monotonic()
        assert served(path)  # others are served meanwhile
        assert agent_threads(devhost) >= threads + 100
        for sock in idle:
            assert read_reply(sock).head == ""  # closed, without a word: it had asked nothing
        bare_reply, slow_reply = read_reply(bare), read_reply(slow)
        waited = time.monotonic() - started
        assert (bare_reply.status, bare_reply.json()["error"]) == (
            408, f"the request head did not arrive within {READ_LIMIT} s")
        assert (slow_reply.status, slow_reply.json()["error"]) == (
            408, f"the request body did not arrive within {READ_LIMIT} s")
        assert READ_LIMIT - 1 < waited < 2 * READ_LIMIT
        for sock in (*idle, bare, slow):
            sock.close()
        deadline = time.monotonic() + 10
        while agent_threads(devhost) > threads and time.monotonic() < deadline:
            time.sleep(0.2)
        assert agent_threads(devhost) <= threads


def test_a_client_cannot_hold_a_connection_by_trickling(devhost: DevHost) -> None:
    with unharmed(devhost) as path, connect(path, timeout=3 * READ_LIMIT) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /v1/version HTTP/1.1\r\n")
        try:
            for _ in range(4 * READ_LIMIT):  # a header line every half second, for ever
                time.sleep(0.5)
                sock.sendall(b"X-Slow: 1\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_reply(sock)
        assert reply.status == 408
        assert time.monotonic() - started < READ_LIMIT + 3
        sock.shutdown(socket.SHUT_RDWR)
