"""Network namespaces for system tests: every test makes its own (hcnet-test-<pid>-<n>-<name>)
and deletes them afterwards, so nothing touches the machine's own interfaces, routes or
nftables. Plain context managers, usable outside pytest too (bench/)."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from homecloud.devhost.procs import alive

PREFIX = "hcnet-test-"
PROBE = Path(__file__).with_name("netprobe.py")
_STALE_RE = re.compile(rf"{PREFIX}(\d+)-")
_counter = itertools.count()


def require_netns() -> None:
    """Skip unless this process can make namespaces and has ip and nft."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install iproute2 nftables)")


def ip(*argv: str) -> str:
    return subprocess.run(["ip", *argv], check=True, capture_output=True,
                          text=True).stdout.strip()


def list_namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def reap_stale() -> None:
    """Delete test namespaces whose process died without deleting them."""
    for name in list_namespaces():
        match = _STALE_RE.match(name)
        if match and int(match[1]) != os.getpid() and not alive(int(match[1])):
            subprocess.run(["ip", "netns", "delete", name], check=False)


@contextlib.contextmanager
def namespaces(*names: str) -> Iterator[list[str]]:
    """New, empty network namespaces (loopback up), deleted afterwards whatever happens."""
    reap_stale()
    made: list[str] = []
    try:
        for name in names:
            full = f"{PREFIX}{os.getpid()}-{next(_counter)}-{name}"
            ip("netns", "add", full)
            made.append(full)
            ip("-n", full, "link", "set", "lo", "up")
        yield made
    finally:
        for full in made:
            subprocess.run(["ip", "netns", "delete", full], check=False)


def run_in(ns: str, *argv: str, check: bool = True, timeout: float = 30,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], check=check, capture_output=True,
                          text=True, timeout=timeout, input=input)


def python_in(ns: str, code: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run Python (this venv, with homecloud importable) inside ``ns``."""
    return run_in(ns, sys.executable, "-c", code, check=check)


def link_pair(ns_a: str, name_a: str, ns_b: str, name_b: str,
              addresses_a: Sequence[str] = (), addresses_b: Sequence[str] = ()) -> None:
    """A veth pair from ``ns_a`` to ``ns_b``, addressed and up on both ends, and settled like a
    LAN that has been there for a while: IPv6 duplicate address detection of the link-local
    addresses is over (until then IPv6 routed over the pair stalls a second or two)."""
    ip("-n", ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b,
       "netns", ns_b)
    for ns, name, addresses in ((ns_a, name_a, addresses_a), (ns_b, name_b, addresses_b)):
        for address in addresses:
            ip("-n", ns, "addr", "add", address, "dev", name, "nodad")
        ip("-n", ns, "link", "set", name, "up")
    for ns, name in ((ns_a, name_a), (ns_b, name_b)):
        wait_for(lambda ns=ns, name=name: not ip("-n", ns, "-6", "addr", "show", "dev", name,
                                                  "tentative"))


@contextlib.contextmanager
def probe_server(ns: str, kind: str, address: str, port: int) -> Iterator[subprocess.Popen[str]]:
    """netprobe.py serving ``kind`` (tcp|udp) on address:port inside ``ns``, until the block
    ends. Each client gets back the address it came from."""
    process = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(PROBE),
                                f"serve-{kind}", address, str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"probe server did not start: {line}{process.stderr.read()}")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def probe(ns: str, kind: str, address: str, port: int,
          timeout: float = 2.0) -> str | None:
    """Connect (tcp) or send (udp) from ``ns``; the source address the server saw, or None
    when nothing answered."""
    result = run_in(ns, sys.executable, str(PROBE), f"connect-{kind}", address, str(port),
                    str(timeout), check=False, timeout=timeout + 30)
    return result.stdout.strip() if result.returncode == 0 else None


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError("condition not met")
