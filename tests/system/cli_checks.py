"""Checks shared by the system tests that drive `hc` in a dev host: a command's one-line error,
nothing left behind by a failed or removed instance, building or copying an image into a dev
host, running the agent with more configuration for a while, making it crash after a
creation step, and holding a TCP connection open from inside a dev host."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from homecloud.devhost import DevHost

POOL = "/var/lib/homecloud/pool"
CONFIG = "/etc/homecloud/config.yaml"
CRASH_DROPIN = "/run/systemd/system/hcd.service.d/crash.conf"


def leftovers(host: DevHost, name: str) -> dict[str, bool]:
    load = host.run("systemctl", "show", "-p", "LoadState", "--value",
                    f"hc-{name}.service").stdout.strip()
    return {
        "unit": load != "not-found",
        "dataset": host.run("test", "-e", f"{POOL}/instances/{name}", check=False).returncode == 0,
        "listed": name in {i["name"] for i in host.hc("ls", json=True)},
    }


def assert_nothing_left(host: DevHost, name: str) -> None:
    assert leftovers(host, name) == {"unit": False, "dataset": False, "listed": False}


def hc_fails(host: DevHost, *args: str, message: str | None = None, code: int = 1,
             user: str | None = None) -> str:
    """Run `hc ARGS` (as ``user``), expect exit ``code``, nothing on stdout and an error on
    stderr (with ``message`` in it, if given); return the error without its "hc: " prefix.

    Off a terminal hc shows no progress, so the error is all stderr says: one line starting
    "hc: " (usage errors: the usage, then "hc CMD: error: ..."); only a failed start adds the
    guest's last log lines below it."""
    result = host.hc(*args, check=False, user=user)
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == "", result.stdout
    start = re.search(r"^hc( [a-z]+)?: ", result.stderr, re.MULTILINE)
    assert start, result.stderr
    assert start.start() == 0 or result.stderr.startswith("usage: "), result.stderr
    error = result.stderr[start.start():].rstrip("\n")
    assert message is None or message in error, result.stderr
    return error.removeprefix("hc: ")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something true (returned); AssertionError after
    ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def ensure_busybox(host: DevHost) -> str:
    """The busybox image in ``host`` (built through its agent if missing, a few seconds); kept
    for the other tests of the session."""
    if not any(i["name"] == "busybox" for i in host.hc("image", "ls", json=True)):
        host.hc("image", "build", "busybox", "-q")
    return "busybox"


def copy_image(source: DevHost, target: DevHost, image: str) -> None:
    """Copy ``image`` from ``source``'s pool into ``target``'s by btrfs send | receive (seconds,
    where a second debootstrap would take a minute); the agent's reconcile pass adopts it."""
    if any(i["name"] == image for i in target.hc("image", "ls", json=True)):
        return
    target.run("mkdir", "-p", f"{POOL}/images")  # a group of datasets: a plain directory
    send = subprocess.Popen(source.command(["btrfs", "send", "-q", f"{POOL}/images/{image}"]),
                            stdout=subprocess.PIPE, env=source.environment())
    receive = subprocess.run(target.command(["btrfs", "receive", "-q", f"{POOL}/images"]),
                             stdin=send.stdout, capture_output=True, text=True,
                             env=target.environment(), check=False)
    assert send.stdout is not None
    send.stdout.close()
    assert send.wait() == 0 and receive.returncode == 0, receive.stderr
    target.run("systemctl", "restart", "hcd.service")
    images = {i["name"]: i for i in target.hc("image", "ls", json=True)}
    assert images[image]["source"] == "adopted"


@contextmanager
def agent_config(host: DevHost, text: str) -> Iterator[None]:
    """The agent restarted with the sections of ``text`` (YAML) in its configuration file, in
    place of those it had; the file put back (and the agent restarted) afterwards."""
    original = host.run("cat", CONFIG).stdout
    merged = {**(yaml.safe_load(original) or {}), **yaml.safe_load(text)}
    host.run("tee", CONFIG, input=yaml.safe_dump(merged))
    host.run("systemctl", "restart", "hcd.service")
    try:
        yield
    finally:
        host.run("tee", CONFIG, input=original)
        host.run("systemctl", "restart", "hcd.service")


def set_crash_point(host: DevHost, step: str | None) -> None:
    """Make the agent SIGKILL itself after creation step ``step`` (None: never), restarting it.
    Restart=no keeps a crashed agent down, so the test sees what the crash left."""
    if step is None:
        host.run("rm", "-f", CRASH_DROPIN)
    else:
        host.run("mkdir", "-p", str(Path(CRASH_DROPIN).parent))
        host.run("sh", "-c", f"cat > {CRASH_DROPIN}", input=(
            f"[Service]\nEnvironment=HC_TEST_CRASH_AFTER_STEP={step}\nRestart=no\n"))
    host.run("systemctl", "daemon-reload")
    host.run("systemctl", "reset-failed", "hcd.service", check=False)  # and its start limit
    if step is not None:
        host.run("systemctl", "restart", "hcd.service")


# Run inside a dev host with Debian's python3: connect (retried while nothing listens there
# yet: a guest's service may bind its port after the boot is reported), say so in a file, hold
# the connection open for a while.
HOLD = """
import socket, sys, time
address, port, seconds, marker = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
deadline = time.monotonic() + 60
while True:
    try:
        s = socket.create_connection((address, port), timeout=60)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
open(marker, "w").close()
time.sleep(seconds)
"""


def hold_a_connection(host: DevHost, unit: str, address: str, port: int,
                      seconds: float) -> None:
    """A TCP connection to ``address``:``port`` held open for ``seconds`` by a process in the
    transient unit ``unit``; returns once it is open."""
    marker = f"/run/{unit}.connected"
    host.run("rm", "-f", marker)
    host.run("systemd-run", "--collect", f"--unit={unit}", "/usr/bin/python3", "-c", HOLD,
             address, str(port), str(seconds), marker)
    wait_for(f"{unit}'s connection to {address} port {port}",
             lambda: host.run("test", "-e", marker, check=False).returncode == 0, timeout=70)
