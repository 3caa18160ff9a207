"""Sleeping instances (`hc run --idle`) in a dev host: real nftables, conntrack, systemd socket
activation and HTTP clients. One instance, idle 5 s, serves a page on port 80 and publishes
8080; each test leaves it asleep or awake as the next one expects nothing in particular."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from cli_checks import assert_nothing_left, copy_image, hc_fails, hold_a_connection, wait_for
from guestweb import BUSYBOX_BIND

from homecloud.devhost import DevHost

IDLE = 5
PAGE = "idle-page"
NAME = "blog"
# Run inside the dev host with Debian's python3: N concurrent GETs, each answer or error.
CLIENTS = """
import sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
url, n = sys.argv[1], int(sys.argv[2])
def get(_):
    try:
        return urllib.request.urlopen(url, timeout=60).read().decode().strip()
    except Exception as exc:
        return f"error: {exc!r}"
with ThreadPoolExecutor(n) as pool:
    print("\\n".join(pool.map(get, range(n))))
"""
HTTPD_UNIT = """[Service]
ExecStart=/opt/busybox httpd -f -p 80 -h /srv
[Install]
WantedBy=multi-user.target
"""


def state(host: DevHost) -> str:
    return str(host.hc("inspect", NAME, json=True)["state"])


def timeline(host: DevHost) -> str:
    """What the wake service, the agent and the test's own connections logged lately: why an
    instance slept or woke."""
    return host.run("journalctl", "-o", "short-precise", "--no-pager", "--since", "-90s",
                    "-u", "hc-wake.service", "-u", "hcd.service", "-u", "hc-test-*",
                    check=False).stdout[-6000:]


def put_to_sleep(host: DevHost) -> None:
    """`hc stop`; the idle check may be putting it to sleep at the same moment (then the
    agent says the stop is under way)."""
    result = host.hc("stop", NAME, check=False)
    if result.returncode == 0:
        assert state(host) == "sleeping"  # at once
        return
    assert "stop is under way" in result.stderr, result.stderr
    wait_for("blog asleep", lambda: state(host) == "sleeping", timeout=30)


def get_many(host: DevHost, url: str, count: int) -> list[str]:
    result = host.run("/usr/bin/python3", "-c", CLIENTS, url, str(count), timeout=120)
    return result.stdout.splitlines()


@pytest.fixture(scope="module")
def blog(private_devhost: DevHost, devhost: DevHost, debian_image: str) -> Iterator[dict]:
    host = private_devhost
    if host.address is None:
        pytest.skip("this dev host shares the machine's network; --idle needs its own")
    copy_image(devhost, host, debian_image)
    host.hc("run", debian_image, "--name", NAME, "--idle", f"{IDLE}s", "-p", "8080:80",
            "--bind", BUSYBOX_BIND)
    host.hc("exec", NAME, "--", "sh", "-c",
            f"mkdir -p /srv && echo {PAGE} > /srv/index.html && "
            f"printf '{HTTPD_UNIT}' > /etc/systemd/system/httpd.service && "
            "systemctl enable --now httpd.service")
    info = host.hc("inspect", NAME, json=True)
    yield info
    host.hc("rm", "-f", NAME, check=False)


@pytest.mark.parametrize(("value", "message"), [
    ("ten", "--idle 'ten' is invalid: give a duration like 30s"),
    ("0s", "out of range: give 1s to 7d"), ("9d", "out of range")])
def test_bad_idle_values_are_refused(blog: dict, private_devhost: DevHost, debian_image: str,
                                     value: str, message: str) -> None:
    hc_fails(private_devhost, "run", debian_image, "--name", "bad", "--idle", value,
             message=message)
    assert_nothing_left(private_devhost, "bad")


def test_idle_with_a_command_or_rm_is_refused(blog: dict, private_devhost: DevHost,
                                              debian_image: str) -> None:
    hc_fails(private_devhost, "run", debian_image, "--name", "bad", "--idle", "1m", "--",
             "true", message="--idle needs a booted instance")
    hc_fails(private_devhost, "run", debian_image, "--name", "bad", "--idle", "1m", "--rm",
             "--", "true", message="--idle and --rm do not go together")
    assert_nothing_left(private_devhost, "bad")


def test_it_sleeps_after_the_idle_time(blog: dict, private_devhost: DevHost) -> None:
    assert blog["idle"] == IDLE
    wait_for("blog asleep", lambda: state(private_devhost) == "sleeping", timeout=IDLE + 20)
    listing = private_devhost.hc("ls")
    assert NAME in listing.stdout and "sleeping" in listing.stdout


def test_concurrent_first_connections_all_succeed(blog: dict, private_devhost: DevHost) -> None:
    host = private_devhost
    wait_for("blog asleep", lambda: state(host) == "sleeping", timeout=IDLE + 20)
    answers = get_many(host, "http://127.0.0.1:8080/", 20)
    assert answers == [PAGE] * 20
    assert state(host) == "running"


def test_its_own_address_wakes_it_and_then_goes_direct(blog: dict,
                                                       private_devhost: DevHost) -> None:
    host = private_devhost
    put_to_sleep(host)
    assert get_many(host, f"http://{blog['ipv4']}/", 5) == [PAGE] * 5
    assert get_many(host, f"http://[{blog['ipv6']}]/", 1) == [PAGE]
    # Awake, nothing goes through hc-wake. The firewall follows the wake a moment later, and
    # the idle time (5 s) must not put it back to sleep meanwhile: a connection stays open.
    hold_a_connection(host, "hc-test-awake", blog["ipv4"], 80, IDLE * 4)
    try:
        wait_for("blog's traffic to go direct", lambda: "sleeping4" not in host.run(
            "nft", "-j", "list", "table", "inet", "homecloud").stdout, timeout=IDLE * 3)
    finally:
        host.run("systemctl", "stop", "hc-test-awake", check=False)


def test_an_open_connection_keeps_it_awake(blog: dict, private_devhost: DevHost) -> None:
    host = private_devhost
    if state(host) != "running":
        host.hc("start", NAME)
    hold_a_connection(host, "hc-test-hold", blog["ipv4"], 80, IDLE + 6)
    time.sleep(IDLE + 3)
    assert state(host) == "running", timeline(host)
    wait_for("blog asleep after the connection closed",
             lambda: state(host) == "sleeping", timeout=IDLE + 20)


def test_a_connection_wakes_it_while_the_agent_is_killed(blog: dict,
                                                         private_devhost: DevHost) -> None:
    host = private_devhost
    wait_for("blog asleep", lambda: state(host) == "sleeping", timeout=IDLE + 20)
    host.run("systemctl", "kill", "--signal=SIGKILL", "hcd.service")
    assert get_many(host, "http://127.0.0.1:8080/", 3) == [PAGE] * 3


def test_rm_of_a_sleeping_instance_leaves_nothing(blog: dict, private_devhost: DevHost) -> None:
    host = private_devhost
    put_to_sleep(host)
    host.hc("rm", NAME)
    assert_nothing_left(host, NAME)
    table = host.run("nft", "list", "table", "inet", "homecloud").stdout
    assert blog["ipv4"] not in table and "7079" not in table
    assert host.run("python3", "-c", "import socket; s=socket.socket(); s.settimeout(3); "
                    "print(s.connect_ex(('127.0.0.1', 8080)))").stdout.strip() != "0"
