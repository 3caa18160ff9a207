"""Containers end to end, as the user sees them: the real `hc` CLI against the real agent,
systemd and btrfs pool of a dev host (issue 3).

Most tests share the session dev host (`devhost`) and its Debian image (`debian_image`, built
once per session). The tests that kill the agent, reboot the host, inject crashes or run 100
containers use a dev host of their own (`private_devhost`): restarting the agent in the shared
one would make its reconcile pass remove the datasets of tests/system/test_instances.py, whose
probe shares that pool with a database of its own.

Every bad input is checked for its message, its exit code and for leaving nothing behind: no
unit hc-NAME, no dataset, nothing listed by `hc ls`.
"""

from __future__ import annotations

import json
import os
import re
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cli_checks import (
    POOL,
    assert_nothing_left,
    copy_image,
    ensure_busybox,
    hc_fails,
    set_crash_point,
    wait_for,
)

from homecloud import devhost as devhosts
from homecloud.devhost import DevHost
from homecloud.ownunits import OWN_UNITS

pytestmark = pytest.mark.system

STATE_DB = "/var/lib/homecloud/state.db"
SCALE_RESULTS = Path("/tmp/results-scale.md")
SCALE_COUNT = 100
# A stand-in for systemd that fails at once: nspawn --boot runs /usr/lib/systemd/systemd first.
BROKEN_INIT = "#!/bin/sh\necho guest init is broken >&2\nexit 1\n"


# -- helpers ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HostState:
    """What a failed command must not change: units, datasets and the listing."""

    units: frozenset[str]
    datasets: frozenset[str]
    listed: frozenset[str]


def host_state(host: DevHost) -> HostState:
    units = host.run("systemctl", "list-units", "--all", "--plain", "--no-legend",
                     "hc-*").stdout.split("\n")
    # homecloud's own units (DNS server, front door, ...) match hc-* too; they are not instances.
    units = [u for u in units if u.split()[:1] and u.split()[0] not in OWN_UNITS]
    datasets = host.run("sh", "-c", f"ls {POOL}/instances 2>/dev/null || true").stdout.split()
    listed = {i["name"] for i in host.hc("ls", json=True)}
    return HostState(frozenset(u.split()[0] for u in units if u.strip()), frozenset(datasets),
                     frozenset(listed))


def unit_active(host: DevHost, name: str) -> str:
    return host.run("systemctl", "is-active", f"hc-{name}.service", check=False).stdout.strip()


def instance(host: DevHost, name: str) -> dict[str, Any]:
    listing = {i["name"]: i for i in host.hc("ls", json=True)}
    return listing[name]


def run_in_pty(host: DevHost, argv: list[str], keys: str, ready: str,
               timeout: float = 60.0) -> tuple[int, str]:
    """Run ``argv`` inside ``host`` on a new pseudo-terminal, type ``keys`` once ``ready`` has
    been printed, and return the exit status and everything printed."""
    master, slave = os.openpty()
    proc = subprocess.Popen(host.command(argv), stdin=slave, stdout=slave, stderr=slave,
                            env=host.environment(), start_new_session=True)
    os.close(slave)
    out, typed = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            readable, _, _ = select.select([master], [], [], 0.2)
            if readable:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every process holding the terminal has gone
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
            if not typed and ready.encode() in out:
                os.write(master, keys.encode())
                typed = True
    finally:
        if proc.poll() is None:
            proc.kill()
        status = proc.wait()
        os.close(master)
    return status, out.decode(errors="replace")


# -- a booted container -------------------------------------------------------------------------

@dataclass(frozen=True)
class Booted:
    name: str
    run_stdout: str
    state_right_after: str  # `systemctl is-system-running` in the guest right after `hc run`


@pytest.fixture(scope="module")
def web(devhost: DevHost, debian_image: str) -> Iterator[Booted]:
    """`hc run debian --name web`; test_stop_start_restart_rm (the last test) removes it."""
    result = devhost.hc("run", debian_image, "--name", "web")
    state = devhost.hc("exec", "web", "--", "systemctl", "is-system-running",
                       check=False).stdout.strip()
    yield Booted("web", result.stdout, state)
    devhost.hc("rm", "-f", "web", check=False)


