"""`hc --host https://HOST --token ...`: the agent's API through the front door, for admins.

In the session's dev host, remote `hc` runs as `nobody` with no reachable agent socket
($HC_SOCKET points nowhere), so every answer came through nginx, the auth endpoint and the
agent's door socket; its output is compared with the same commands on the local socket."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cli_checks import ensure_busybox, wait_for

from homecloud.devhost import DevHost

pytestmark = pytest.mark.system

PASSWORD = "remote password 1"
ADMIN = "remote_admin"
PLAIN = "remote_plain"
DOOR = "https://127.0.0.1:443"
NO_SOCKET = {"HC_SOCKET": "/nonexistent/hc.sock"}  # so only the door can answer


@dataclass(frozen=True)
class Remote:
    host: DevHost
    token: str
    fingerprint: str
    plain_token: str

    def argv(self, *args: str, token: str | None = None, host: str = DOOR,
             fingerprint: str | None = None) -> list[str]:
        return [*self.host.hc_argv(), "--host", host, "--token", token or self.token,
                "--fingerprint", fingerprint or self.fingerprint, *args]

    def hc(self, *args: str, check: bool = True, **options: str) -> \
            subprocess.CompletedProcess[str]:
        return self.host.run(*self.argv(*args, **options), user="nobody", env=NO_SOCKET,
                             check=check)


def _token(host: DevHost, user: str) -> tuple[str, str]:
    result = host.hc("user", "token", user)
    fingerprint = result.stderr.strip().rsplit(" ", 1)[-1]
    return result.stdout.strip(), fingerprint


@pytest.fixture(scope="module")
def remote(devhost: DevHost) -> Iterator[Remote]:
    host = devhost
    wait_for("the front door", lambda: host.run(
        "systemctl", "is-active", "hc-frontdoor.service", check=False).stdout.strip()
        == "active")
    ensure_busybox(host)
    host.run(*host.hc_argv(), "user", "add", ADMIN, "--admin", input=PASSWORD + "\n")
    host.run(*host.hc_argv(), "user", "add", PLAIN, input=PASSWORD + "\n")
    token, fingerprint = _token(host, ADMIN)
    plain, _ = _token(host, PLAIN)
    try:
        yield Remote(host, token, fingerprint, plain)
    finally:
        for user in (ADMIN, PLAIN):
            host.hc("user", "rm", user, check=False)
        host.hc("rm", "-f", "remote1", check=False)


def test_the_fingerprint_is_the_certificates(remote: Remote) -> None:
    der = remote.host.run("sh", "-c", "openssl x509 -in /var/lib/homecloud/frontdoor/tls.crt "
                          "-outform DER | sha256sum").stdout.split()[0]
    assert remote.fingerprint.replace(":", "").lower() == der


def test_run_ls_inspect_logs_rm_through_the_door(remote: Remote) -> None:
    host = remote.host
    started = remote.hc("run", "-d", "busybox", "--name", "remote1", "--",
                        "sh", "-c", "echo hello from remote1; sleep 600")
    assert "remote1" in started.stdout
    assert remote.hc("ls").stdout == host.hc("ls").stdout
    # The same document, but for how long the last start took (measured on each call).
    remote_info = json.loads(remote.hc("inspect", "remote1").stdout)
    local_info = json.loads(host.hc("inspect", "remote1").stdout)
    assert {k: v for k, v in remote_info.items() if not k.endswith("time")} == \
        {k: v for k, v in local_info.items() if not k.endswith("time")}
    assert remote.hc("ls", "--json").stdout == host.hc("ls", "--json").stdout
    wait_for("the instance's output", lambda: "hello from remote1" in host.hc(
        "logs", "remote1").stdout)
    assert remote.hc("logs", "remote1").stdout == host.hc("logs", "remote1").stdout
    # A follow stream stays open through the door and delivers lines as they come.
    follow = subprocess.Popen(
        host.command(remote.argv("logs", "-f", "remote1"), user="nobody"),
        stdout=subprocess.PIPE, text=True, env=host.environment(NO_SOCKET))
    try:
        assert follow.stdout is not None
        # The journal's lines about the unit come first, then the instance's own.
        lines = []
        while len(lines) < 20 and not any("hello from remote1" in line for line in lines):
            lines.append(follow.stdout.readline())
        assert "hello from remote1" in lines[-1], lines
        assert follow.poll() is None  # still following
    finally:
        follow.kill()
        follow.wait()
    assert remote.hc("rm", "-f", "remote1").stdout == "removed remote1\n"
    assert "remote1" not in host.hc("ls").stdout


def test_errors_keep_their_message_and_exit_code(remote: Remote) -> None:
    local = remote.host.hc("inspect", "nothing-here", check=False)
    through = remote.hc("inspect", "nothing-here", check=False)
    assert local.returncode == 1 and "nothing-here" in local.stderr
    assert (through.returncode, through.stderr) == (local.returncode, local.stderr)


def test_a_non_admin_token_is_refused_in_one_line(remote: Remote) -> None:
    result = remote.hc("ls", token=remote.plain_token, check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == ("hc: the front door at 127.0.0.1:443 refused: this token's user is "
                             "not an admin there (`hc user add NAME --admin` on that host)\n")


def test_a_bad_token_is_refused(remote: Remote) -> None:
    result = remote.hc("ls", token="forged-token", check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("hc: the front door at 127.0.0.1:443 refused the token: ")
    assert len(result.stderr.splitlines()) == 1


def test_a_wrong_fingerprint_sends_nothing(remote: Remote) -> None:
    result = remote.hc("ls", check=False, fingerprint="00" * 32)
    assert result.returncode == 1 and result.stdout == ""
    assert "does not have the fingerprint given: not sending the token" in result.stderr
    # Without a way to trust the self-signed certificate, it is refused, not trusted silently.
    unpinned = remote.host.run(*remote.host.hc_argv(), "--host", DOOR, "--token", remote.token,
                               "ls", user="nobody", env=NO_SOCKET, check=False)
    assert unpinned.returncode == 1
    assert "is not trusted" in unpinned.stderr and "--fingerprint" in unpinned.stderr


def test_an_unreachable_host_is_a_clear_error(remote: Remote) -> None:
    result = remote.hc("ls", check=False, host="https://127.0.0.1:1")
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr == ("hc: cannot reach the front door at 127.0.0.1:1: "
                             "Connection refused\n")


def test_the_door_socket_refuses_local_clients(remote: Remote) -> None:
    # Its mode keeps other users out; nginx's own user gets nothing without the name the door
    # gives an authenticated admin.
    script = ("import socket, sys; s = socket.socket(socket.AF_UNIX); "
              "s.connect('/run/homecloud/door.sock'); "
              "s.sendall(sys.argv[1].encode() + b'\\r\\n\\r\\n'); "
              # The answer may come in more than one piece: read to its end (Connection: close).
              "print(b''.join(iter(lambda: s.recv(4096), b'')).decode())")
    head = "GET /v1/instances HTTP/1.0"
    stranger = remote.host.run(remote.host.python, "-c", script, head + "\r\nX-Remote-User: x",
                               user="nobody", check=False)
    assert "PermissionError" in stranger.stderr, stranger
    nameless = remote.host.run(remote.host.python, "-c", script, head, user="www-data",
                               check=False)
    assert nameless.stdout.startswith("HTTP/1.1 403"), nameless
    assert "only the front door may use this socket" in nameless.stdout
