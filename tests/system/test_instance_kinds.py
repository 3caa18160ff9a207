"""Kinds of instance are drivers: a kind that lives only under tests/ (kinds/sleeper_kind.py and
its service set kinds/sleeper.yaml), named in the agent's configuration, is created, listed,
stopped, started and removed through the real `hc` and agent of a dev host."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_checks import agent_config, assert_nothing_left, ensure_busybox, hc_fails

from homecloud.devhost import DevHost

pytestmark = pytest.mark.system

KINDS = Path(__file__).resolve().parent / "kinds"
SETS = "/etc/homecloud/service-sets"
DROPIN = "/run/systemd/system/hcd.service.d/kinds.conf"


@pytest.fixture(scope="module")
def host(private_devhost: DevHost) -> Iterator[DevHost]:
    """The agent with the sleeper kind: its module on the agent's path, its service set where
    a host's own sets go."""
    h = private_devhost
    ensure_busybox(h)
    h.run("mkdir", "-p", SETS, str(Path(DROPIN).parent))
    h.run("cp", str(KINDS / "sleeper.yaml"), f"{SETS}/sleeper.yaml")
    h.run("tee", DROPIN, input=f"[Service]\nEnvironment=PYTHONPATH={KINDS}\n")
    h.run("systemctl", "daemon-reload")
    with agent_config(h, "instances: {drivers: {sleeper: 'sleeper_kind:SleeperDriver', "
                         "broken: 'no_such_module:Driver'}}"):
        yield h
    h.run("rm", "-f", DROPIN, f"{SETS}/sleeper.yaml")
    h.run("systemctl", "daemon-reload")


def state(host: DevHost, name: str) -> str:
    return {i["name"]: i for i in host.hc("ls", json=True)}[name]["state"]


def test_a_kind_from_configuration_runs_through_the_agent(host: DevHost) -> None:
    assert host.hc("run", "busybox", "--kind", "sleeper", "--name", "nap", "-q"
                   ).stdout.strip() == "nap"
    info = host.hc("inspect", "nap", json=True)
    assert (info["kind"], info["state"]) == ("sleeper", "running")
    assert info["capabilities"] == []
    # The unit is systemd's, as for every kind: its main process is the sleep.
    pid = host.run("systemctl", "show", "-p", "MainPID", "--value", "hc-nap.service").stdout
    assert host.run("cat", f"/proc/{pid.strip()}/comm").stdout.strip() == "sleep"

    host.hc("stop", "nap")
    assert state(host, "nap") == "stopped"
    # No dataset, and the agent's start-up pass keeps it all the same.
    host.run("systemctl", "restart", "hcd.service")
    assert state(host, "nap") == "stopped"
    host.hc("start", "nap")
    assert state(host, "nap") == "running"

    hc_fails(host, "exec", "nap", "--", "true",
             message="hc exec is not supported for sleeper instances")
    host.hc("rm", "-f", "nap")
    assert_nothing_left(host, "nap")


def test_an_unknown_kind_is_one_line_and_leaves_nothing(host: DevHost) -> None:
    hc_fails(host, "run", "busybox", "--kind", "nosuch", "--name", "nokind",
             message="instance kind 'nosuch' is not supported "
             "(use: broken, container, lambda, machine, sleeper, vm)")
    assert_nothing_left(host, "nokind")


def test_a_driver_that_cannot_load_names_itself(host: DevHost) -> None:
    hc_fails(host, "run", "busybox", "--kind", "broken", "--name", "broke", code=3,
             message="the broken instance driver no_such_module:Driver cannot load")
    assert_nothing_left(host, "broke")


def test_containers_still_run_beside_it(host: DevHost) -> None:
    host.hc("run", "busybox", "--name", "box", "--rm", "--", "true")
    assert_nothing_left(host, "box")