def test_run_returns_when_the_guest_is_ready(web: Booted, devhost: DevHost) -> None:
    assert web.run_stdout.strip() == "web"
    assert web.state_right_after in ("running", "degraded")
    assert devhost.hc("exec", "web", "--", "cat", "/etc/hostname").stdout == "web\n"


def test_ls_inspect_and_machinectl_show_it(web: Booted, devhost: DevHost,
                                           debian_image: str) -> None:
    table = devhost.hc("ls").stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "STATE", "IMAGE"]
    assert ["web", "running", debian_image] in [line.split()[:3] for line in table[1:]]
    listed = instance(devhost, "web")
    assert (listed["state"], listed["image"], listed["unit"]) == (
        "running", debian_image, "hc-web.service")
    assert listed["command"] is None and listed["kind"] == "container"
    info = devhost.hc("inspect", "web", json=True)
    assert (info["state"], info["image"], info["unit"]) == ("running", debian_image,
                                                            "hc-web.service")
    main_pid = devhost.run("systemctl", "show", "-p", "MainPID", "--value",
                           "hc-web.service").stdout.strip()
    assert info["pid"] == int(main_pid) > 0
    assert info["uptime"] is not None and info["uptime"] >= 0
    assert info["started"] is not None
    machines = devhost.run("machinectl", "list", "--no-legend").stdout
    assert "web" in [line.split()[0] for line in machines.splitlines() if line.strip()]


def test_logs_show_the_guest_journal(web: Booted, devhost: DevHost) -> None:
    logs = devhost.hc("logs", "web").stdout
    assert re.search(r" web systemd\[1\]: ", logs), logs
    assert len(devhost.hc("logs", "-n", "5", "web").stdout.splitlines()) == 5


def test_shell_through_a_terminal(web: Booted, devhost: DevHost) -> None:
    hc = devhost.hc_argv()
    status, out = run_in_pty(devhost, [*hc, "shell", "web"], "hostname; exit\n", ready="@web")
    assert status == 0, out
    lines = re.split(r"[\r\n]+", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out))
    assert "web" in lines, out  # what `hostname` printed, on a line of its own
    # Without a terminal, `hc shell` reads commands from its input.
    piped = devhost.run(*hc, "shell", "web", input="hostname\nexit\n")
    assert piped.stdout.strip().splitlines()[-1] == "web"


def test_stop_start_restart_rm(web: Booted, devhost: DevHost) -> None:
    assert devhost.hc("stop", "web").stdout.strip() == "web: stopped"
    assert instance(devhost, "web")["state"] == "stopped"
    assert unit_active(devhost, "web") in ("inactive", "unknown")
    # A clean poweroff: the guest's systemd went through shutdown.target and stopped its journal.
    logs = devhost.hc("logs", "-n", "200", "web").stdout
    assert "Reached target shutdown.target" in logs and "Journal stopped" in logs, logs
    assert devhost.hc("start", "web").stdout.strip() == "web: running"
    assert devhost.hc("exec", "web", "--", "systemctl", "is-system-running", "--wait",
                      check=False).stdout.strip() in ("running", "degraded")
    pid = devhost.hc("inspect", "web", json=True)["pid"]
    assert devhost.hc("restart", "web").stdout.strip() == "web: running"
    assert devhost.hc("inspect", "web", json=True)["pid"] != pid
    hc_fails(devhost, "rm", "web",
             message="instance web is running; stop it first or use `hc rm -f web`")
    assert unit_active(devhost, "web") == "active"
    assert devhost.hc("rm", "-f", "web").stdout.strip() == "removed web"
    assert devhost.run("systemctl", "status", "hc-web.service", check=False).returncode == 4
    assert_nothing_left(devhost, "web")


# -- command mode -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def busybox(devhost: DevHost) -> str:
    return ensure_busybox(devhost)


@pytest.fixture
def names(devhost: DevHost) -> Iterator[list[str]]:
    """Instances a test makes: removed afterwards, whatever happened."""
    made: list[str] = []
    yield made
    for name in made:
        devhost.hc("rm", "-f", name, check=False)
        assert_nothing_left(devhost, name)


def test_command_output_and_exit_status(devhost: DevHost, busybox: str,
                                        names: list[str]) -> None:
    names.append("hi")
    result = devhost.hc("run", busybox, "--name", "hi", "--", "sh", "-c", "echo hi; exit 3",
                        check=False)
    assert (result.returncode, result.stdout) == (3, "hi\n"), result.stderr
    info = devhost.hc("inspect", "hi", json=True)
    assert info["state"] == "failed" and info["exit_status"] == 3
    assert info["command"] == ["sh", "-c", "echo hi; exit 3"]
    devhost.hc("rm", "hi")  # the command has ended: no -f needed
    assert_nothing_left(devhost, "hi")


