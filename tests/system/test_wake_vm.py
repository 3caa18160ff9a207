"""Sleeping VMs (`hc run --vm --idle`) in a dev host of this module's own: real qemu (TCG
here), libvirtd, nftables, conntrack and hc-wake's socket activation.

The guest that answers is the Debian VM image's own sshd (port 22; its banner is the answer),
which every boot starts: nothing is set up in the guest, and a woken guest answers as a freshly
booted one does. TCG boots are slow, so boots are few: the microVM boots three times (`hc
run`, then two wakes), the q35 VM twice (`hc run`, one wake).

    microvm  made running; sleeps after its idle time (a clean poweroff: the guest's own
             "Power down", nothing killed); a connection to its published port wakes it and
             the guest answers; `hc stop` puts it to sleep at once, cleanly, and a connection
             to its own address wakes it again; an open connection keeps it awake past its
             idle time, and once it closes the VM sleeps
    q35      `hc stop` puts it to sleep with an ACPI shutdown (libvirt says "shutdown", never
             "destroyed"); a connection to its published port wakes it and the guest answers
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_checks import copy_image, hold_a_connection, wait_for
from libvirt_host import require_libvirtd

from homecloud.devhost import DevHost
from homecloud.instances.drivers.domainxml import domain_name
from homecloud.instances.drivers.qemu import QEMU

pytestmark = pytest.mark.system

IMAGE = "debian-vm"
MICRO = "sleepy"
Q35 = "sleepyq"
MICRO_PORT = 2222  # published host port -> the guest's sshd (22)
Q35_PORT = 2223
SSH_PORT = 22
IDLE = 15  # seconds: the microVM's --idle
BOOT_TIMEOUT = 300  # `hc run` of a VM under TCG on a loaded machine
WAKE_TIMEOUT = 240  # a first connection waits this long at most for the guest's answer
# After its idle time: the idle check's tick, the guest's poweroff, a loaded machine.
SLEEP_MARGIN = 60
SSH_BANNER = "SSH-2.0-OpenSSH"
PROBE = Path(__file__).with_name("netprobe.py")


@dataclass(frozen=True)
class Sleeper:
    name: str
    port: int  # its published host port
    made_after: str  # journal_mark() before `hc run`


# -- fixtures and checks --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def host(private_devhost: DevHost, devhost: DevHost, vm_image_build: Any) -> DevHost:
    """The module's dev host with the session's Debian VM image in its pool."""
    if shutil.which(QEMU) is None:
        pytest.skip(f"VMs need {QEMU} (apt-get install --no-install-recommends "
                    "qemu-system-x86)")
    if private_devhost.address is None:
        pytest.skip("this dev host shares the machine's network; --idle needs its own")
    if private_devhost.run("test", "-c", "/dev/net/tun", check=False).returncode != 0:
        pytest.skip("the dev host has no /dev/net/tun: a VM's tap needs it")
    copy_image(devhost, private_devhost, IMAGE)
    return private_devhost


@pytest.fixture(scope="module")
def microvm(host: DevHost) -> Iterator[Sleeper]:
    """A microVM with --idle, booted by `hc run`."""
    mark = journal_mark(host)
    host.hc("run", IMAGE, "--vm", "--name", MICRO, "--idle", f"{IDLE}s", "-p",
            f"{MICRO_PORT}:{SSH_PORT}", "--memory", "512M", "--cpus", "2", "-q",
            timeout=BOOT_TIMEOUT)
    yield Sleeper(MICRO, MICRO_PORT, mark)
    host.hc("rm", "-f", MICRO, check=False, timeout=120)


@pytest.fixture(scope="module")
def q35vm(host: DevHost) -> Iterator[Sleeper]:
    """A q35 VM through libvirt with an idle time longer than the test: `hc stop` sleeps it."""
    require_libvirtd(host)
    mark = journal_mark(host)
    host.hc("run", IMAGE, "--vm", "--machine", "q35", "--name", Q35, "--idle", "10m", "-p",
            f"{Q35_PORT}:{SSH_PORT}", "--memory", "512M", "--cpus", "2", "-q",
            timeout=BOOT_TIMEOUT)
    yield Sleeper(Q35, Q35_PORT, mark)
    host.hc("rm", "-f", Q35, check=False, timeout=120)


def state(host: DevHost, name: str) -> str:
    return str(host.hc("inspect", name, json=True)["state"])


def listed_state(host: DevHost, name: str) -> str:
    """The state `hc ls` shows on the VM's row."""
    listing = host.hc("ls").stdout.splitlines()
    header, rows = listing[0].split(), [line.split() for line in listing[1:]]
    return next(row[header.index("STATE")] for row in rows if row[0] == name)


