"""Lambdas in a dev host: `hc lambda` deploys a program, the front door routes to the lambda's
own socket, and every request runs in a fresh process in the lambda's sandboxed unit, which
stops when idle. Real nginx, real systemd,
real HTTP clients; each bad input shows its answer and that nothing was left behind."""

from __future__ import annotations

import concurrent.futures
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from cli_checks import agent_config, hc_fails, wait_for
from test_frontdoor import Door, add_user, basic, login, request

from homecloud import devhost as devhosts
from homecloud.devhost import DevHost
from homecloud.devhost.host import guest_file
from homecloud.lambdas.cgi import scgi_head

pytestmark = pytest.mark.system

PASSWORD = "correct horse battery"
ALICE = basic("alice", PASSWORD)
CONFIG = """
frontdoor:
  max_body: 64K
  per_client: 1000
"""
SCRIPTS = {
    "hello.sh": "#!/bin/sh\necho \"hello $QUERY_STRING from $(id -un)\"\n",
    "echo.py": ("#!/usr/bin/python3\nimport os, sys\nbody = sys.stdin.read()\n"
                "print('Status: 201 Created')\nprint('Content-Type: application/json')\n"
                "print('X-Path: ' + os.environ['PATH_INFO'])\nprint()\n"
                "print(repr((os.environ['REQUEST_METHOD'], body, os.environ.get('REMOTE_USER'))),"
                " end='')\n"),
    "fail.sh": "#!/bin/sh\necho 'half an answer'\necho 'something broke' >&2\nexit 3\n",
    "slow.sh": "#!/bin/sh\nsleep 1000 &\nsleep 1000\n",
    "flood.sh": "#!/bin/sh\nexec yes 'a very long line of output'\n",
    "deaf.sh": "#!/bin/sh\necho ignored your body\n",
    "plain.txt": "not executable\n",
    "headers.sh": "#!/bin/sh\necho \"cookie=[$HTTP_COOKIE] auth=[$HTTP_AUTHORIZATION] "
                  "user=[$REMOTE_USER]\"\n",
    "probe.sh": "#!/bin/sh\ntouch /lambda/x 2>/dev/null && echo code-writable\n"
                "touch /etc/x 2>/dev/null && echo etc-writable\n"
                "cat /etc/shadow >/dev/null 2>&1 && echo shadow-readable\n"
                "echo done\n",
}
CODE = "/root/fn"


def running(host: DevHost, name: str) -> bool:
    """Whether anything of lambda ``name`` runs (its sandbox's unit)."""
    return host.run("systemctl", "is-active", f"hc-{name}.service",
                    check=False).stdout.strip() in ("active", "activating", "deactivating")


def idle(host: DevHost, name: str) -> None:
    wait_for(f"lambda {name}'s unit to stop when idle", lambda: not running(host, name))


def datasets(host: DevHost) -> list[str]:
    path = guest_file(host, "/var/lib/homecloud/pool/lambdas")
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


@pytest.fixture(scope="module")
def door(private_devhost: DevHost) -> Iterator[Door]:
    host = private_devhost
    if host.address is None:
        pytest.skip("this dev host shares the machine's network: the door's ports would be "
                    "the machine's")
    with agent_config(host, CONFIG):
        wait_for("the front door", lambda: host.run(
            "systemctl", "is-active", "hc-frontdoor.service", check=False).stdout.strip()
            == "active")
        host.run("mkdir", "-p", CODE)
        for name, text in SCRIPTS.items():
            host.run("tee", f"{CODE}/{name}", input=text)
            if not name.endswith(".txt"):
                host.run("chmod", "+x", f"{CODE}/{name}")
        add_user(host, "alice")
        door = Door(host, host.address, "")
        deploy(door, "hello", f"{CODE}/hello.sh", "/hello")
        yield door


def deploy(door: Door, name: str, source: str, route: str, *options: str) -> None:
    """`hc lambda deploy` with a route, then wait until the door serves it: for a moment after
    a reload, nginx's old workers may still take a new connection."""
    door.host.hc("lambda", "deploy", name, source, "--route", route, *options)
    wait_for(f"route {route}", lambda: get(door, route)[2] != "no route here\n")


def get(door: Door, path: str, **kwargs: object) -> tuple[int, dict[str, str], str]:
    return request(door, path, headers={**ALICE, **kwargs.pop("headers", {})},  # type: ignore[dict-item]
                   **kwargs)  # type: ignore[arg-type]