def test_a_successful_command_releases_the_callers_pipes(devhost: DevHost, busybox: str,
                                                         names: list[str]) -> None:
    # hc's stdout here is a pipe: hc must return once the command ends, not when the unit goes.
    names.append("piped")
    result = devhost.run("hc", "run", busybox, "--name", "piped", "--", "echo", "fine",
                         timeout=60)
    assert (result.returncode, result.stdout) == (0, "fine\n"), result.stderr
    info = devhost.hc("inspect", "piped", json=True)
    assert info["state"] in ("stopped", "exited") and info["exit_status"] in (0, None)
    devhost.hc("rm", "piped")
    assert_nothing_left(devhost, "piped")


def test_rm_removes_after_the_command(devhost: DevHost, busybox: str) -> None:
    result = devhost.hc("run", "--rm", busybox, "--name", "once", "--", "echo", "bye")
    assert result.stdout == "bye\n"
    assert_nothing_left(devhost, "once")


def test_detached_output_goes_to_logs(devhost: DevHost, busybox: str, names: list[str]) -> None:
    names.append("detached")
    result = devhost.hc("run", "-d", "-q", busybox, "--name", "detached", "--", "sh", "-c",
                        "echo from the background")
    assert result.stdout.strip() == "detached"
    wait_for("the detached command's output in hc logs",
             lambda: "from the background" in devhost.hc("logs", "detached").stdout)


def test_quiet_in_scripts_progress_on_request(devhost: DevHost, busybox: str,
                                             names: list[str]) -> None:
    names += ["quiet", "steps", "tty"]
    # Through pipes: the result on stdout, nothing on stderr.
    quiet = devhost.hc("run", "-d", busybox, "--name", "quiet", "--", "sleep", "600")
    assert (quiet.stdout, quiet.stderr) == ("quiet\n", "")
    # --progress: each step once, one line each.
    steps = devhost.hc("run", "-d", "--progress", busybox, "--name", "steps", "--", "sleep",
                       "600")
    lines = steps.stderr.splitlines()
    assert steps.stdout == "steps\n"
    assert len(lines) > 1 and all(line.startswith("starting steps: ") for line in lines), lines
    assert len(set(lines)) == len(lines), lines
    # A failure: one line on stderr, nothing on stdout.
    error = hc_fails(devhost, "run", "-d", busybox, "--name", "steps", "--", "true",
                     message="instance 'steps' already exists")
    assert "\n" not in error
    # On a terminal: the progress bar, redrawn in place and cleared at the end.
    status, out = run_in_pty(devhost, [*devhost.hc_argv(), "run", "-d", busybox, "--name",
                                       "tty", "--", "sleep", "600"], "", ready="")
    assert status == 0, out
    assert "\rstarting tty [" in out and out.rstrip().endswith("tty"), out


def test_image_build_is_quiet_in_scripts(devhost: DevHost) -> None:
    try:
        quiet = devhost.hc("image", "build", "busybox", "--name", "bb-quiet")
        assert quiet.stderr == "" and quiet.stdout.startswith("built image bb-quiet ("), quiet
        steps = devhost.hc("image", "build", "busybox", "--name", "bb-steps", "--progress")
        lines = steps.stderr.splitlines()
        assert lines and all(line.startswith("building bb-steps: ") for line in lines), lines
        assert len(set(lines)) == len(lines), lines
    finally:
        for name in ("bb-quiet", "bb-steps"):
            devhost.hc("image", "rm", name, check=False)


