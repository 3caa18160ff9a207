"""Snapshots of instances end to end (issue 12): the real `hc` CLI against the agent, systemd
and btrfs pool of a dev host of this module's own (the reconcile test restarts its agent).

A busybox command container (`sleep`) stands in for a workload: it starts in well under a
second. Files are written into its dataset from the host, where a rollback or clone must show
them as the snapshot held them. Every bad input is checked for its message and for leaving
the snapshots, datasets and instances as they were.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from cli_checks import CONFIG, POOL, agent_config, assert_nothing_left, ensure_busybox, hc_fails

from homecloud.devhost import DevHost

pytestmark = pytest.mark.system

SNAPSHOTS = f"{POOL}/.snapshots"


def read(host: DevHost, path: str) -> str:
    return host.run("cat", path).stdout


def write(host: DevHost, path: str, text: str) -> None:
    host.run("tee", path, input=text)


def snapshots(host: DevHost, instance: str | None = None) -> dict[str, dict[str, Any]]:
    args = ["snapshot", "ls", *([instance] if instance else [])]
    return {f"{s['instance']}@{s['name']}": s for s in host.hc(*args, json=True)}


def pool_state(host: DevHost) -> str:
    """Every dataset and snapshot directory in the pool, for nothing-changed checks."""
    return host.run("sh", "-c", f"cd {POOL} && find instances volumes .snapshots -maxdepth 3 "
                    "2>/dev/null | sort").stdout


def run_sleeper(host: DevHost, name: str) -> None:
    host.hc("run", ensure_busybox(host), "--name", name, "-d", "--network", "none", "--",
            "sleep", "100000")


def state(host: DevHost, name: str) -> str:
    return str({i["name"]: i for i in host.hc("ls", json=True)}[name]["state"])


@pytest.fixture(scope="module")
def web(private_devhost: DevHost) -> Iterator[str]:
    """A running instance `web` with a volume `volumes/web/data`, and its first snapshot."""
    host = private_devhost
    run_sleeper(host, "web")
    # A data dataset of the instance's own, as a service set makes for a database.
    host.run("mkdir", "-p", f"{POOL}/volumes/web")
    host.run("btrfs", "subvolume", "create", f"{POOL}/volumes/web/data")
    write(host, f"{POOL}/instances/web/note.txt", "one\n")
    write(host, f"{POOL}/volumes/web/data/rows", "r1\n")
    host.hc("snapshot", "create", "web", "--name", "first")
    yield "web"
    host.hc("rm", "-f", "web", check=False)
    host.run("rm", "-rf", f"{POOL}/volumes/web", check=False)


def test_create_covers_every_dataset_of_a_running_instance(private_devhost: DevHost,
                                                          web: str) -> None:
    host = private_devhost
    snap = host.hc("snapshot", "create", web, json=True)
    assert re.fullmatch(r"\d{8}T\d{6}Z", snap["name"]), snap
    assert snap["frozen"] is True  # the sleeper was paused while its datasets were snapshotted
    assert snap["consistency"] == "cgroup freeze"
    assert snapshots(host, web)[f"web@{snap['name']}"]["consistency"] == "cgroup freeze"
    assert snap["datasets"] == ["volumes/web/data", "instances/web"]
    assert snap["created_utc"].endswith("Z")
    assert state(host, web) == "running"  # and thawed again
    listed = snapshots(host, web)
    assert {"web@first", f"web@{snap['name']}"} <= set(listed)
    assert listed["web@first"]["held"] is None  # btrfs tells exclusive bytes only with quotas
    table = host.hc("snapshot", "ls", web).stdout
    assert "web@first" in table and "unknown" in table and "CREATED (UTC)" in table
    # Read-only: the kernel refuses writes into a snapshot.
    result = host.run("touch", f"{SNAPSHOTS}/instances/web/first/x", check=False)
    assert result.returncode != 0
    host.hc("snapshot", "rm", f"web@{snap['name']}")
    assert f"web@{snap['name']}" not in snapshots(host, web)
    assert host.run("test", "-e", f"{SNAPSHOTS}/volumes/web/data/{snap['name']}",
                    check=False).returncode != 0


def test_rollback_restores_every_dataset_and_keeps_newer_snapshots(private_devhost: DevHost,
                                                                  web: str) -> None:
    host = private_devhost
    write(host, f"{POOL}/instances/web/note.txt", "two\n")
    write(host, f"{POOL}/volumes/web/data/rows", "r1\nr2\n")
    host.hc("snapshot", "create", web, "--name", "second")
    write(host, f"{POOL}/instances/web/note.txt", "three\n")
    out = host.hc("snapshot", "rollback", "web@first").stdout
    assert "rolled back to first (running)" in out
    assert read(host, f"{POOL}/instances/web/note.txt") == "one\n"
    assert read(host, f"{POOL}/volumes/web/data/rows") == "r1\n"
    assert {"web@first", "web@second"} <= set(snapshots(host, web))
    assert state(host, web) == "running"
    # ... and forward again: the newer snapshot was kept whole.
    host.hc("snapshot", "rollback", "web@second")
    assert read(host, f"{POOL}/instances/web/note.txt") == "two\n"
    assert read(host, f"{POOL}/volumes/web/data/rows") == "r1\nr2\n"


def test_clone_is_a_new_instance_with_the_snapshots_files(private_devhost: DevHost,
                                                          web: str) -> None:
    host = private_devhost
    info = host.hc("snapshot", "clone", "web@first", "--name", "web2", json=True)
    try:
        assert info["name"] == "web2" and info["state"] == "running"
        assert read(host, f"{POOL}/instances/web2/note.txt") == "one\n"
        # A data dataset is cloned by the step of the set that makes it (data-dataset);
        # this one was made by hand, so the clone has none.
        assert host.run("test", "-e", f"{POOL}/volumes/web2", check=False).returncode != 0
        host.hc("snapshot", "create", "web2", "--name", "mine")
        # The source is untouched, and the clone's snapshots are its own.
        assert "web2@mine" not in snapshots(host, web)
    finally:
        host.hc("rm", "-f", "web2")
    # Removing an instance removes its snapshots.
    assert_nothing_left(host, "web2")
    assert host.run("test", "-e", f"{SNAPSHOTS}/instances/web2", check=False).returncode != 0
    assert "web2@mine" not in snapshots(host)


BAD = [
    (["snapshot", "create", "nosuch"], "nosuch"),
    (["snapshot", "create", "web", "--name=-x"], "invalid snapshot name"),
    (["snapshot", "create", "web", "--name", "a/b"], "invalid snapshot name"),
    (["snapshot", "create", "web", "--name", "first"], "web@first already exists"),
    (["snapshot", "rollback", "web@nosuch"], "instance web has no snapshot 'nosuch'"),
    (["snapshot", "rollback", "web"], "write INSTANCE@SNAPSHOT"),
    (["snapshot", "rollback", "nosuch@first"], "nosuch"),
    (["snapshot", "rm", "web@nosuch"], "has no snapshot"),
    (["snapshot", "clone", "web@first", "--name", "web"], "'web' already exists"),
    (["snapshot", "clone", "web@first", "--name", "Bad_Name"], "instance name"),
    (["snapshot", "clone", "web@nosuch", "--name", "web3"], "has no snapshot"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_refused_and_changes_nothing(private_devhost: DevHost, web: str,
                                                  args: list[str], message: str) -> None:
    host = private_devhost
    before = pool_state(host)
    hc_fails(host, *args, message=message)
    assert pool_state(host) == before
    assert_nothing_left(host, "web3")


def test_rollback_to_another_instances_snapshot_is_refused(private_devhost: DevHost,
                                                           web: str) -> None:
    host = private_devhost
    run_sleeper(host, "other")
    try:
        host.hc("snapshot", "create", "other", "--name", "theirs")
        before = pool_state(host)
        error = hc_fails(host, "snapshot", "rollback", "web@theirs")
        assert "other@theirs is a snapshot of another instance" in error
        assert pool_state(host) == before
    finally:
        host.hc("rm", "-f", "other")


def test_a_half_made_snapshot_is_removed_when_the_agent_starts(private_devhost: DevHost,
                                                               web: str) -> None:
    """A crash between the volume's snapshot and the instance's own leaves the volume's alone:
    never listed, and removed by the reconcile pass."""
    host = private_devhost
    host.run("btrfs", "subvolume", "snapshot", "-r", f"{POOL}/volumes/web/data",
             f"{SNAPSHOTS}/volumes/web/data/torn")
    assert "web@torn" not in snapshots(host, web)
    host.run("systemctl", "restart", "hcd.service")
    assert "web@torn" not in snapshots(host, web)
    assert host.run("test", "-e", f"{SNAPSHOTS}/volumes/web/data/torn",
                    check=False).returncode != 0
    assert "web@first" in snapshots(host, web)  # finished ones are kept


UNIT_DIR = "/etc/systemd/system"


def timers(host: DevHost) -> str:
    return host.run("systemctl", "list-timers", "--all", "--no-pager").stdout


def policy_files(host: DevHost) -> str:
    """Timers of policies on disk (the template service they share stays)."""
    return host.run("sh", "-c", f"ls {UNIT_DIR} {UNIT_DIR}/timers.target.wants 2>/dev/null "
                    "| grep 'hc-policy@.*timer' || true").stdout


def test_a_policy_runs_on_a_systemd_timer_and_prunes_only_its_own(private_devhost: DevHost,
                                                                 web: str) -> None:
    host = private_devhost
    out = host.hc("policy", "set", web, "--keep", "yearly=1", "--every", "1m").stdout
    assert "web: yearly=1, every 1m" in out
    try:
        assert "hc-policy@web.timer" in timers(host)  # enabled and waiting
        timer = host.run("cat", f"{UNIT_DIR}/hc-policy@web.timer").stdout
        assert "OnCalendar=*-*-* *:00/1:00 UTC" in timer and "Persistent=true" in timer
        assert host.run("test", "-L", f"{UNIT_DIR}/timers.target.wants/hc-policy@web.timer",
                        check=False).returncode == 0  # it outlives a reboot
        [policy] = host.hc("policy", "ls", json=True)
        assert policy["instance"] == "web" and policy["every"] == 60
        # What the timer starts: the service runs `hc policy run web`.
        host.run("systemctl", "start", "hc-policy@web.service")
        for _ in range(3):
            host.hc("policy", "run", web)
        autos = {k: s for k, s in snapshots(host, web).items() if s["name"].startswith("auto-")}
        # One yearly bucket: its oldest and the newest are kept, the two between pruned.
        assert len(autos) == 2, autos
        kept_by = sorted(s["kept_by"] for s in autos.values())
        assert kept_by == ["newest", "yearly"], kept_by
        assert snapshots(host, web)["web@first"]["kept_by"] == "manual"  # never pruned
        table = host.hc("policy", "ls").stdout
        assert "yearly=1" in table and "auto-" in table
    finally:
        host.hc("policy", "rm", web)
    assert "hc-policy@web" not in timers(host)
    assert policy_files(host) == ""
    assert host.hc("policy", "ls", json=True) == []


STAMP = "/var/lib/systemd/timers/stamp-hc-policy@web.timer"


def test_a_new_policy_does_not_catch_up_on_a_removed_ones_runs(private_devhost: DevHost,
                                                                web: str) -> None:
    """systemd keeps a Persistent= timer's last run beside, not in, its unit: a policy set
    again long after an earlier one ran must not start a run the moment its timer starts."""
    host = private_devhost
    host.run("mkdir", "-p", "/var/lib/systemd/timers")
    host.run("touch", "-d", "2020-01-06 00:00 UTC", STAMP)  # as an old policy's timer left it
    before = set(snapshots(host, web))
    host.hc("policy", "set", web, "--keep", "yearly=1", "--every", "1w")
    try:
        last = host.run("systemctl", "show", "-P", "LastTriggerUSec",
                        "hc-policy@web.timer").stdout.strip()
        assert last in ("", "n/a"), last  # never triggered: no catch-up run
        time.sleep(3)
        assert set(snapshots(host, web)) == before
    finally:
        host.hc("policy", "rm", web)
    assert host.run("test", "-e", STAMP, check=False).returncode == 1  # forgotten with it


BAD_POLICIES = [
    (["policy", "set", "nosuch", "--keep", "daily=7"], "nosuch"),
    (["policy", "set", "web", "--keep", "daily=-1"], "daily=-1 is not a count"),
    (["policy", "set", "web", "--keep", "hourly=24 hourly=2"], "hourly is given twice"),
    (["policy", "set", "web", "--keep", "daily=0"], "keeps nothing"),
    (["policy", "set", "web", "--keep", "fortnightly=1"], "unknown tier"),
    (["policy", "set", "web", "--keep", "daily=7", "--every", "30s"], "at most once a minute"),
    (["policy", "set", "web", "--keep", "daily=7", "--every", "soon"], "not an interval"),
    (["policy", "set", "web", "--keep", "daily=7", "--replicate-to", "Bad_Peer"], "name"),
    (["policy", "rm", "web"], "has no snapshot policy"),
    (["policy", "run", "web"], "has no snapshot policy"),
]


@pytest.mark.parametrize(("args", "message"), BAD_POLICIES,
                         ids=[" ".join(a) for a, _ in BAD_POLICIES])
def test_bad_policies_are_refused_and_leave_no_timer(private_devhost: DevHost, web: str,
                                                     args: list[str], message: str) -> None:
    host = private_devhost
    before = pool_state(host)
    hc_fails(host, *args, message=message)
    assert pool_state(host) == before
    assert policy_files(host) == ""
    assert host.hc("policy", "ls", json=True) == []


def test_the_policy_of_a_removed_instance_goes_at_its_next_run(private_devhost: DevHost,
                                                              web: str) -> None:
    host = private_devhost
    run_sleeper(host, "brief")
    host.hc("policy", "set", "brief", "--keep", "hourly=1")
    host.hc("rm", "-f", "brief")
    hc_fails(host, "policy", "run", "brief", message="brief")
    assert host.hc("policy", "ls", json=True) == []
    assert policy_files(host) == ""


def test_a_config_policy_gets_its_timer_and_hc_policy_set_wins(private_devhost: DevHost,
                                                               web: str) -> None:
    """snapshots: policies in config.yaml: a timer when the agent starts, shown as config's;
    `hc policy set` on its instance wins (and says so) until `hc policy rm`."""
    host = private_devhost
    with agent_config(host, "snapshots:\n  policies:\n    often: {keep: minutely=5, every: 2m}\n"
                      "  instances: {web: often}\n"):
        timer = host.run("cat", f"{UNIT_DIR}/hc-policy@web.timer").stdout
        assert "OnCalendar=*-*-* *:00/2:00 UTC" in timer
        assert "hc-policy@web.timer" in timers(host)
        [policy] = host.hc("policy", "ls", json=True)
        assert (policy["source"], policy["config_policy"], policy["keep"], policy["every"]) == (
            "config", "often", "minutely=5", 120)
        assert "config: often" in host.hc("policy", "ls").stdout
        hc_fails(host, "policy", "rm", web, message="the policy of web is 'often' from "
                 "config.yaml (snapshots: instances: web): remove it there and restart hcd")
        out = host.hc("policy", "set", web, "--keep", "hourly=2", "--every", "1h").stdout
        assert "wins over config.yaml's 'often' for web" in out
        assert "00/1:00:00 UTC" in host.run("cat", f"{UNIT_DIR}/hc-policy@web.timer").stdout
        assert "cli (over config: often)" in host.hc("policy", "ls").stdout
        out = host.hc("policy", "rm", web).stdout
        assert "config.yaml's policy 'often' applies to web again" in out
        [policy] = host.hc("policy", "ls", json=True)
        assert policy["source"] == "config" and policy["every"] == 120
    # The agent restarted without it: its policy and timer are gone.
    assert host.hc("policy", "ls", json=True) == []
    assert policy_files(host) == ""


def test_a_bad_config_policy_stops_the_agent_with_one_line(private_devhost: DevHost,
                                                           web: str) -> None:
    host = private_devhost
    original = host.run("cat", CONFIG).stdout
    bad = {**(yaml.safe_load(original) or {}), "snapshots": {
        "policies": {"bad": {"keep": "daily=-1"}}, "instances": {"web": "bad"}}}
    host.run("tee", CONFIG, input=yaml.safe_dump(bad))
    try:
        assert host.run("systemctl", "restart", "hcd.service", check=False).returncode != 0
        log = host.run("journalctl", "-u", "hcd.service", "-n", "30", "--no-pager").stdout
        assert "snapshots: policies: bad: keep: daily=-1 is not a count" in log, log
    finally:
        host.run("tee", CONFIG, input=original)
        host.run("systemctl", "reset-failed", "hcd.service", check=False)
        host.run("systemctl", "restart", "hcd.service")
    assert host.hc("policy", "ls", json=True) == []
    assert policy_files(host) == ""
