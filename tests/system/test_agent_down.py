"""What works with the agent stopped, in a dev host of this module's own: `hc doctor` runs the
checks that need no agent and names the agent's problem; an instance whose lease went while the
agent was down (or that was made before networking existed) joins the network when started.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from cli_checks import POOL, copy_image
from netstate import sql

from homecloud.devhost import DevHost
from homecloud.host.doctor import CHECK_NAMES, NEEDS_AGENT

pytestmark = pytest.mark.system

BUSYBOX = "/usr/bin/busybox"
LOCAL = [name for name in CHECK_NAMES if name not in NEEDS_AGENT]
# Dev hosts share the machine's cgroup2 tree: a name another dev host's test may be running
# would keep this one's unit loaded after it stops (systemd sees its cgroup populated).
NAME = "nolease"


@contextmanager
def agent_stopped(host: DevHost) -> Iterator[None]:
    """hcd stopped, socket and all (nothing can start it); started again afterwards."""
    host.run("systemctl", "stop", "hcd.socket", "hcd.service")
    try:
        yield
    finally:
        host.run("systemctl", "start", "hcd.socket")


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


def test_doctor_without_the_agent_runs_the_checks_that_need_none(
        private_devhost: DevHost) -> None:
    host = private_devhost
    with_agent = host.hc("doctor", json=True, check=False)
    assert [c["name"] for c in with_agent["checks"]] == ["agent", *CHECK_NAMES]
    assert with_agent["checks"][0]["status"] == "ok"
    with agent_stopped(host):
        table = host.hc("doctor", check=False)
        report = host.hc("doctor", json=True, check=False)
        as_user = host.hc("doctor", json=True, check=False, user="nobody")
    assert table.returncode == 3, table.stdout
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "STATUS", "DETAIL"]
    assert lines[1].startswith("agent") and "the homecloud agent is not running (no socket at " \
        "/run/homecloud/hc.sock)" in lines[1]
    assert "fix agent: `systemctl start hcd.socket`; if it stops again, `systemctl status " \
           "hcd.socket hcd.service` and `journalctl -u hcd` say why" in table.stdout
    assert report["ok"] is False
    assert [c["name"] for c in report["checks"]] == ["agent", *CHECK_NAMES]
    agent = report["checks"][0]
    assert agent["status"] == "fail" and "journalctl -u hcd" in agent["fix"]
    # Run here, as root: each has its answer (the same as the agent's on this healthy host).
    for name in LOCAL:
        assert statuses(report)[name] == statuses(with_agent)[name] == "ok", report
    for name in NEEDS_AGENT:
        check = next(c for c in report["checks"] if c["name"] == name)
        assert (check["status"], check["detail"]) == ("skipped", "needs the agent (see above)")
    # As a user: those needing root say so, the rest run.
    user = statuses(as_user)
    assert user["firewall"] == user["other firewalls"] == "skipped"
    assert {c["detail"] for c in as_user["checks"] if c["name"] in ("firewall", "other firewalls")
            } == {"needs root: run `sudo hc doctor`"}
    assert all(user[name] == "ok" for name in ("systemd", "inotify", "config", "forwarding"))
    # Started again, the agent answers: nothing of the above stuck.
    assert statuses(host.hc("doctor", json=True)) == statuses(with_agent)


def test_an_instance_without_a_lease_joins_the_network_when_started(
        private_devhost: DevHost, devhost: DevHost, debian_image: str) -> None:
    """Regression test for 981b24b: an instance with no lease (made before networking existed)
    and no namespace failed to start on the missing namespace. Now it gets an address then."""
    host = private_devhost
    network = host.hc("network", "ls", json=True)
    if network["error"] is not None:
        pytest.skip(f"the dev host has no instance network: {network['error']}")
    copy_image(devhost, host, debian_image)
    host.hc("run", "-q", debian_image, "--name", NAME)
    host.hc("stop", NAME)
    root = f"{POOL}/instances/{NAME}"
    fqdn = f"{NAME}.{network['zone']}"
    lease = f"SELECT address FROM leases WHERE instance = '{NAME}'"
    try:
        with agent_stopped(host):
            # As it was made before networking existed: no lease, no namespace, and an identity
            # naming no address or resolver (write_identity without a network).
            sql(host, f"DELETE FROM leases WHERE instance = '{NAME}'")
            host.run("ip", "netns", "delete", f"hc-{NAME}")
            host.run("tee", f"{root}/etc/hosts", input=f"127.0.0.1\tlocalhost\n127.0.1.1\t{NAME}\n")
            host.run("rm", "-f", f"{root}/etc/resolv.conf")
        assert host.hc("inspect", NAME, json=True)["ipv4"] is None
        # A join that fails (its last step, writing /etc/hosts) is undone whole.
        host.run("mv", f"{root}/etc/hosts", f"{root}/etc/hosts.kept")
        host.run("mkdir", f"{root}/etc/hosts")
        failed = host.hc("start", NAME, check=False)
        assert failed.returncode == 1 and "Is a directory" in failed.stderr, failed.stderr
        assert sql(host, lease) == []
        assert f"hc-{NAME}" not in host.run("ip", "netns", "list").stdout
        assert fqdn not in {r["name"] for r in host.hc("dns", "ls", json=True)}
        assert host.hc("inspect", NAME, json=True)["state"] == "stopped"
        host.run("rmdir", f"{root}/etc/hosts")
        host.run("mv", f"{root}/etc/hosts.kept", f"{root}/etc/hosts")
        assert host.hc("start", NAME).stdout == f"{NAME}: running\n"
        info = host.hc("inspect", NAME, json=True)
        address = info["ipv4"]
        assert info["state"] == "running" and address is not None
        assert sql(host, lease) == [[address]]
        assert f"hc-{NAME}" in host.run("ip", "netns", "list").stdout
        assert f"{address}\t{fqdn}\t{NAME}\n" in host.run("cat", f"{root}/etc/hosts").stdout
        resolv = host.run("cat", f"{root}/etc/resolv.conf").stdout
        assert f"nameserver {network['gateway4']}\n" in resolv
        # On the network: it answers, and its name is served.
        ping = host.run(BUSYBOX, "ping", "-c", "1", "-W", "2", address, check=False)
        assert ping.returncode == 0, ping.stdout
        dig = host.run("dig", f"@{network['gateway4']}", "+short", fqdn, "A")
        assert dig.stdout.split() == [address]
        assert fqdn in {r["name"] for r in host.hc("dns", "ls", json=True)}
        # Stopped and started again it keeps that address: the lease is its own now.
        host.hc("stop", NAME)
        host.hc("start", NAME)
        assert host.hc("inspect", NAME, json=True)["ipv4"] == address
    finally:
        host.hc("rm", "-f", NAME)
    assert sql(host, lease) == []
    assert f"hc-{NAME}" not in host.run("ip", "netns", "list").stdout