def test_env_and_binds(devhost: DevHost, busybox: str) -> None:
    source = devhost.run("mktemp", "-d").stdout.strip()
    try:
        # World-writable: the container's root is an unprivileged user on the host (user
        # namespace), so only the mount's read-only flag can stop it writing here.
        devhost.run("chmod", "777", source)
        devhost.run("sh", "-c", f"echo on the host > {source}/file")
        script = 'echo "K=$K X=$X"; cat /data/file; touch /data/$K; echo "touch: $?"'
        for mode, key, status in ((":ro", "ro", 1), ("", "rw", 0)):
            result = devhost.hc("run", "--rm", busybox, "--name", "envbind", "--env", f"K={key}",
                                "--env", "X=a b", "--bind", f"{source}:/data{mode}", "--",
                                "sh", "-c", script)
            assert result.stdout.splitlines() == [f"K={key} X=a b", "on the host",
                                                  f"touch: {status}"], result.stderr
            assert_nothing_left(devhost, "envbind")
        assert "Read-only file system" in devhost.hc(
            "run", "--rm", busybox, "--name", "envbind", "--bind", f"{source}:/data:ro", "--",
            "touch", "/data/x", check=False).stderr
        assert devhost.run("ls", source).stdout.split() == ["file", "rw"]
    finally:
        devhost.run("rm", "-rf", source)
    assert_nothing_left(devhost, "envbind")


def test_cpus_and_memory_become_unit_limits(devhost: DevHost, busybox: str,
                                            names: list[str]) -> None:
    names.append("limited")
    devhost.hc("run", "-d", "-q", busybox, "--name", "limited", "--memory", "64M", "--cpus",
               "0.5", "--", "sleep", "600")
    props = devhost.run("systemctl", "show", "hc-limited.service", "-p", "MemoryMax", "-p",
                        "CPUQuotaPerSecUSec", "-p", "Slice").stdout.split()
    assert sorted(props) == ["CPUQuotaPerSecUSec=500ms", f"MemoryMax={64 << 20}",
                             "Slice=hc.slice"]
    info = devhost.hc("inspect", "limited", json=True)
    assert (info["cpus"], info["memory"], info["state"]) == (0.5, 64 << 20, "running")


# -- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (["nope", "--name", "bad-image"], "no image named 'nope'"),
    (["busybox", "--name", "Upper"], "instance name 'Upper' is invalid"),
    (["busybox", "--name", "a" * 64], "is too long (64 characters, at most 63)"),
    (["busybox", "--name", "under_score"], "instance name 'under_score' is invalid"),
    (["busybox", "--name", "dot.ted"], "instance name 'dot.ted' is invalid"),
    (["busybox", "--name=-dash"], "instance name '-dash' is invalid"),
    (["busybox", "--name", "bad-mem", "--memory", "0"], "--memory '0' must be greater than zero"),
    (["busybox", "--name", "bad-mem", "--memory", "-1"], "--memory '-1' is not a size"),
    (["busybox", "--name", "bad-mem", "--memory", "10Q"], "--memory '10Q' is not a size"),
    (["busybox", "--name", "bad-mem", "--memory", "1K"], "--memory 1.0K is too small"),
    (["busybox", "--name", "bad-mem", "--memory", "64T"], "is more than this host has"),
    (["busybox", "--name", "bad-cpus", "--cpus", "0"], "is invalid: give a number of CPUs"),
    (["busybox", "--name", "bad-cpus", "--cpus", "-1"], "is invalid: give a number of CPUs"),
    (["busybox", "--name", "bad-cpus", "--cpus", "1000"], "--cpus 1000 is more than this host"),
    (["busybox", "--name", "bad-bind", "--bind", "/nonexistent-hc:/data"],
     "--bind source /nonexistent-hc does not exist on the host"),
])
def test_bad_run_leaves_nothing(devhost: DevHost, busybox: str, args: list[str],
                                message: str) -> None:
    before = host_state(devhost)
    hc_fails(devhost, "run", "-q", *args, "--", "true", message=message)
    assert host_state(devhost) == before


def test_cpus_that_are_not_a_number_is_a_usage_error(devhost: DevHost, busybox: str) -> None:
    before = host_state(devhost)
    hc_fails(devhost, "run", busybox, "--name", "bad-cpus", "--cpus", "lots", "--", "true",
             message="invalid float value: 'lots'", code=2)
    assert host_state(devhost) == before


def test_duplicate_name(devhost: DevHost, busybox: str, names: list[str]) -> None:
    names.append("dup")
    devhost.hc("run", "-d", "-q", busybox, "--name", "dup", "--", "sleep", "600")
    pid = devhost.hc("inspect", "dup", json=True)["pid"]
    before = host_state(devhost)
    hc_fails(devhost, "run", "-q", busybox, "--name", "dup", "--", "true",
             message="instance 'dup' already exists")
    assert host_state(devhost) == before
    info = devhost.hc("inspect", "dup", json=True)  # the first one is untouched
    assert (info["state"], info["pid"], info["command"]) == ("running", pid, ["sleep", "600"])


