"""Fixtures for every test: dev hosts, a real systemd to test against (homecloud/devhost).

    def test_socket(devhost):
        assert devhost.run("systemctl", "is-active", "hcd.socket").stdout.strip() == "active"
        images = devhost.hc("image", "ls", json=True)

`devhost` boots once per session (about a second) and is shared by every test that asks for it;
`second_devhost` is a second one, booted only when a test asks, for tests between two hosts.
`small_pool_devhost` is one more whose pool is small enough to fill.
`private_devhost` is one per test module that asks, for tests that kill the agent or
reboot the host. `debian_image` builds the Debian image in `devhost` once per session,
`vm_image_build` the Debian VM image.
All are removed at the end of the session. Without root or systemd-nspawn they skip.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from homecloud import devhost as devhosts
from homecloud.devhost.lifecycle import check_venv
from homecloud.devhost.procs import alive
from homecloud.errors import HostError

TEST_DEVHOST_RE = re.compile(r"hct-(\d+)(-[a-z0-9]+)?")
SMALL_POOL_SIZE = "200M"
VM_IMAGE = "debian-vm"


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
                    "/usr/bin/python3 (python3 -m homecloud.host.bootstrap test does)")
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


def _devhost(suffix: str, pool_size: str | None = None) -> Iterator[devhosts.DevHost]:
    host = devhosts.boot(session_devhost_name(suffix), pool_size=pool_size)
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


@pytest.fixture(scope="session")
def small_pool_devhost(_devhost_support: None) -> Iterator[devhosts.DevHost]:
    """A dev host whose embedded pool is only 200 MiB (hostsetup --pool-size, written to its
    config before its agent first starts), for filling the pool; booted on first use."""
    yield from _devhost("small", pool_size=SMALL_POOL_SIZE)


@pytest.fixture(scope="module")
def private_devhost(_devhost_support: None,
                    request: pytest.FixtureRequest) -> Iterator[devhosts.DevHost]:
    """A dev host for one test module alone, for tests that kill the agent, reboot the host or
    fill it with instances without disturbing the tests that share `devhost`."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    yield from _devhost(re.sub(r"[^a-z0-9]", "", module.lower())[:20] or "private")


@dataclass(frozen=True)
class ImageBuild:
    name: str
    output: str  # what `hc image build` printed (its progress is on stderr)


def build_debian(host: devhosts.DevHost, name: str, *options: str) -> ImageBuild:
    """`hc image build debian OPTIONS` in ``host`` unless it has image ``name``; skips when
    the host lacks something (the message names it)."""
    if shutil.which("debootstrap") is None:
        pytest.skip("building a Debian image needs debootstrap (apt-get install debootstrap)")
    if any(image["name"] == name for image in host.hc("image", "ls", json=True)):
        return ImageBuild(name, "")
    argv = ("image", "build", "debian", *options)
    result = host.hc(*argv, check=False, timeout=1800)
    if result.returncode == 3:  # the host lacks something (a mirror): the message names it
        pytest.skip(f"cannot build image {name} here: {result.stderr.strip()[-500:]}")
    if result.returncode != 0:
        pytest.fail(f"hc {' '.join(argv)} failed (exit {result.returncode}):\n"
                    f"{result.stderr[-4000:]}")
    return ImageBuild(name, result.stderr)


@pytest.fixture(scope="session")
def debian_build(devhost: devhosts.DevHost) -> ImageBuild:
    """`hc image build debian` in the session dev host, once per session (about a minute; the
    .deb cache /var/cache/homecloud/debootstrap is shared with the machine)."""
    return build_debian(devhost, "debian")


@pytest.fixture(scope="session")
def vm_image_build(devhost: devhosts.DevHost) -> ImageBuild:
    """`hc image build debian --vm --cloud-init` (image `debian-vm`) in the session dev host,
    once per session (about two minutes). It boots on both VM paths, with or without a
    cloud-init seed; VM test modules with a dev host of their own copy it there
    (cli_checks.copy_image: seconds)."""
    return build_debian(devhost, VM_IMAGE, "--vm", "--cloud-init")


@pytest.fixture(scope="session")
def debian_image(debian_build: ImageBuild) -> str:
    """The name of a Debian image (minbase + systemd) in the session dev host's pool."""
    return debian_build.name
