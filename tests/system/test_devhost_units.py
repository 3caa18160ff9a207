"""A dev host boots with only what homecloud needs, whatever the machine has enabled."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from homecloud.devhost import DevHost
from homecloud.devhost.machine_units import MACHINE_UNITS

pytestmark = pytest.mark.system
PROBE = f"hc-devhost-probe-{os.getpid()}.service"


@pytest.fixture(scope="module")
def machine_probe() -> Iterator[str]:
    """A tiny service enabled on the machine (removed afterwards)."""
    unit, link = MACHINE_UNITS / PROBE, MACHINE_UNITS / "multi-user.target.wants" / PROBE
    unit.write_text("[Unit]\nDescription=enabled on the machine, not in its dev hosts\n"
                    "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n"
                    "[Install]\nWantedBy=multi-user.target\n")
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(unit)
    try:
        yield PROBE
    finally:
        link.unlink(missing_ok=True)
        unit.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def booted(machine_probe: str, request: pytest.FixtureRequest) -> DevHost:
    # Booted after the probe is enabled on the machine.
    host: DevHost = request.getfixturevalue("private_devhost")
    return host


def test_a_dev_host_boots_to_running(booted: DevHost) -> None:
    state = booted.run("systemctl", "is-system-running", check=False).stdout.strip()
    assert state == "running", booted.run("systemctl", "--failed", "--no-legend",
                                          check=False).stdout


def test_services_enabled_on_the_machine_do_not_start_inside(booted: DevHost,
                                                             machine_probe: str) -> None:
    assert Path(MACHINE_UNITS / "multi-user.target.wants" / machine_probe).is_symlink()
    assert booted.run("systemctl", "is-active", machine_probe,
                      check=False).stdout.strip() == "inactive"
    for unit in ("postgresql.service", "cron.service", "getty@tty1.service"):
        assert booted.run("systemctl", "is-active", unit,
                          check=False).stdout.strip() == "inactive", unit


def test_they_still_start_on_demand(booted: DevHost, machine_probe: str) -> None:
    booted.run("systemctl", "start", machine_probe)
    assert booted.run("systemctl", "is-active", machine_probe).stdout.strip() == "active"
    booted.run("systemctl", "stop", machine_probe)


def test_homecloud_runs_inside(booted: DevHost) -> None:
    assert booted.run("systemctl", "is-active", "hcd.socket").stdout.strip() == "active"
    assert booted.hc("image", "ls", json=True) == []