def test_hello_through_the_door(door: Door) -> None:
    status, headers, body = get(door, "/hello?x=1")
    assert status == 200, body
    assert body.startswith("hello x=1 from ") and "root" not in body  # a dynamic user
    assert headers["content-type"].startswith("text/plain")
    assert request(door, "/hello")[0] == 401  # like any route: a login first
    assert running(door.host, "hello")  # the burst's sandbox...
    idle(door.host, "hello")  # ...stops when idle: nothing runs between bursts
    assert door.host.run("systemctl", "is-active", "hc-hello.socket").stdout.strip() \
        == "active"


def test_listed_with_its_route(door: Door) -> None:
    (item,) = [i for i in door.host.hc("lambda", "ls", json=True) if i["name"] == "hello"]
    assert item["route"] == "/hello" and item["entry"] == "hello.sh"
    assert item["unit"] == "hc-hello.service" and item["timeout"] == 10
    assert item["socket"] == "hc-hello.socket" and item["state"] == "ready"
    assert "ready" in door.host.hc("lambda", "ls").stdout
    routes = {r["name"]: r for r in door.host.hc("route", "ls", json=True)}
    assert routes["/hello"]["target"] == "lambda hello"
    assert "lambda hello" in door.host.hc("route", "ls").stdout
    assert door.host.hc("lambda", "inspect", "hello", json=True)["version"] >= 1


def test_cgi_request_and_response(door: Door) -> None:
    deploy(door, "echo", f"{CODE}/echo.py", "/echo")
    status, headers, body = get(door, "/echo/a/b?q=1", method="POST", body=b"payload")
    assert status == 201, body
    assert headers["content-type"] == "application/json" and headers["x-path"] == "/a/b"
    assert body == "('POST', 'payload', 'alice')"


@pytest.mark.parametrize(("cookies", "seen"), [
    ("SESSION", ""),
    ("a=1; SESSION", "a=1"),
    ("SESSION; b=2", "b=2"),
    ("a=1; SESSION; b=2", "a=1; b=2"),
    ("a=1; xhc_session=3", "a=1; xhc_session=3"),
], ids=["alone", "last", "first", "between", "a look-alike"])
def test_the_door_keeps_its_credentials(door: Door, cookies: str, seen: str) -> None:
    """A login's session and password stay at the door; the lambda gets the user's name and
    every other cookie as the browser sent it."""
    deploy(door, "headers", f"{CODE}/headers.sh", "/headers")
    session = login(door, "alice", PASSWORD, "/headers")[1]["set-cookie"].split(";")[0]
    status, _, body = request(door, "/headers",
                              headers={"Cookie": cookies.replace("SESSION", session)})
    if "SESSION" not in cookies:  # no login: basic auth instead
        status, _, body = get(door, "/headers", headers={"Cookie": cookies})
    assert (status, body) == (200, f"cookie=[{seen}] auth=[] user=[alice]\n")


def test_sandbox(door: Door) -> None:
    deploy(door, "probe", f"{CODE}/probe.sh", "/probe")
    status, _, body = get(door, "/probe")
    assert (status, body) == (200, "done\n")


def test_non_zero_exit_is_502_with_logs(door: Door) -> None:
    deploy(door, "fail", f"{CODE}/fail.sh", "/fail")
    status, _, body = get(door, "/fail")
    assert status == 502 and "half an answer" not in body  # an answer is whole or not sent
    assert "exited with status 3" in body and "hc lambda logs fail" in body
    wait_for("the lambda's stderr in its logs", lambda: "something broke" in door.host.hc(
        "lambda", "logs", "fail").stdout)
    idle(door.host, "fail")


def test_timeout_is_504_and_everything_goes(door: Door) -> None:
    deploy(door, "slow", f"{CODE}/slow.sh", "/slow",
                 "--timeout", "1s")
    started = time.monotonic()
    status, _, body = get(door, "/slow")
    assert status == 504 and "ran past its timeout (1s)" in body, body
    assert time.monotonic() - started < 8
    # The request's processes are gone at once, not when the sandbox stops.
    assert door.host.run("pgrep", "-f", "sleep 1000", check=False).returncode == 1
    idle(door.host, "slow")


def test_flood_of_output_is_cut(door: Door) -> None:
    deploy(door, "flood", f"{CODE}/flood.sh", "/flood")
    status, _, body = get(door, "/flood")
    assert status == 502 and "wrote more than 16 MiB" in body
    assert door.host.run("pgrep", "-x", "yes", check=False).returncode == 1
    idle(door.host, "flood")


def test_lambda_that_reads_nothing(door: Door) -> None:
    deploy(door, "deaf", f"{CODE}/deaf.sh", "/deaf")
    status, _, body = get(door, "/deaf", method="POST", body=b"x" * 60_000)
    assert (status, body) == (200, "ignored your body\n")


