"""A wheel installs a working homecloud: built from this checkout, installed (not editable) into a
fresh venv, set up in a dev host of its own and used there, with no checkout in sight.

The dev host binds the wheel's venv instead of pytest's, and an empty directory as its
"checkout", so every homecloud module that runs inside (hostsetup, hcd, hc) is the wheel's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from homecloud import devhost as devhosts
from homecloud.resources import SHIPPED, shipped_dir

pytestmark = pytest.mark.system

CHECKOUT = Path(__file__).resolve().parents[2]
# What a build reads from the checkout: the package and the shipped directories beside it.
SOURCES = ("pyproject.toml", "README.md", "homecloud", *SHIPPED)
SYSTEM_PYTHON = "/usr/bin/python3"
PIP_TIMEOUT = 300  # dependencies come from the package index (or pip's cache)
SCRATCH_ROOT = Path("/var/lib/homecloud-tests")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path


def _run(argv: list[str | Path], what: str) -> None:
    result = subprocess.run([str(arg) for arg in argv], capture_output=True, text=True,
                            timeout=PIP_TIMEOUT, check=False)
    if result.returncode != 0:
        pytest.fail(f"{what} failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n"
                    f"{result.stderr[-3000:]}")


@pytest.fixture(scope="module")
def installed(_devhost_support: None) -> Iterator[Installed]:
    """homecloud's wheel, built from a copy of the checkout (a build writes into its source
    tree), and a venv made with Debian's python with that wheel and its dependencies in it."""
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"a venv a dev host can run needs {SYSTEM_PYTHON}")
    # Not under /tmp: homecloud's units run with PrivateTmp=yes, and would not see the venv.
    SCRATCH_ROOT.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"wheel-{os.getpid()}-", dir=SCRATCH_ROOT))
    try:
        yield _build_and_install(scratch)
    finally:
        shutil.rmtree(scratch)


def _build_and_install(scratch: Path) -> Installed:
    source = scratch / "source"
    source.mkdir()
    for name in SOURCES:
        if (CHECKOUT / name).is_dir():
            shutil.copytree(CHECKOUT / name, source / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(CHECKOUT / name, source / name)
    # homecloud/_data's links lead out of the package to the copies of the shipped directories.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
          "--disable-pip-version-check", "--wheel-dir", scratch / "dist", source], "pip wheel")
    (wheel,) = (scratch / "dist").glob("homecloud-*.whl")
    venv = scratch / "venv"
    _run([SYSTEM_PYTHON, "-m", "venv", venv], "python3 -m venv")
    _run([venv / "bin" / "python", "-m", "pip", "install", "--quiet",
          "--disable-pip-version-check", wheel], "pip install of the wheel")
    return Installed(wheel, venv)


@pytest.fixture(scope="module")
def wheel_host(installed: Installed,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[devhosts.DevHost]:
    """A dev host running homecloud from the wheel's venv (hostsetup included). Named like the
    session's other dev hosts, so a later session removes it if this one dies."""
    nothing = tmp_path_factory.mktemp("no-checkout")  # on PYTHONPATH inside: shadows nothing
    host = devhosts.boot(f"hct-{os.getpid()}-wheel", checkout=nothing, venv=installed.venv)
    try:
        yield host
    finally:
        devhosts.shutdown(host.name)


def test_the_wheel_carries_the_shipped_directories(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    for name in SHIPPED:
        files = sorted(p.name for p in (CHECKOUT / name).iterdir() if p.is_file())
        assert files, f"{name}/ is empty"
        for file in files:
            assert f"homecloud/_data/{name}/{file}" in names
    # Copies, not links: nothing in the wheel leads back to a checkout.
    site = next((installed.venv / "lib").glob("python3*/site-packages"))
    for name in SHIPPED:
        installed_dir = site / "homecloud" / "_data" / name
        assert installed_dir.is_dir() and not installed_dir.is_symlink()
        assert {p.name for p in installed_dir.iterdir()} == \
            {p.name for p in shipped_dir(name).iterdir()}


def test_the_agent_runs_from_the_wheel(wheel_host: devhosts.DevHost,
                                       installed: Installed) -> None:
    where = wheel_host.run(wheel_host.python, "-c", "import homecloud.resources as r; "
                           "print(r.__file__); print(r.shipped_dir('units'))").stdout.split()
    site = str(installed.venv / "lib")
    assert where[0].startswith(site) and where[1].startswith(site), where
    unit = wheel_host.run("systemctl", "cat", "hcd.service").stdout
    assert f"ExecStart={installed.venv}/bin/hcd" in unit
    # The agent itself: started on first use by hcd.socket, from the wheel's venv.
    assert wheel_host.hc("pool", json=True)["driver"]
    pid = wheel_host.run("systemctl", "show", "--value", "-p", "MainPID",
                         "hcd.service").stdout.strip()
    assert pid != "0"
    cmdline = wheel_host.run("cat", f"/proc/{pid}/cmdline").stdout.split("\0")
    assert any(arg.startswith(str(installed.venv)) for arg in cmdline), cmdline


def test_hc_run_from_the_wheel(wheel_host: devhosts.DevHost) -> None:
    wheel_host.hc("image", "build", "busybox", "-q")
    result = wheel_host.hc("run", "busybox", "--rm", "--", "sh", "-c", "echo hello from a wheel",
                           check=False)
    assert (result.returncode, result.stdout) == (0, "hello from a wheel\n"), result.stderr
    assert wheel_host.hc("ls", json=True) == []
