"""What the API server refuses from a hostile or broken client, on a real UNIX socket with short
limits: deep JSON, unknown fields, slow and idle clients, too many connections."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from homecloud.agent.deadlines import ReadLimits
from homecloud.agent.operations import stream_operation
from homecloud.agent.routes import Request, Response, Route, Router, StreamResponse
from homecloud.agent.server import ApiServer, ServerPolicy
from homecloud.client.api import ApiClient
from homecloud.systemd.activation import unix_listener

LIMITS = ReadLimits(idle=0.5, head=0.5, body=0.5)


def _router(calls: list[Any]) -> Router:
    def echo(request: Request) -> Response:
        calls.append(request.body)
        return Response({"body": request.body})

    def tick(request: Request) -> StreamResponse:
        def work(progress: Any) -> dict[str, bool]:
            for i in range(6):  # longer than every reading limit
                progress({"done": i})
                time.sleep(0.25)
            return {"ok": True}

        return StreamResponse(stream_operation(work, "tick"))

    router = Router()
    for route in (Route("POST", "/echo", echo, "echo", body={"name": "string", "n": "integer?"}),
                  Route("GET", "/echo", echo, "echo"),
                  Route("POST", "/tick", tick, "tick", streams=True)):
        router.add(route)
    return router


class Served:
    def __init__(self, path: Path, calls: list[Any]) -> None:
        self.path = path
        self.calls = calls

    def connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        sock.connect(str(self.path))
        return sock

    def exchange(self, data: bytes) -> bytes:
        with self.connect() as sock:
            sock.sendall(data)
            return read_all(sock)

    def healthy(self) -> bool:
        return ApiClient(str(self.path)).call("GET", "/echo") == {"body": None}


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def body_of(reply: bytes) -> Any:
    return json.loads(reply.partition(b"\r\n\r\n")[2])


def serve(tmp_path: Path, **policy: Any) -> Iterator[Served]:
    calls: list[Any] = []
    path = tmp_path / "hc.sock"
    server = ApiServer(unix_listener(path), _router(calls),
                       ServerPolicy(allowed_gid=None, group_name="homecloud", max_body=1 << 20,
                                    reading=LIMITS, **policy))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Served(path, calls)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Served]:
    yield from serve(tmp_path)


def post(body: bytes, extra: str = "") -> bytes:
    return (f"POST /echo HTTP/1.1\r\nContent-Length: {len(body)}\r\n{extra}"
            "Connection: close\r\n\r\n").encode() + body


def test_deeply_nested_json_is_a_bad_request(api: Served) -> None:
    for body in (b"[" * 100_000, b'{"name": ' + b"[" * 40 + b"]" * 40 + b"}"):
        reply = api.exchange(post(body))
        assert reply.startswith(b"HTTP/1.1 400 ")
        assert body_of(reply) == {"error": "request body nests arrays or objects more than 32 "
                                           "levels deep", "kind": "invalid", "exit_code": 1}
    assert api.calls == [] and api.healthy()


def test_unknown_and_mistyped_fields_are_refused_by_name(api: Served) -> None:
    cases = {
        b'{"name": "a", "colour": "red"}':
            "unknown field 'colour' in the request body (allowed: n, name)",
        b'{"n": 1}': "field 'name' is required (string)",
        b'{"name": "a", "n": 1.5}': "field 'n' must be integer, not number",
        b'{"name": "a", "n": true}': "field 'n' must be integer, not boolean",
        b'["name"]': "request body must be a JSON object",
    }
    for body, message in cases.items():
        reply = api.exchange(post(body))
        assert reply.startswith(b"HTTP/1.1 400 "), reply
        assert body_of(reply)["error"] == message
    reply = api.exchange(b'GET /echo HTTP/1.1\r\nContent-Length: 8\r\n\r\n{"a": 1}')
    assert body_of(reply)["error"] == "GET /echo takes no request body"
    assert api.calls == []
    assert api.exchange(post(b'{"name": "a", "n": null}')).startswith(b"HTTP/1.1 200 ")
    assert api.calls == [{"name": "a", "n": None}]


def test_method_not_allowed_names_the_allowed_methods(api: Served) -> None:
    reply = api.exchange(b"DELETE /echo HTTP/1.1\r\n\r\n")
    head = reply.partition(b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.1 405 ")
    assert "\r\nAllow: GET, POST\r\n" in head
    assert body_of(reply)["error"] == "DELETE is not allowed on /echo (allowed: GET, POST)"


def test_100_continue_only_for_a_body_the_server_will_take(api: Served) -> None:
    expect = "Expect: 100-continue\r\n"
    with api.connect() as sock:
        sock.sendall(f"POST /echo HTTP/1.1\r\nContent-Length: {2 << 20}\r\n{expect}\r\n"
                     .encode())
        reply = read_all(sock)
    assert reply.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in reply
    with api.connect() as sock:
        body = b'{"name": "a"}'
        sock.sendall(f"POST /echo HTTP/1.1\r\nContent-Length: {len(body)}\r\n{expect}"
                     "Connection: close\r\n\r\n".encode())
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert read_all(sock).startswith(b"HTTP/1.1 200 ")


def test_idle_and_slow_clients_are_cut_off(api: Served) -> None:
    threads_before = threading.active_count()
    idle = [api.connect() for _ in range(20)]
    bare = api.connect()
    bare.sendall(b"GET /echo HTTP/1.1\r\n")  # and never the end of the head
    trickle = api.connect()
    body = b'{"name": "slow"}'
    trickle.sendall(f"POST /echo HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n".encode())
    started = time.monotonic()
    try:
        for byte in body:  # a byte at a time gains nothing: the deadline is for the whole body
            trickle.send(bytes([byte]))
            time.sleep(0.1)
    except BrokenPipeError:
        pass  # cut off after 0.5 s
    assert time.monotonic() - started < 1.0
    assert api.healthy()  # others are served meanwhile
    for sock in idle:
        assert read_all(sock) == b""  # closed without a word: it had asked nothing
    assert body_of(read_all(bare)) == {"error": "the request head did not arrive within 0.5 s",
                                       "kind": "invalid", "exit_code": 1}
    reply = read_all(trickle)
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert body_of(reply)["error"] == "the request body did not arrive within 0.5 s"
    for sock in (*idle, bare, trickle):
        sock.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads_before
    assert api.calls == [None]  # healthy()'s request alone reached a handler


def test_a_kept_alive_connection_is_closed_when_idle(api: Served) -> None:
    with api.connect() as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\n\r\n")
        first = b""
        while not first.endswith(b'{"body":null}\n'):
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        time.sleep(0.8)
        assert read_all(sock) == b""


def test_a_stream_outlasts_the_reading_limits(api: Served) -> None:
    events = list(ApiClient(str(api.path)).stream("POST", "/tick", {}))
    assert [e["done"] for e in events] == [0, 1, 2, 3, 4, 5]


def test_connections_over_the_bound_wait_then_get_503(tmp_path: Path) -> None:
    for served in serve(tmp_path, max_connections=2, connection_wait=0.2):
        held = [served.connect() for _ in range(2)]
        for sock in held:
            sock.sendall(b"GET")  # begun: each holds its thread until the head deadline
        time.sleep(0.1)
        with served.connect() as sock:
            reply = read_all(sock)
        assert reply.startswith(b"HTTP/1.1 503 ")
        assert b"\r\nRetry-After: 1\r\n" in reply
        assert body_of(reply) == {"error": "hcd is serving its maximum of 2 connections; try "
                                           "again", "kind": "error", "exit_code": 1}
        # Once the slow ones are cut off, the slots are free again.
        for sock in held:
            assert read_all(sock).startswith(b"HTTP/1.1 408 ")
            sock.close()
        assert served.healthy()
