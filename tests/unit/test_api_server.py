"""The API transport over a real UNIX socket, with a small router (no agent, no systemd)."""

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from homecloud.agent.operations import stream_operation
from homecloud.agent.routes import Response, Route, Router, StreamResponse
from homecloud.agent.server import ApiServer, ServerPolicy
from homecloud.client.api import ApiClient
from homecloud.errors import Conflict, HostError, NotFound, UserError
from homecloud.systemd.activation import unix_listener


@pytest.fixture
def api(tmp_path):
    cancelled = threading.Event()

    def echo(request):
        return Response({"body": request.body, "params": request.params})

    def conflict(request):
        raise Conflict("image 'x' already exists")

    def crash(request):
        raise RuntimeError("bug")

    def slow(request):
        def work(progress):
            try:
                for i in range(3):
                    progress({"phase": "step", "done": i, "total": 3})
                    time.sleep(0.01)
                if request.body and request.body.get("fail"):
                    raise UserError("it failed")
                if request.body and request.body.get("hang"):
                    for _ in range(500):
                        progress({"phase": "waiting", "done": 0, "total": None})
                        time.sleep(0.01)
                return {"ok": True}
            except BaseException:
                cancelled.set()
                raise

        return StreamResponse(stream_operation(work, "slow"))

    router = Router()
    for route in (Route("POST", "/echo/{name}", echo, "echo", body={"x": "integer?"}),
                  Route("GET", "/conflict", conflict, "conflict"),
                  Route("GET", "/crash", crash, "crash"),
                  Route("POST", "/slow", slow, "slow", streams=True,
                        body={"fail": "boolean?", "hang": "boolean?"})):
        router.add(route)
    # A directory anyone may enter, so a test can connect as another user.
    os.chmod(tmp_path, 0o755)
    for parent in tmp_path.parents:
        if parent == parent.parent or str(parent) == "/tmp":
            break
        os.chmod(parent, parent.stat().st_mode | 0o005)
    path = tmp_path / "hc.sock"
    sock = unix_listener(path)
    server = ApiServer(sock, router, ServerPolicy(allowed_gid=None, group_name="homecloud",
                                                 max_body=1024))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ApiClient(str(path)), path, cancelled
    server.shutdown()
    server.server_close()


def raw(path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_json_round_trip_and_path_params_are_unquoted(api):
    client, _, _ = api
    assert client.call("POST", "/echo/a%20b", {"x": 1}) == {"body": {"x": 1},
                                                            "params": {"name": "a b"}}


def test_an_empty_path_parameter_reaches_the_handler(api):
    """So the handler's own check answers ("image name must not be empty"), not the router."""
    client, _, _ = api
    assert client.call("POST", "/echo/", {})["params"] == {"name": ""}


def test_errors_keep_their_kind_and_message(api):
    client, _, _ = api
    with pytest.raises(Conflict, match="already exists"):
        client.call("GET", "/conflict")
    with pytest.raises(NotFound, match="no such API path"):
        client.call("GET", "/nope")
    with pytest.raises(UserError, match="not allowed"):
        client.call("GET", "/echo/x")


def test_a_handler_bug_is_a_500_and_the_server_keeps_serving(api):
    client, _, _ = api
    with pytest.raises(Exception, match="internal error in hcd: bug"):
        client.call("GET", "/crash")
    assert client.call("POST", "/echo/x", {})["params"] == {"name": "x"}


def test_malformed_json_is_refused(api):
    _, path, _ = api
    reply = raw(path, b"POST /echo/x HTTP/1.1\r\nContent-Length: 5\r\n\r\n{nope")
    assert reply.startswith(b"HTTP/1.1 400")
    assert b"not valid JSON" in reply


def test_oversized_body_is_refused_without_reading_it(api):
    _, path, _ = api
    reply = raw(path, b"POST /echo/x HTTP/1.1\r\nContent-Length: 999999\r\n\r\n" + b"x" * 2000)
    assert reply.startswith(b"HTTP/1.1 413")
    assert b"larger than the 1024 bytes allowed" in reply


def test_chunked_and_bad_lengths_are_refused(api):
    _, path, _ = api
    reply = raw(path, b"POST /echo/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400")
    reply = raw(path, b"POST /echo/x HTTP/1.1\r\nContent-Length: -3\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400")
    reply = raw(path, b"garbage\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400")
    assert b'"error":"bad request:' in reply


def test_stream_yields_progress_then_result(api):
    client, _, _ = api
    stream = client.stream("POST", "/slow", {})
    events = []
    try:
        while True:
            events.append(next(stream))
    except StopIteration as stop:
        result = stop.value
    assert [e["done"] for e in events] == [0, 1, 2]
    assert result == {"ok": True}


def test_stream_error_arrives_as_the_right_error(api):
    client, _, _ = api
    with pytest.raises(UserError, match="it failed"):
        list(client.stream("POST", "/slow", {"fail": True}))


def test_client_leaving_cancels_the_operation(api):
    client, _, cancelled = api
    stream = client.stream("POST", "/slow", {"hang": True})
    next(stream)
    stream.close()
    del stream
    assert cancelled.wait(10), "the operation was not told its client left"


def test_missing_socket_is_a_host_error(tmp_path):
    with pytest.raises(HostError, match="not running"):
        ApiClient(str(tmp_path / "none.sock")).call("GET", "/v1/version")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
def test_peer_credentials_are_checked_not_just_file_modes(api):
    _, path, _ = api
    os.chmod(path, 0o666)
    os.chmod(path.parent, 0o755)
    code = ("import sys; from homecloud.client.api import ApiClient\n"
            f"ApiClient({str(path)!r}).call('POST', '/echo/x', {{}})")
    result = subprocess.run([sys.executable, "-c", code], user=65534, group=65534,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH":
                                                                  os.getcwd()}, cwd="/")
    assert result.returncode != 0
    assert "permission denied: uid 65534 may not use homecloud" in result.stderr


def test_descriptors_passed_with_a_request_reach_the_handler(tmp_path):
    seen = {}

    def write(request):
        seen["count"] = len(request.fds)
        os.write(request.fds[1], b"hello through a passed descriptor\n")
        return Response({"ok": True})

    router = Router()
    router.add(Route("POST", "/write", write, "write", body={"x": "integer?"}))
    path = tmp_path / "fd.sock"
    server = ApiServer(unix_listener(path), router,
                       ServerPolicy(allowed_gid=None, group_name="homecloud", max_body=1024))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        read_end, write_end = os.pipe()
        ApiClient(str(path)).call("POST", "/write", {"x": 1}, fds=(0, write_end, 2))
        os.close(write_end)
        assert os.read(read_end, 100) == b"hello through a passed descriptor\n"
        assert seen["count"] == 3
    finally:
        server.shutdown()
        server.server_close()