def asleep(host: DevHost, name: str, timeout: float) -> None:
    wait_for(f"{name} asleep", lambda: state(host, name) == "sleeping", timeout=timeout)


def put_to_sleep(host: DevHost, name: str) -> None:
    """`hc stop`: asleep when it returns. The idle check may be putting it to sleep at the
    same moment; then the agent says a stop is under way, and it is asleep soon after."""
    result = host.hc("stop", name, check=False, timeout=120)
    if result.returncode == 0:
        assert state(host, name) == "sleeping"  # at once
        return
    assert "is under way" in result.stderr, result.stderr
    asleep(host, name, timeout=SLEEP_MARGIN)


def qemu_runs(host: DevHost, name: str) -> bool:
    """Whether a qemu process runs instance ``name`` (microvm: `-name NAME,...`; through
    libvirt: `-name guest=hc-NAME,...`)."""
    for line in host.run("ps", "-eo", "args=").stdout.splitlines():
        argv = line.split()
        if not argv or not Path(argv[0]).name.startswith("qemu-system") or "-name" not in argv:
            continue
        given = argv[argv.index("-name") + 1].split(",")[0].removeprefix("guest=")
        if given in (name, domain_name(name)):
            return True
    return False


def journal_mark(host: DevHost) -> str:
    """Now, as journalctl's --since takes it: a time rather than a cursor, which finds
    nothing once the journal has rotated its file away (guests' consoles write much)."""
    return "@" + host.run("date", "+%s").stdout.strip()


def journal_since(host: DevHost, unit: str, mark: str) -> str:
    return host.run("journalctl", f"--since={mark}", "-u", unit, "-o", "cat").stdout


def journal_shows(host: DevHost, unit: str, mark: str, text: str) -> str:
    """The unit's journal since ``mark`` once it shows ``text`` (journald may lag behind a
    loaded machine by a few seconds)."""
    def showing() -> str | None:
        journal = journal_since(host, unit, mark)
        return journal if text in journal else None
    return str(wait_for(f"{text!r} in {unit}'s journal", showing, timeout=30))


def assert_idle_check_put_it_to_sleep(host: DevHost, name: str, mark: str) -> None:
    journal_shows(host, "hc-wake.service", mark,
                  f"wake: {name} has had no connection open for its idle time")


def assert_nothing_killed(host: DevHost, name: str, mark: str) -> str:
    """Since ``mark``, systemd never had to kill what hc-NAME.service runs, nor did its
    stop time out; its journal since then."""
    journal = journal_since(host, f"hc-{name}.service", mark)
    for unclean in ("Killing process", "Failed with result", "did not power off"):
        assert unclean not in journal, journal[-3000:]
    return journal


def assert_powered_off_cleanly(host: DevHost, name: str, mark: str) -> None:
    """The microVM's one stop since ``mark`` was the guest's own poweroff (QMP power
    button; the serial console is the unit's journal), not systemd killing qemu."""
    journal_shows(host, f"hc-{name}.service", mark, "reboot: Power down")
    journal = assert_nothing_killed(host, name, mark)
    assert journal.count("reboot: Power down") == 1, journal[-3000:]