def test_body_over_the_limit_is_413(door: Door) -> None:
    status, _, _ = get(door, "/deaf", method="POST", body=b"x" * (65 << 10))
    assert status == 413


@pytest.mark.parametrize("args, message", [
    (["Bad_Name", f"{CODE}/hello.sh"], "lambda name 'Bad_Name' is invalid"),
    (["x", f"{CODE}/missing.sh"], "missing.sh: no such file or folder"),
    (["x", f"{CODE}/plain.txt"], "is not executable"),
    (["x", CODE], "executables at its top"),
    (["x", f"{CODE}/hello.sh", "--route", "/hello"], "route /hello exists (to lambda hello)"),
    (["x", f"{CODE}/hello.sh", "--route", "/_hc/x"], "belongs to homecloud"),
    (["x", f"{CODE}/hello.sh", "--timeout", "soon"], "--timeout 'soon' is invalid"),
    # Its units would override one of homecloud's own.
    (["wake", f"{CODE}/hello.sh"], "instance name 'wake' is reserved (the wake listener of "
                                   "sleeping instances runs as hc-wake.service)"),
])
def test_bad_deploys_leave_nothing(door: Door, args: list[str], message: str) -> None:
    before = (datasets(door.host), door.host.hc("route", "ls", json=True))
    hc_fails(door.host, "lambda", "deploy", *args, message=message)
    assert (datasets(door.host), door.host.hc("route", "ls", json=True)) == before
    assert not {"x", "wake"} & {i["name"] for i in door.host.hc("ls", json=True)}


def test_remove_unknown(door: Door) -> None:
    hc_fails(door.host, "lambda", "rm", "nosuch", message="no lambda 'nosuch'")


# One GET /hello as the door sends it.
_SCGI_GET = scgi_head([("CONTENT_LENGTH", "0"), ("REQUEST_METHOD", "GET"),
                       ("REQUEST_URI", "/hello"), ("HC_ROUTE", "/hello")])