@pytest.mark.parametrize("args", [
    ["exec", "ghost", "--", "true"], ["shell", "ghost"], ["stop", "ghost"], ["start", "ghost"],
    ["restart", "ghost"], ["rm", "ghost"], ["rm", "-f", "ghost"], ["logs", "ghost"],
    ["inspect", "ghost"],
])
def test_unknown_instance(devhost: DevHost, args: list[str]) -> None:
    before = host_state(devhost)
    hc_fails(devhost, *args, message="no instance named 'ghost'; see `hc ls`")
    assert host_state(devhost) == before


def test_rm_of_a_running_container_needs_force(devhost: DevHost, busybox: str,
                                               names: list[str]) -> None:
    names.append("busy")
    devhost.hc("run", "-d", "-q", busybox, "--name", "busy", "--", "sleep", "600")
    hc_fails(devhost, "rm", "busy",
             message="instance busy is running; stop it first or use `hc rm -f busy`")
    assert instance(devhost, "busy")["state"] == "running"
    assert unit_active(devhost, "busy") == "active"


def test_an_image_without_systemd_cannot_boot(devhost: DevHost, busybox: str) -> None:
    before = host_state(devhost)
    hc_fails(devhost, "run", "-q", busybox, "--name", "noinit",
             message="image 'busybox' cannot boot: it has no systemd init")
    assert host_state(devhost) == before


def test_an_init_that_fails_shows_the_guests_last_lines(devhost: DevHost, busybox: str) -> None:
    tree = devhost.run("mktemp", "-d").stdout.strip()
    try:
        # A copy of busybox whose systemd (and so /sbin/init) is a script that exits 1.
        devhost.run("cp", "-a", f"{POOL}/images/{busybox}/.", tree)
        devhost.run("mkdir", "-p", f"{tree}/usr/lib/systemd")
        devhost.run("sh", "-c", f"cat > {tree}/usr/lib/systemd/systemd", input=BROKEN_INIT)
        devhost.run("chmod", "755", f"{tree}/usr/lib/systemd/systemd")
        devhost.run("ln", "-sfn", "/usr/lib/systemd/systemd", f"{tree}/sbin/init")
        devhost.hc("image", "import", "brokeninit", tree, "-q")
    finally:
        devhost.run("rm", "-rf", tree)
    try:
        before = host_state(devhost)
        error = hc_fails(devhost, "run", "-q", "brokeninit", "--name", "broken",
                         message="hc-broken.service failed to start")
        assert "last log lines:" in error and "guest init is broken" in error
        assert host_state(devhost) == before
        assert_nothing_left(devhost, "broken")
    finally:
        devhost.hc("image", "rm", "brokeninit")


# -- the agent can die, the host can reboot: a dev host of this module's own ---------------------

@pytest.fixture(scope="module")
def host(private_devhost: DevHost) -> DevHost:
    private_devhost.hc("image", "build", "busybox", "-q")
    return private_devhost


@pytest.fixture(scope="module")
def host_debian(host: DevHost, devhost: DevHost, debian_image: str) -> str:
    """The session's Debian image, copied into ``host`` (see cli_checks.copy_image)."""
    copy_image(devhost, host, debian_image)
    return debian_image


@pytest.fixture
def host_names(host: DevHost) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    if made:
        host.hc("rm", "-f", *made, check=False)
    for name in made:
        assert_nothing_left(host, name)


def agent_pid(host: DevHost) -> int:
    return int(host.run("systemctl", "show", "-p", "MainPID", "--value",
                        "hcd.service").stdout.strip())