def assert_guest_answers(host: DevHost, address: str, port: int) -> None:
    """A TCP connection to ``address``:``port`` is taken (never refused or reset), waits while
    the VM wakes, and gets the guest's sshd banner."""
    result = host.run(host.python, str(PROBE), "connect-tcp", address, str(port),
                      str(WAKE_TIMEOUT), check=False, timeout=WAKE_TIMEOUT + 30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(SSH_BANNER), result.stdout


# -- a microVM ------------------------------------------------------------------------------------

def test_a_microvm_made_with_idle_sleeps_after_its_idle_time_with_a_clean_poweroff(
        host: DevHost, microvm: Sleeper) -> None:
    mark = microvm.made_after
    info = host.hc("inspect", microvm.name, json=True)
    assert (info["kind"], info["idle"]) == ("vm", IDLE)
    asleep(host, microvm.name, timeout=IDLE + SLEEP_MARGIN)
    assert listed_state(host, microvm.name) == "sleeping"
    assert not qemu_runs(host, microvm.name)
    assert host.run("systemctl", "is-active", f"hc-{microvm.name}.service",
                    check=False).stdout.strip() != "active"
    assert_idle_check_put_it_to_sleep(host, microvm.name, mark)
    assert_powered_off_cleanly(host, microvm.name, mark)


def test_a_connection_to_its_published_port_wakes_it_and_the_guest_answers(
        host: DevHost, microvm: Sleeper) -> None:
    asleep(host, microvm.name, timeout=IDLE + SLEEP_MARGIN)
    assert_guest_answers(host, "127.0.0.1", microvm.port)
    assert state(host, microvm.name) == "running"
    assert qemu_runs(host, microvm.name)


def test_stop_puts_it_to_sleep_at_once_cleanly_and_its_own_address_wakes_it(
        host: DevHost, microvm: Sleeper) -> None:
    if state(host, microvm.name) != "running":
        host.hc("start", microvm.name, timeout=BOOT_TIMEOUT)
    mark = journal_mark(host)
    put_to_sleep(host, microvm.name)
    assert not qemu_runs(host, microvm.name)
    assert_powered_off_cleanly(host, microvm.name, mark)
    address = host.hc("inspect", microvm.name, json=True)["ipv4"]
    assert_guest_answers(host, address, SSH_PORT)
    assert state(host, microvm.name) == "running"


def test_an_open_connection_keeps_it_awake_and_once_closed_it_sleeps(
        host: DevHost, microvm: Sleeper) -> None:
    if state(host, microvm.name) != "running":
        host.hc("start", microvm.name, timeout=BOOT_TIMEOUT)
    mark = journal_mark(host)
    address = host.hc("inspect", microvm.name, json=True)["ipv4"]
    held = IDLE + 8
    hold_a_connection(host, "wakevm-hold", address, SSH_PORT, held)
    time.sleep(IDLE + 4)
    assert state(host, microvm.name) == "running"
    asleep(host, microvm.name, timeout=held + IDLE + SLEEP_MARGIN)
    assert host.run("systemctl", "is-active", "wakevm-hold.service",
                    check=False).stdout.strip() != "active"
    assert_idle_check_put_it_to_sleep(host, microvm.name, mark)
    assert_powered_off_cleanly(host, microvm.name, mark)


# -- a q35 VM through libvirt -----------------------------------------------------------------

def test_a_q35_vm_sleeps_by_acpi_shutdown_and_a_connection_wakes_it(
        host: DevHost, q35vm: Sleeper) -> None:
    def powered_down() -> int:  # the guest's own last words, in its serial console's log
        logs = host.hc("logs", "-n", "100000", q35vm.name).stdout
        return logs.count("reboot: Power down")

    before = powered_down()
    put_to_sleep(host, q35vm.name)
    assert listed_state(host, q35vm.name) == "sleeping"
    assert not qemu_runs(host, q35vm.name)
    domain = domain_name(q35vm.name)
    reason = host.run("virsh", "--connect", "qemu:///system", "domstate", "--reason",
                      domain).stdout.strip()
    assert reason == "shut off (shutdown)"  # the guest powered off; not "(destroyed)"
    assert powered_down() == before + 1
    assert_nothing_killed(host, q35vm.name, q35vm.made_after)
    assert_guest_answers(host, "127.0.0.1", q35vm.port)
    assert state(host, q35vm.name) == "running"
    assert qemu_runs(host, q35vm.name)
