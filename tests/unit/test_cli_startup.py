"""What `hc` loads and builds to run a command, and that its client leaves no connection open.

Every module `hc` imports and every parser it builds is paid by each command a user types (the
figures are in bench/RESULTS.md; nothing here is timed). A fresh interpreter runs the command
against a UNIX socket that answers as the agent does, and reports which modules it loaded.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from homecloud.cli.main import COMMAND_MODULES, MODULES, main
from homecloud.client.api import ApiClient
from homecloud.errors import HomecloudError, NotFound

REPO = Path(__file__).resolve().parents[2]
SNAPSHOT = {"instance": "web", "name": "20261201T143000Z", "consistency": "frozen"}
# Loaded by none of the commands below: each one costs start-up time (socket: its enums and
# selectors; typing, dataclasses, urllib, http.client, shutil: far more).
NEVER_AT_START = ("socket", "selectors", "ssl", "typing", "dataclasses", "inspect", "shutil",
                  "urllib.parse", "http.client", "email", "pathlib", "datetime", "importlib",
                  "collections.abc", "homecloud.client.tls")


def http_reply(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: "
            f"{len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def chunked_reply(lines: list[dict[str, object]]) -> bytes:
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(data), data)
                      for data in (json.dumps(line).encode() + b"\n" for line in lines))
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")


class Agent:
    """A UNIX socket that answers each connection with the next of ``replies`` and closes it,
    keeping the requests it read (their first line and body)."""

    def __init__(self, path: Path, replies: list[bytes]) -> None:
        self.path = path
        self.requests: list[tuple[str, bytes]] = []
        self._replies = replies
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(4)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        for reply in self._replies:
            conn, _ = self._listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                length = next((int(line.split(":")[1]) for line in lines
                               if line.lower().startswith("content-length:")), 0)
                while len(body) < length and (chunk := conn.recv(65536)):
                    body += chunk
                self.requests.append((lines[0], body))
                conn.sendall(reply)

    def wait(self) -> None:
        """Until every reply has been sent and its connection closed on this side; then stop
        listening."""
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the client never made every request"
        self._listener.close()


def run_hc(words: list[str], agent_socket: Path) -> tuple[int, str, str, set[str]]:
    """``hc WORDS`` in a fresh interpreter: exit status, stdout, stderr, the modules loaded."""
    code = ("import sys\nfrom homecloud.cli.main import main\n"
            "try:\n    status = main(sys.argv[1:])\nexcept SystemExit as exc:\n"
            "    status = exc.code\n"
            "sys.stdout.flush()\nloaded = sorted(sys.modules)\n"
            "import json\nsys.stderr.write('\\nMODULES ' + json.dumps(loaded))\n"
            "sys.exit(status)\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("HC_")}
    env.update(HC_SOCKET=str(agent_socket), PYTHONPATH=str(REPO), COLUMNS="100")
    result = subprocess.run([sys.executable, "-c", code, *words], capture_output=True, text=True,
                            env=env, cwd=REPO, timeout=60)
    stderr, _, modules = result.stderr.rpartition("\nMODULES ")
    return result.returncode, result.stdout, stderr, set(json.loads(modules))


def test_snapshot_create_loads_only_its_own_command_and_the_client(tmp_path: Path) -> None:
    agent = Agent(tmp_path / "hc.sock", [http_reply("201 Created",
                                                    json.dumps(SNAPSHOT).encode())])
    status, out, err, loaded = run_hc(["snapshot", "create", "web"], agent.path)
    agent.wait()
    assert (status, out, err) == (0, "web@20261201T143000Z (consistent by: frozen)\n", "")
    assert agent.requests == [("POST /v1/instances/web/snapshots HTTP/1.1", b"{}")]
    assert {"homecloud.cli.snapshots", "homecloud.client.api", "json"} <= loaded
    assert loaded.isdisjoint(NEVER_AT_START)
    others = {f"homecloud.cli.{name}" for name in MODULES} - {"homecloud.cli.snapshots"}
    assert loaded.isdisjoint(others | {"homecloud.cli.output"})


@pytest.mark.parametrize(("words", "status", "out", "err"), [
    (["--version"], 0, "hc 0.1.0\n", ""),
    ([], 2, "", "hc: error: the following arguments are required: COMMAND\n"),
    (["--host", "https://door.example"], 2, "",
     "hc: error: the following arguments are required: COMMAND\n"),
    (["--host"], 2, "", "hc: error: argument --host: expected one argument\n"),
])
def test_no_command_word_loads_no_command_and_no_client(tmp_path: Path, words: list[str],
                                                        status: int, out: str,
                                                        err: str) -> None:
    """What argparse answers without a command word (the version, a usage error) names no
    command, so none is imported or built; the usage line shows COMMAND as before."""
    got_status, got_out, got_err, loaded = run_hc(words, tmp_path / "none.sock")
    assert (got_status, got_out) == (status, out)
    assert got_err.endswith(err)
    if status:
        assert got_err.startswith("usage: hc [-h] [--version] [--host URL] [--token TOKEN]")
        assert "COMMAND ...\n" in got_err
    assert loaded.isdisjoint({f"homecloud.cli.{name}" for name in MODULES})
    assert loaded.isdisjoint({"homecloud.client.api", *NEVER_AT_START})


@pytest.mark.parametrize("words", [["--he"], ["--hel", "snapshot"], ["-h", "snapshot"]])
def test_help_for_hc_however_spelled_lists_every_command(
        capsys: pytest.CaptureFixture[str], words: list[str]) -> None:
    """argparse takes --he and --hel for --help: the listing then has every command too (not
    only the one named after it)."""
    with pytest.raises(SystemExit) as exit_info:
        main(words)
    assert exit_info.value.code == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()
              if line.startswith("    ") and line.split()}
    assert set(COMMAND_MODULES) <= listed


def open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def error_json(message: str) -> bytes:
    return json.dumps({"error": message, "kind": "not-found", "exit_code": 1}).encode()


@pytest.mark.parametrize(("reply", "error", "message"), [
    (http_reply("200 OK", b'{"ok": true}'), None, ""),
    (http_reply("404 Not Found", error_json("no instance 'web'")), NotFound,
     "no instance 'web'"),
    (http_reply("200 OK", b"<html>", "text/html"), HomecloudError,
     "the agent sent a reply that is not JSON (HTTP 200)"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{", HomecloudError,
     "lost the connection to the agent: the agent closed the connection mid-reply"),
    (b"HTTP/1.1 200 OK\r\n", HomecloudError,
     "lost the connection to the agent: the agent closed the connection mid-reply; see "
     "`journalctl -u hcd`"),
])
def test_a_call_closes_its_connection_whatever_the_reply(
        tmp_path: Path, reply: bytes, error: type[Exception] | None, message: str) -> None:
    before = open_descriptors()
    agent = Agent(tmp_path / "hc.sock", [reply])
    client = ApiClient(str(agent.path), timeout=10)
    if error is None:
        assert client.call("GET", "/v1/version") == {"ok": True}
    else:
        with pytest.raises(error) as raised:
            client.call("GET", "/v1/version")
        assert str(raised.value) == message
    agent.wait()
    assert open_descriptors() == before


def test_a_stream_closes_its_connection_when_done_failed_or_left(tmp_path: Path) -> None:
    progress = {"progress": {"phase": "freeze"}}
    before = open_descriptors()
    agent = Agent(tmp_path / "hc.sock", [
        chunked_reply([progress, {"result": {"name": "s1"}}]),
        chunked_reply([progress, {"error": "no instance 'web'", "kind": "not-found"}]),
        chunked_reply([progress, progress, {"result": {}}]),
    ])
    client = ApiClient(str(agent.path), timeout=10)

    done = client.stream("POST", "/v1/x")
    assert next(done) == {"phase": "freeze"}
    with pytest.raises(StopIteration) as finished:
        next(done)
    assert finished.value.value == {"name": "s1"}

    with pytest.raises(NotFound, match="no instance 'web'"):
        list(client.stream("POST", "/v1/x"))

    left = client.stream("POST", "/v1/x")
    assert next(left) == {"phase": "freeze"}
    left.close()  # the caller stops reading (Ctrl-C, an error of its own)

    agent.wait()
    assert open_descriptors() == before


def test_the_agent_not_running_is_one_line_and_no_descriptor_is_left(tmp_path: Path) -> None:
    before = open_descriptors()
    with pytest.raises(HomecloudError) as raised:
        ApiClient(str(tmp_path / "none.sock")).call("GET", "/v1/version")
    assert str(raised.value) == (f"the homecloud agent is not running (no socket at "
                                 f"{tmp_path / 'none.sock'}); start it with `systemctl start "
                                 "hcd.socket`")
    assert open_descriptors() == before
