"""Replication (issue 12): `hc snapshot send` and policies' --replicate-to, streamed into the
receiving agent's API with a length and CRC-32C trailer; full, then incremental; damaged, cut and
unauthenticated streams refused with nothing kept; a peer that does not answer retried, its
base snapshot never pruned.

The receiving agent here is the sending host's own, reached on its socket (`--url
unix:/run/homecloud/hc.sock`): the same route a front door forwards to.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from cli_checks import POOL, ensure_busybox, hc_fails, wait_for

from homecloud.devhost import DevHost

pytestmark = pytest.mark.system

# The trailer homecloud.snapshots.framing appends (length, CRC-32C; big-endian) of the file
# named after it, written to stdout: a sender that is not homecloud's, with google-crc32c from
# the venv (which dev hosts have at the same path as the machine).
TRAILER = (f"{sys.executable} -c 'import google_crc32c, struct, sys; "
           "d = open(sys.argv[1], \"rb\").read(); "
           "sys.stdout.buffer.write(struct.pack(\">QI\", len(d), google_crc32c.value(d)))'")

SOCKET = "/run/homecloud/hc.sock"
SNAPSHOTS = f"{POOL}/.snapshots"


def write(host: DevHost, path: str, text: str) -> None:
    host.run("tee", path, input=text)


def replicas(host: DevHost) -> str:
    """Every replica dataset, snapshot and half-received tree, for nothing-kept checks."""
    return host.run("sh", "-c", f"cd {POOL} && find replicas .snapshots/replicas .work "
                    "-mindepth 1 -maxdepth 5 2>/dev/null | sort").stdout


@pytest.fixture(scope="module")
def web(private_devhost: DevHost) -> Iterator[tuple[str, str]]:
    """A running instance `web` with a data volume; yields it and this host's name (where its
    replicas land: replicas/HOST/...)."""
    host = private_devhost
    host.hc("run", ensure_busybox(host), "--name", "web", "-d", "--network", "none", "--",
            "sleep", "100000")
    host.run("mkdir", "-p", f"{POOL}/volumes/web")
    host.run("btrfs", "subvolume", "create", f"{POOL}/volumes/web/data")
    host.hc("peer", "add", "self", "--url", f"unix:{SOCKET}")
    name = host.run("hostname").stdout.strip().split(".")[0].lower()
    yield "web", name
    host.hc("rm", "-f", "web", check=False)


def test_full_then_incremental_then_nothing(private_devhost: DevHost,
                                            web: tuple[str, str]) -> None:
    host, (instance, me) = private_devhost, web
    write(host, f"{POOL}/instances/web/note.txt", "one\n")
    host.run("dd", "if=/dev/urandom", f"of={POOL}/volumes/web/data/blob", "bs=1M", "count=2",
             "status=none")
    host.hc("snapshot", "create", instance, "--name", "s1")
    out = host.hc("snapshot", "send", instance, "--to", "self").stdout
    assert "sent volumes/web/data@s1 (full)" in out and "sent instances/web@s1 (full)" in out
    base = f"{SNAPSHOTS}/replicas/{me}"
    assert host.run("cat", f"{base}/instances/web/s1/note.txt").stdout == "one\n"
    assert host.run("cmp", f"{POOL}/volumes/web/data/blob",
                    f"{base}/volumes/web/data/s1/blob", check=False).returncode == 0
    write(host, f"{POOL}/instances/web/note.txt", "two\n")
    host.hc("snapshot", "create", instance, "--name", "s2")
    out = host.hc("snapshot", "send", instance, "--to", "self").stdout
    assert "sent instances/web@s2 (from s1)" in out
    assert host.run("cat", f"{base}/instances/web/s2/note.txt").stdout == "two\n"
    assert "self already holds web@s2" in host.hc("snapshot", "send", instance, "--to",
                                                  "self").stdout
    listed = {s["name"]: s for s in host.hc("snapshot", "ls", instance, json=True)}
    assert listed["s2"]["replicated_to"] == ["self"]
    assert host.run("ls", f"{POOL}/.work", check=False).stdout.strip() == ""


def test_send_prints_json_and_shows_each_stream_when_asked(private_devhost: DevHost,
                                                           web: tuple[str, str]) -> None:
    host, (instance, _) = private_devhost, web
    host.run("dd", "if=/dev/urandom", f"of={POOL}/volumes/web/data/blob", "bs=1M", "count=8",
             "status=none")
    host.hc("snapshot", "create", instance, "--name", "s3")
    result = host.hc("snapshot", "send", instance, "--to", "self", "--json")
    assert result.stderr == ""  # not a terminal: no progress
    sent = json.loads(result.stdout)
    assert sent["instance"] == instance and sent["snapshot"] == "s3" and sent["peer"] == "self"
    assert sent["streams"] == ["volumes/web/data@s3 (from s2)", "instances/web@s3 (from s2)"]
    assert sent["bytes"] > 8 << 20
    host.hc("snapshot", "create", instance, "--name", "s4")
    result = host.hc("snapshot", "send", instance, "--to", "self", "--progress")
    assert result.stderr.splitlines() == ["sending web to self: volumes/web/data@s4 (from s3)",
                                          "sending web to self: instances/web@s4 (from s3)"]
    assert "sent instances/web@s4 (from s3)" in result.stdout


def test_a_send_its_client_gives_up_on_stops_and_the_peer_keeps_nothing(
        private_devhost: DevHost, web: tuple[str, str]) -> None:
    """`hc snapshot send` killed (Ctrl-C, a closed terminal): the agent stops the stream at
    its next progress report instead of sending the rest for nobody, and the peer keeps
    nothing of it."""
    host, (instance, _) = private_devhost, web
    host.run("dd", "if=/dev/urandom", f"of={POOL}/volumes/web/data/big", "bs=1M", "count=512",
             "status=none")
    host.hc("snapshot", "create", instance, "--name", "big")
    before = replicas(host)
    try:
        # `btrfs send` is held stopped until the client is gone, so the stream cannot end
        # first; once it goes on, the next report (0.5 s) finds the client gone. (SIGTERM:
        # a job started with & in a script ignores SIGINT.)
        result = host.run("sh", "-c", "hc snapshot send web --to self --progress "
                          "2>/tmp/send.err & client=$!; for _ in $(seq 600); do sender=$("
                          "pgrep -f '^btrfs send .*/volumes/web/data/big$') && break; "
                          "sleep 0.05; done; [ -n \"$sender\" ] || exit 9; kill -STOP "
                          "$sender; kill $client; wait $client; echo $?; kill -CONT $sender",
                          check=False)
        assert result.stdout.strip() == "143", (result.returncode, result.stdout)
        assert "volumes/web/data@big" in host.run("cat", "/tmp/send.err").stdout
        wait_for("the send to stop and its receive to be undone", lambda: replicas(host) == before
                 and host.run("pgrep", "-f", "^btrfs (send|receive)", check=False).returncode == 1)
        [big] = [s for s in host.hc("snapshot", "ls", instance, json=True) if s["name"] == "big"]
        assert big["replicated_to"] == []
    finally:
        host.hc("snapshot", "rm", f"{instance}@big", check=False)
        host.run("rm", "-f", f"{POOL}/volumes/web/data/big")


def curl_stream(stream_cmd: str, query: str, source: str = "evil") -> str:
    """A shell command POSTing the output of ``stream_cmd`` to the receive route, sent as it
    comes (chunked), as host ``source``."""
    return (f"{stream_cmd} | curl -s --unix-socket {SOCKET} -X POST -T - "
            f"'http://hcd/v1/replicas/{source}/receive?{query}'")


def post_stream(host: DevHost, stream_cmd: str, query: str, user: str | None = None) -> str:
    """POST the output of ``stream_cmd`` to the receive route with curl; its answer."""
    curl = curl_stream(stream_cmd, query)
    argv = ["runuser", "-u", user, "--", "sh", "-c", curl] if user else ["sh", "-c", curl]
    return host.run(*argv, check=False).stdout


@pytest.mark.parametrize(("tail", "message"), [
    ("head -c 12 /dev/zero", "stream is damaged"),  # a wrong trailer
    (f"{TRAILER} /dev/null", "stream is damaged"),  # a trailer for another stream
    ("true", "stream is damaged"),  # no trailer at all: cut short
])
def test_a_damaged_stream_is_refused_and_nothing_kept(private_devhost: DevHost,
                                                      web: tuple[str, str], tail: str,
                                                      message: str) -> None:
    host = private_devhost
    host.hc("snapshot", "create", "web", "--name", "raw", check=False)
    before = replicas(host)
    stream = f"(btrfs send -q {SNAPSHOTS}/instances/web/raw; {tail})"
    answer = post_stream(host, stream, "dataset=instances/web&snapshot=raw")
    assert message in answer, answer
    assert replicas(host) == before
    assert "evil" not in before


def test_an_unauthenticated_stream_never_reaches_the_pool(private_devhost: DevHost,
                                                          web: tuple[str, str]) -> None:
    host = private_devhost
    host.hc("snapshot", "create", "web", "--name", "raw", check=False)
    before = replicas(host)
    stream = f"(btrfs send -q {SNAPSHOTS}/instances/web/raw 2>/dev/null; true)"
    answer = post_stream(host, stream, "dataset=instances/web&snapshot=raw", user="nobody")
    assert "received" not in answer and '"snapshot"' not in answer, answer
    assert replicas(host) == before


def framed_stream(host: DevHost, snapshot: str) -> str:
    """A well-framed stream of web@SNAPSHOT saved in the host's /tmp; its path (the stream,
    then PATH.sum: its trailer, length and CRC-32C)."""
    path = f"/tmp/stream-{snapshot}"
    host.hc("snapshot", "create", "web", "--name", snapshot, check=False)
    host.run("sh", "-c", f"btrfs send -q -f {path} {SNAPSHOTS}/instances/web/{snapshot} && "
             f"{TRAILER} {path} > {path}.sum")
    return path


def test_two_receives_into_one_dataset_take_turns(private_devhost: DevHost,
                                                  web: tuple[str, str]) -> None:
    """The first stream pauses before its trailer; the second, sent meanwhile, waits for it,
    then finds the snapshot there: one received, the other refused, nothing half-made."""
    host = private_devhost
    path = framed_stream(host, "turns")
    query = "dataset=instances/web&snapshot=turns"
    first = subprocess.Popen(
        host.command(["sh", "-c", curl_stream(f"(cat {path}; sleep 3; cat {path}.sum)", query,
                                              "turns")]),
        stdout=subprocess.PIPE, text=True, env=host.environment())
    try:
        # The first is being received once its `btrfs receive` runs.
        wait_for("the first receive", lambda: host.run(
            "pgrep", "-f", "btrfs receive", check=False).returncode == 0)
        second = host.run("sh", "-c", curl_stream(f"cat {path} {path}.sum", query,
                                                  "turns")).stdout
        first_answer, _ = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert '"snapshot":"turns"' in first_answer.replace(" ", ""), first_answer
    assert "replicas/turns/instances/web@turns is already here" in second, second
    assert host.run("ls", f"{SNAPSHOTS}/replicas/turns/instances/web").stdout.split() == \
        ["turns"]
    assert host.run("ls", f"{POOL}/.work", check=False).stdout.strip() == ""


def test_a_stream_that_goes_silent_is_cut_off(private_devhost: DevHost,
                                              web: tuple[str, str]) -> None:
    host = private_devhost
    path = framed_stream(host, "silent")
    before = replicas(host)
    # Part of the stream, then nothing: the answer comes without the client sending more.
    script = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
              "data = open(sys.argv[2], 'rb').read(); "
              "s.sendall(b'POST /v1/replicas/evil/receive?dataset=instances/web&snapshot=silent "
              "HTTP/1.1\\r\\nHost: hcd\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n' "
              "+ b'%x\\r\\n' % len(data) + data + b'\\r\\n'); "
              "print(b''.join(iter(lambda: s.recv(65536), b'')).decode())")
    answer = host.run(host.python, "-c", script, SOCKET, path, timeout=60).stdout
    assert answer.startswith("HTTP/1.1 408"), answer
    assert "the request body did not arrive within 10 s" in answer, answer
    assert replicas(host) == before


@pytest.mark.parametrize(("query", "message"), [
    ("dataset=../../etc&snapshot=x", "invalid dataset"),
    ("dataset=images/debian&snapshot=x", "invalid dataset"),
    ("dataset=instances/web&snapshot=-x", "invalid snapshot name"),
    ("dataset=instances/web&snapshot=x&parent=nosuch", "does not hold it"),
])
def test_receives_into_other_places_are_refused(private_devhost: DevHost,
                                                web: tuple[str, str], query: str,
                                                message: str) -> None:
    host = private_devhost
    before = replicas(host)
    assert message in post_stream(host, "echo junk", query)
    assert replicas(host) == before


def test_a_peer_that_does_not_answer_keeps_its_base(private_devhost: DevHost,
                                                    web: tuple[str, str]) -> None:
    """The policy's replication fails (after retries with back-off): the error shows in
    `hc policy ls`, and the snapshot the peer holds stays, whatever the counts say."""
    host, (instance, _) = private_devhost, web
    host.hc("policy", "set", instance, "--keep", "yearly=1", "--replicate-to", "self")
    try:
        host.hc("policy", "run", instance)  # auto-1, sent: now the peer's base
        [first] = [s["name"] for s in host.hc("snapshot", "ls", instance, json=True)
                   if s["name"].startswith("auto-")]
        host.hc("peer", "add", "self", "--url", "unix:/run/homecloud/nothing.sock")
        for _ in range(2):
            # The snapshot is made (and printed); the failed replication is the exit status.
            result = host.hc("policy", "run", instance, check=False)
            assert result.returncode == 1 and result.stdout.startswith("web@auto-")
            assert "replication to self failed" in result.stderr
            assert "did not answer" in result.stderr
        [policy] = host.hc("policy", "ls", json=True)
        assert "did not answer" in policy["last_error"]
        autos = {s["name"]: s for s in host.hc("snapshot", "ls", instance, json=True)
                 if s["name"].startswith("auto-")}
        # yearly=1 keeps the oldest and the newest; the middle one goes; the base stays.
        assert first in autos and "replication base" in autos[first]["kept_by"]
        assert len(autos) == 2, autos
    finally:
        host.hc("policy", "rm", instance)
        host.hc("peer", "add", "self", "--url", f"unix:{SOCKET}")


BAD = [
    (["snapshot", "send", "web", "--to", "nosuch"], "no peer named 'nosuch'"),
    (["snapshot", "send", "nosuch", "--to", "self"], "nosuch"),
    (["peer", "add", "x", "--url", "http://plain"], "use https://HOST"),
    (["peer", "add", "x", "--url", "https://h"], "needs an admin's token"),
    (["peer", "add", "x", "--url", "https://h", "--token", "t", "--fingerprint", "ab:cd"],
     "'ab:cd' is not a SHA-256 fingerprint"),
    (["peer", "add", "Bad_Name", "--url", "unix:/x"], "not a DNS label"),
    (["peer", "rm", "nosuch"], "no peer named"),
    (["policy", "set", "web", "--keep", "daily=1", "--replicate-to", "nosuch"],
     "no peer named 'nosuch'"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_refused(private_devhost: DevHost, web: tuple[str, str],
                              args: list[str], message: str) -> None:
    host = private_devhost
    peers = host.hc("peer", "ls", json=True)
    hc_fails(host, *args, message=message)
    assert host.hc("peer", "ls", json=True) == peers
    assert host.hc("policy", "ls", json=True) == []