def _raw_get(path: str) -> int:
    """One request straight to the lambda's socket, as the door sends it; the status."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(path)
        sock.sendall(_SCGI_GET)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1])  # "Status: 200 OK"


def test_burst_of_500_connections(door: Door) -> None:
    idle(door.host, "hello")  # the burst starts it cold
    path = str(guest_file(door.host, "/run/hc-lambda/hello.sock"))
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=500) as pool:
        statuses = list(pool.map(lambda _: _raw_get(path), range(500)))
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    assert statuses.count(200) >= 32, (statuses.count(200), time.monotonic() - started)
    assert get(door, "/hello?after=1")[2].startswith("hello after=1")
    idle(door.host, "hello")
    assert door.host.run("systemctl", "is-failed", "hc-hello.socket",
                         check=False).stdout.strip() == "active"


def test_deploy_over_while_requests_run(door: Door) -> None:
    host = door.host
    for version in ("one", "two"):
        host.run("mkdir", "-p", f"{CODE}/{version}")
        host.run("tee", f"{CODE}/{version}/run.sh",
                 input=f"#!/bin/sh\necho begin {version}\nsleep 0.05\necho end {version}\n")
        host.run("chmod", "+x", f"{CODE}/{version}/run.sh")
    deploy(door, "swap", f"{CODE}/one", "/swap")
    stop = threading.Event()
    bodies: list[str] = []

    def hammer() -> None:
        while not stop.is_set():
            bodies.append(get(door, "/swap")[2])

    workers = [threading.Thread(target=hammer) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        for version in ("two", "one", "two"):
            host.hc("lambda", "deploy", "swap", f"{CODE}/{version}", "--route", "/swap")
            time.sleep(0.3)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    whole = {"begin one\nend one\n", "begin two\nend two\n"}
    assert bodies and set(bodies) <= whole, set(bodies) - whole
    assert get(door, "/swap")[2] == "begin two\nend two\n"
    assert [d for d in datasets(host) if d.startswith("swap.")] and \
        len([d for d in datasets(host) if d.startswith("swap.")]) <= 2


def test_lambdas_outlive_the_agent(door: Door) -> None:
    door.host.run("systemctl", "kill", "-s", "KILL", "hcd.service")
    try:
        assert get(door, "/hello?agent=dead")[2].startswith("hello agent=dead")
    finally:
        door.host.run("systemctl", "start", "hcd.service")
    states = {i["name"]: i["state"] for i in door.host.hc("ls", json=True)}
    assert states["hello"] == "ready"  # the agent's reconcile left it as it was


def test_a_stopped_lambda_answers_503(door: Door) -> None:
    deploy(door, "nap", f"{CODE}/hello.sh", "/nap")
    door.host.run("systemctl", "stop", "hc-nap.socket")
    status, _, body = get(door, "/nap")
    assert status == 503 and "lambda nap is stopped" in body, (status, body)
    assert door.host.hc("lambda", "inspect", "nap", json=True)["state"] == "stopped"
    door.host.run("systemctl", "start", "hc-nap.socket")
    assert get(door, "/nap?x=1")[2].startswith("hello x=1")


def left_of(door: Door, name: str) -> list[str]:
    """What the host still has of lambda ``name``: units, unit files, code, route, row."""
    host = door.host
    left = [f"code {d}" for d in datasets(host) if d.startswith(f"{name}.")]
    left += [f"unit file {f}" for f in (f"hc-{name}.service", f"hc-{name}.socket",
                                        f"sockets.target.wants/hc-{name}.socket")
             if guest_file(host, f"/etc/systemd/system/{f}").exists()]
    left += [f"unit {line.split()[0]}" for line in host.run(
        "systemctl", "list-units", "--all", "--plain", "--no-legend", f"hc-{name}.*"
        ).stdout.splitlines() if line.strip()]
    left += [f"route {r['name']}" for r in host.hc("route", "ls", json=True)
             if r["target"] == f"lambda {name}"]
    left += [f"instance {i['name']}" for i in host.hc("ls", json=True) if i["name"] == name]
    return left


@pytest.mark.parametrize("command", [["lambda", "rm"], ["rm"]])
def test_remove_leaves_nothing(door: Door, command: list[str]) -> None:
    deploy(door, "gone", f"{CODE}/hello.sh", "/gone")
    assert get(door, "/gone")[0] == 200
    door.host.hc(*command, "gone")
    wait_for("the route to go", lambda: get(door, "/gone")[0] == 404)
    assert left_of(door, "gone") == []
    hc_fails(door.host, "lambda", "inspect", "gone", message="no lambda 'gone'")


def test_a_lambda_is_an_instance(door: Door) -> None:
    """`hc ls` lists it; `hc stop` closes its socket (503), `hc start` opens it again."""
    deploy(door, "inst", f"{CODE}/hello.sh", "/inst")
    host = door.host
    (item,) = [i for i in host.hc("ls", json=True) if i["name"] == "inst"]
    assert (item["kind"], item["state"], item["image"]) == ("lambda", "ready", "")
    assert item["unit"] == "hc-inst.service" and item["ipv4"] is None
    assert "(lambda)" in host.hc("ls").stdout
    host.hc("stop", "inst")
    status, _, body = get(door, "/inst")
    assert status == 503 and "lambda inst is stopped: start it with `hc start inst`" in body
    assert host.hc("inspect", "inst", json=True)["state"] == "stopped"
    assert host.hc("lambda", "inspect", "inst", json=True)["state"] == "stopped"
    assert not guest_file(host, "/etc/systemd/system/sockets.target.wants/hc-inst.socket"
                          ).exists()  # it stays stopped after a reboot
    host.hc("start", "inst")
    assert host.hc("inspect", "inst", json=True)["state"] == "ready"
    assert get(door, "/inst?x=2")[2].startswith("hello x=2")
    hc_fails(host, "exec", "inst", "--", "true",
             message="hc exec (a lambda runs a fresh process per request: call it through its "
                     "route) is not supported for lambda instances")
    hc_fails(host, "shell", "inst", message="not supported for lambda instances")
    hc_fails(host, "run", "debian", "--kind", "lambda", "--name", "other",
             message="`hc run` makes no lambdas: deploy one with `hc lambda deploy NAME PATH`")
    host.hc("rm", "inst")
    assert left_of(door, "inst") == []


def test_lambdas_come_back_after_a_reboot(door: Door) -> None:
    deploy(door, "asleep", f"{CODE}/hello.sh", "/asleep")
    door.host.hc("stop", "asleep")
    devhosts.reboot(door.host.name)
    # No hc command first: the door, each ready lambda's socket and its code are there at boot.
    wait_for("the front door", lambda: door.host.run(
        "systemctl", "is-active", "hc-frontdoor.service", check=False).stdout.strip()
        == "active")
    status, _, body = get(door, "/hello?boot=1")
    assert status == 200 and body.startswith("hello boot=1"), (status, body)
    assert "/hello" in {r["name"] for r in door.host.hc("route", "ls", json=True)}
    states = {i["name"]: (i["kind"], i["state"]) for i in door.host.hc("ls", json=True)}
    assert states["hello"] == ("lambda", "ready")
    assert states["asleep"] == ("lambda", "stopped")  # stopped stays stopped
    assert get(door, "/asleep")[0] == 503
    door.host.hc("start", "asleep")
    assert get(door, "/asleep?up=1")[2].startswith("hello up=1")
