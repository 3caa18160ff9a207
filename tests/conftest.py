"""Fixtures for every test: dev hosts, a real systemd to test against (homecloud/devhost).

    def test_socket(devhost):
        assert devhost.run("systemctl", "is-active", "hcd.socket").stdout.strip() == "active"
        images = devhost.hc("image", "ls", json=True)

`devhost` boots once per session (about a second) and is shared by every test that asks for it;
`second_devhost` is a second one, booted only when a test asks, for tests between two hosts.
Both are removed at the end of the session. Without root or systemd-nspawn they skip.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from homecloud import devhost as devhosts
from homecloud.devhost.lifecycle import check_venv
from homecloud.devhost.procs import alive
from homecloud.errors import HostError

TEST_DEVHOST_RE = re.compile(r"hct-(\d+)(-[a-z0-9]+)?")


def session_devhost_name(suffix: str = "") -> str:
    """Dev hosts of this test session are named hct-<pid of pytest>[-suffix]; a later session
    removes them if this one dies without doing so."""
    return f"hct-{os.getpid()}" + (f"-{suffix}" if suffix else "")


def require_devhost_support() -> None:
    """Skip unless this machine can boot dev hosts."""
    if os.geteuid() != 0:
        pytest.skip("dev hosts need root")
    if shutil.which("systemd-nspawn") is None:
        pytest.skip("dev hosts need systemd-nspawn (apt-get install systemd-container)")
    if sys.prefix == sys.base_prefix:
        pytest.skip("dev hosts bind pytest's venv inside: run pytest from a venv made with "
                    "/usr/bin/python3 (python3 -m homecloud.bootstrap test does)")
    try:
        check_venv(Path(sys.prefix))
    except HostError as exc:
        pytest.skip(exc.message)


def reap_stale_test_devhosts() -> None:
    """Remove test dev hosts whose pytest died without tearing them down."""
    for host in devhosts.list_devhosts():
        match = TEST_DEVHOST_RE.fullmatch(host.name)
        if match and int(match.group(1)) != os.getpid() and not alive(int(match.group(1))):
            devhosts.shutdown(host.name)


@pytest.fixture(scope="session")
def _devhost_support() -> None:
    require_devhost_support()
    reap_stale_test_devhosts()


def _devhost(suffix: str) -> Iterator[devhosts.DevHost]:
    host = devhosts.boot(session_devhost_name(suffix))
    try:
        yield host
    finally:
        devhosts.shutdown(host.name)


@pytest.fixture(scope="session")
def devhost(_devhost_support: None) -> Iterator[devhosts.DevHost]:
    """A booted dev host with homecloud installed (hcd.socket enabled), for the session."""
    yield from _devhost("")


@pytest.fixture(scope="session")
def second_devhost(_devhost_support: None) -> Iterator[devhosts.DevHost]:
    """Another dev host, for tests between two hosts; booted on first use."""
    yield from _devhost("b")