def test_killing_the_agent_stops_nothing(host: DevHost, host_debian: str,
                                         host_names: list[str]) -> None:
    host_names += ["booted", "sleeper"]
    host.hc("run", "-q", host_debian, "--name", "booted")
    host.hc("run", "-d", "-q", "busybox", "--name", "sleeper", "--", "sleep", "600")
    before = {name: host.hc("inspect", name, json=True)["pid"] for name in host_names}
    old = agent_pid(host)
    since = host.run("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    # --kill-who=main: on this machine's cgroup v1 hierarchy, signalling the whole cgroup
    # reports EIO; the agent is its only process anyway.
    host.run("systemctl", "kill", "--kill-who=main", "-s", "SIGKILL", "hcd.service")
    wait_for("the agent to die", lambda: host.run("test", "-e", f"/proc/{old}",
                                                  check=False).returncode != 0)
    assert [unit_active(host, name) for name in host_names] == ["active", "active"]
    # The next command finds the agent again (socket activation, or its Restart=), and the
    # new agent adopted both.
    listing = {i["name"]: i["state"] for i in host.hc("ls", json=True)}
    assert listing == {"booted": "running", "sleeper": "running"}
    assert agent_pid(host) not in (0, old)
    assert {name: host.hc("inspect", name, json=True)["pid"] for name in host_names} == before
    journal = host.run("journalctl", "-u", "hcd.service", "--since", since, "-o", "cat").stdout
    assert "reconcile instances: adopted: booted, sleeper" in journal, journal
    assert host.hc("exec", "booted", "--", "cat", "/etc/hostname").stdout == "booted\n"


def test_restart_always_comes_back_after_a_reboot(host: DevHost, host_debian: str,
                                                  host_names: list[str]) -> None:
    host_names += ["keeper", "keepcmd", "plain"]
    assert host.run("systemctl", "is-enabled", "hcd.service").stdout.strip() == "enabled"
    host.hc("run", "-q", host_debian, "--name", "keeper", "--restart", "always")
    host.hc("run", "-d", "-q", "busybox", "--name", "keepcmd", "--restart", "always", "--",
            "sleep", "600")
    host.hc("run", "-q", host_debian, "--name", "plain")
    devhosts.reboot(host.name)
    # Before any hc command: the agent started at boot and brought the two back.
    assert host.run("systemctl", "is-active", "hcd.service").stdout.strip() == "active"
    assert [unit_active(host, n) for n in host_names] == ["active", "active", "inactive"]
    listing = {i["name"]: i["state"] for i in host.hc("ls", json=True)}
    assert listing == {"keeper": "running", "keepcmd": "running", "plain": "stopped"}
    assert host.hc("exec", "keeper", "--", "systemctl", "is-system-running", "--wait",
                   check=False).stdout.strip() in ("running", "degraded")
    assert host.hc("start", "plain").stdout.strip() == "plain: running"


# -- crash consistency ----------------------------------------------------------------------------

def state_row(host: DevHost, name: str) -> str | None:
    script = ("import sqlite3, sys; db = sqlite3.connect(sys.argv[1]); "
              "row = db.execute('SELECT phase FROM instances WHERE name = ?', "
              "(sys.argv[2],)).fetchone(); print(row[0] if row else '')")
    return host.run(host.python, "-c", script, STATE_DB, name).stdout.strip() or None


# What each crash point leaves: (row phase, dataset, hostname written, unit active)
HALF_MADE = {
    "record": ("creating", False, False, False),
    "dataset": ("creating", True, False, False),
    "identity": ("creating", True, True, False),
    "unit": ("creating", True, True, True),
}


@pytest.mark.parametrize("step", list(HALF_MADE))
def test_a_crash_while_creating_is_cleaned_up(host: DevHost, host_names: list[str],
                                              step: str) -> None:
    host_names.append("crashed")
    set_crash_point(host, step)
    try:
        hc_fails(host, "run", "-d", "-q", "busybox", "--name", "crashed", "--", "sleep", "600",
                 message="lost the connection to the agent")
        assert host.run("systemctl", "is-active", "hcd.service",
                        check=False).stdout.strip() in ("failed", "inactive")
        hostname = host.run("cat", f"{POOL}/instances/crashed/etc/hostname",
                            check=False).stdout.strip()
        left = (state_row(host, "crashed"),
                host.run("test", "-d", f"{POOL}/instances/crashed", check=False).returncode == 0,
                hostname == "crashed", unit_active(host, "crashed") == "active")
        assert left == HALF_MADE[step]
    finally:
        set_crash_point(host, None)
    # The next command starts the agent through its socket; its reconcile pass removes it all.
    assert "crashed" not in {i["name"] for i in host.hc("ls", json=True)}
    assert state_row(host, "crashed") is None
    assert_nothing_left(host, "crashed")
    journal = host.run("journalctl", "-u", "hcd.service", "-n", "20", "-o", "cat").stdout
    assert "reconcile instances: removed half made: crashed" in journal
    # The name is free again.
    host.hc("run", "-d", "-q", "busybox", "--name", "crashed", "--", "sleep", "600")
    assert instance(host, "crashed")["state"] == "running"


def test_a_crash_after_the_last_step_leaves_a_finished_instance(host: DevHost,
                                                                host_names: list[str]) -> None:
    host_names.append("finished")
    set_crash_point(host, "ready")
    try:
        hc_fails(host, "run", "-d", "-q", "busybox", "--name", "finished", "--", "sleep", "600",
                 message="lost the connection to the agent")
        assert state_row(host, "finished") == "ready"
    finally:
        set_crash_point(host, None)
    assert instance(host, "finished")["state"] == "running"  # adopted, not removed


# -- scale ----------------------------------------------------------------------------------------

TIMING_SCRIPT = """
import json, subprocess, sys, time
times = []
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    subprocess.run(sys.argv[3:], check=True, stdout=subprocess.DEVNULL)
    times.append(time.perf_counter() - start)
print(json.dumps(times))
"""


def time_command(host: DevHost, argv: list[str], runs: int = 10) -> list[float]:
    """Wall times of ``argv`` run inside ``host`` (timed there: no nsenter in the figure)."""
    out = host.run(host.python, "-c", TIMING_SCRIPT, "-", str(runs), *argv).stdout
    return [float(t) for t in json.loads(out)]


def agent_memory(host: DevHost) -> tuple[int, str]:
    """The agent's resident set (kB, from /proc: MemoryCurrent needs cgroup v2 memory
    accounting) and what systemd says of MemoryCurrent."""
    pid = agent_pid(host)
    status = host.run("cat", f"/proc/{pid}/status").stdout
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    rss = int(match.group(1))
    current = host.run("systemctl", "show", "-p", "MemoryCurrent", "--value",
                       "hcd.service").stdout.strip()
    return rss, current


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def test_a_hundred_containers(host: DevHost, host_names: list[str]) -> None:
    names = [f"scale{i:03d}" for i in range(SCALE_COUNT)]
    host_names += names
    host.hc("ls")  # the agent is up
    rss_before, _ = agent_memory(host)
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda n: host.hc("run", "-d", "-q", "busybox", "--name", n,
                                                  "--", "sleep", "600", check=False), names))
    created = time.monotonic() - start
    assert [r.returncode for r in results] == [0] * SCALE_COUNT, [
        r.stderr for r in results if r.returncode][:3]
    listing = {i["name"]: i["state"] for i in host.hc("ls", json=True)}
    assert listing == dict.fromkeys(names, "running")
    running = host.run("systemctl", "list-units", "--state=active", "--plain", "--no-legend",
                       "hc-scale*").stdout.splitlines()
    assert len(running) == SCALE_COUNT

    hc = host.hc_argv()
    table = time_command(host, [*hc, "ls"])
    as_json = time_command(host, [*hc, "ls", "--json"])
    rss, current = agent_memory(host)
    start = time.monotonic()
    host.hc("rm", "-f", *names)
    removed = time.monotonic() - start
    host_names.clear()
    assert host.hc("ls", json=True) == []
    assert host_state(host) == HostState(frozenset(), frozenset(), frozenset())

    figures = {
        "hc ls, p50 of 10": ms(statistics.median(table)),
        "hc ls, min / max": f"{ms(min(table))} / {ms(max(table))}",
        "hc ls --json, p50 of 10": ms(statistics.median(as_json)),
        "agent VmRSS before / with 100": f"{rss_before} kB / {rss} kB",
        "agent MemoryCurrent (systemd)": current,
        "create 100 (`hc run -d`, 8 at a time)": f"{created:.1f} s",
        "remove 100 (one `hc rm -f`)": f"{removed:.1f} s",
    }
    lines = [f"# {SCALE_COUNT} containers in one dev host",
             "",
             f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M UTC}. Command: "
             f"`{sys.executable} -m pytest "
             "tests/system/test_cli_instances.py::test_a_hundred_containers`",
             f"({SCALE_COUNT} busybox command containers `hc run -d busybox -- sleep 600`; "
             "times measured inside the dev host, on a shared 2-core machine: noisy).",
             "",
             "| what | figure |", "|---|---|"]
    lines += [f"| {what} | {figure} |" for what, figure in figures.items()]
    SCALE_RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
