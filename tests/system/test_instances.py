"""Containers against a real systemd and pool: the InstanceManager driven inside a dev host.

Each call runs tests/system/instances_probe.py inside the dev host (no mocks). Images: a tiny
busybox image made here, and the session's Debian image (the `debian_image` fixture). The probe
has a database of its own but shares the pool with the dev host's agent, so nothing here
restarts that agent (its reconcile would remove the probe's datasets); see test_cli_instances.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.system
PROBE = Path(__file__).with_name("instances_probe.py")
NOTHING = {"row": False, "dataset": False, "unit": False}


class Probe:
    def __init__(self, host: Any) -> None:
        self.host = host

    def __call__(self, action: str, **args: Any) -> Any:
        out = self.host.run(self.host.python, PROBE, action, json.dumps(args), timeout=120)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def ok(self, action: str, **args: Any) -> Any:
        answer = self(action, **args)
        assert "error" not in answer, answer
        return answer["result"]

    def fails(self, action: str, message: str, **args: Any) -> str:
        answer = self(action, **args)
        assert "error" in answer, answer
        assert message in answer["error"], answer["error"]
        return str(answer["error"])

    def nothing_left(self, name: str) -> None:
        assert self.ok("leaks", name=name) == NOTHING


@pytest.fixture(scope="module")
def probe(devhost: Any) -> Probe:
    p = Probe(devhost)
    p.ok("image", name="bbtest")
    p.ok("image", name="bbnoboot", init="echo guest is broken >&2; exit 1")
    return p


@pytest.fixture
def cleanup(probe: Probe) -> Any:
    names: list[str] = []
    yield names
    for name in names:
        probe("remove", name=name, force=True)
        probe.nothing_left(name)


def test_a_wait_is_woken_by_the_units_signals(probe: Probe) -> None:
    # Waits for a unit sleep on its PropertiesChanged signals (homecloud/systemd/watch.py).
    out = probe.ok("watch", unit="hct-watch.service")
    assert out["signals"] >= 1
    assert (out["active"], out["result"]) == ("inactive", "success")


def test_command_mode_runs_and_exits(probe: Probe, cleanup: list[str], devhost: Any) -> None:
    cleanup.append("job")
    info = probe.ok("create", name="job", image="bbtest", command=["sh", "-c", "echo hi from job"])
    assert info["unit"] == "hc-job.service" and info["command"]
    print(f"command container started in {info['seconds']:.3f} s")
    # create returns once nspawn runs (Type=exec); the output follows in a moment.
    for _ in range(50):
        out = devhost.run("journalctl", "-u", "hc-job.service", "-o", "cat", "--no-pager").stdout
        if "hi from job" in out:
            break
        time.sleep(0.1)
    assert "hi from job" in out
    states = {probe.ok("get", name="job")["state"] for _ in range(20)}
    assert "exited" in states or "running" in states
    probe.ok("remove", name="job")  # exited: no -f needed
    probe.nothing_left("job")


def test_running_container_identity_exec_stop_start_rm(probe: Probe, cleanup: list[str],
                                                       devhost: Any) -> None:
    cleanup.append("sleeper")
    info = probe.ok("create", name="sleeper", image="bbtest", command=["sleep", "1000"],
                    cpus=0.5, memory=64 << 20, env={"GREETING": "hello"})
    assert info["state"] == "running" and info["pid"]
    leader = probe.ok("leader", name="sleeper")
    inside = devhost.run("nsenter", "-t", str(leader), "-a", "cat", "/etc/hostname").stdout
    assert inside.strip() == "sleeper"
    environ = devhost.run("cat", f"/proc/{leader}/environ").stdout
    assert "GREETING=hello" in environ or "GREETING=hello" in devhost.run(
        "sh", "-c", f"cat /proc/$(cat /proc/{leader}/task/*/children | cut -d' ' -f1)/environ"
    ).stdout
    props = devhost.run("systemctl", "show", "hc-sleeper.service", "-p", "Slice", "-p",
                        "CPUQuotaPerSecUSec", "-p", "MemoryMax", "-p", "KillMode").stdout
    assert "Slice=hc.slice" in props and "CPUQuotaPerSecUSec=500ms" in props
    assert f"MemoryMax={64 << 20}" in props and "KillMode=mixed" in props
    probe.fails("remove", "instance sleeper is running; stop it first or use `hc rm -f sleeper`",
                name="sleeper")
    assert probe.ok("stop", name="sleeper", timeout=10)["state"] == "stopped"
    assert probe.ok("start", name="sleeper")["state"] == "running"
    assert probe.ok("restart", name="sleeper")["state"] == "running"
    probe.ok("remove", name="sleeper", force=True)
    probe.nothing_left("sleeper")


@pytest.mark.parametrize(("args", "message"), [
    ({"name": "x1", "image": "nope"}, "no image named 'nope'"),
    ({"name": "Bad_Name", "image": "bbtest"}, "instance name 'Bad_Name' is invalid"),
    ({"name": "a" * 64, "image": "bbtest"}, "too long"),
    ({"name": "x2", "image": "bbtest", "memory": 1024}, "--memory 1.0K is too small"),
    ({"name": "x3", "image": "bbtest", "cpus": 4096}, "more than this host has"),
    ({"name": "x4", "image": "bbtest", "cpus": -1}, "--cpus -1 is invalid"),
    ({"name": "x5", "image": "bbtest", "command": ["true"],
      "binds": [{"source": "/nonexistent-hc", "target": "/x"}]}, "does not exist"),
    ({"name": "x6", "image": "bbtest"}, "cannot boot: it has no systemd init"),
])
def test_bad_input_leaves_nothing(probe: Probe, args: dict[str, Any], message: str) -> None:
    probe.fails("create", message, **args)
    if len(args["name"]) <= 63 and args["name"].islower():
        probe.nothing_left(args["name"])


def test_duplicate_name(probe: Probe, cleanup: list[str]) -> None:
    cleanup.append("dup")
    probe.ok("create", name="dup", image="bbtest", command=["sleep", "1000"])
    probe.fails("create", "instance 'dup' already exists", name="dup", image="bbtest",
                command=["true"])
    assert probe.ok("get", name="dup")["state"] == "running"  # the first one is untouched


def test_unknown_names(probe: Probe) -> None:
    for action in ("get", "stop", "remove", "start", "leader"):
        probe.fails(action, "no instance named 'ghost'", name="ghost")


def test_image_that_cannot_boot_fails_with_its_log_lines(probe: Probe) -> None:
    error = probe.fails("create", "hc-broken.service failed to start", name="broken",
                        image="bbnoboot")
    assert "guest is broken" in error
    probe.nothing_left("broken")


def test_reconcile_removes_half_made_work_and_the_name_is_free_again(probe: Probe,
                                                                     cleanup: list[str]) -> None:
    cleanup.append("half")
    # A crash after the unit started but before 'ready': row (creating), dataset and unit.
    probe.ok("create", name="half", image="bbtest", command=["sleep", "1000"])
    probe.ok("sql", sql="UPDATE instances SET phase = 'creating' WHERE name = 'half'")
    report = probe.ok("reconcile")
    assert report["removed_half_made"] == ["half"]
    probe.nothing_left("half")
    # A dataset with no row (crash between fork and record in another composition).
    probe.ok("create", name="half", image="bbtest", command=["true"])
    probe.ok("sql", sql="DELETE FROM instances WHERE name = 'half'")
    probe.host.run("systemctl", "stop", "hc-half.service", check=False)
    probe.host.run("systemctl", "reset-failed", "hc-half.service", check=False)
    assert probe.ok("reconcile")["removed_datasets"] == ["half"]
    probe.nothing_left("half")
    probe.ok("create", name="half", image="bbtest", command=["true"])


def test_reconcile_restarts_restart_always_and_adopts_running(probe: Probe,
                                                              cleanup: list[str]) -> None:
    cleanup += ["keeper", "other"]
    probe.ok("create", name="keeper", image="bbtest", command=["sleep", "1000"],
             restart="always")
    probe.ok("create", name="other", image="bbtest", command=["sleep", "1000"])
    # As after a host reboot: the transient unit is gone, the row and dataset remain.
    probe.host.run("systemctl", "stop", "hc-keeper.service")
    report = probe.ok("reconcile")
    assert report["restarted"] == ["keeper"] and "other" in report["adopted"]
    assert probe.ok("get", name="keeper")["state"] == "running"


def test_list_of_many(probe: Probe, cleanup: list[str]) -> None:
    names = [f"many{i}" for i in range(20)]
    cleanup += names
    for name in names:
        probe.ok("create", name=name, image="bbtest", command=["sleep", "1000"])
    listing = probe.ok("list")
    assert set(names) <= set(listing["names"])
    print(f"listed {len(listing['names'])} instances in {listing['seconds'] * 1000:.1f} ms")


def test_debian_boots_to_ready(probe: Probe, cleanup: list[str], devhost: Any,
                               debian_image: str) -> None:
    cleanup.append("deb")
    probe.ok("image", name=debian_image)  # records the agent's image in the probe's database
    info = probe.ok("create", name="deb", image=debian_image)
    assert info["state"] == "running"
    print(f"booted Debian to READY in {info['seconds']:.2f} s")
    leader = probe.ok("leader", name="deb")
    state = devhost.run("nsenter", "-t", str(leader), "-a", "systemctl", "is-system-running",
                        check=False).stdout.strip()
    assert state in ("running", "degraded")
    machines = devhost.run("machinectl", "list", "--no-legend").stdout
    assert "deb" in machines
    assert probe.ok("stop", name="deb")["state"] == "stopped"
