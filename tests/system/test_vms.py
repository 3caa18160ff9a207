"""microVMs end to end (issue 10): the real `hc` CLI against the real agent, systemd, btrfs pool,
bridge, nftables and DNS server of a dev host of this module's own, with real qemu (TCG here).

The Debian VM image is built once per session in the session dev host (tests/conftest.py) and
copied into this module's (btrfs send | receive, seconds). A guest boot under TCG takes 10-40 s
on this machine kind, so ONE VM serves the module's tests and boots three times (`hc run`, then
`hc start` after a clean `hc stop`, then on its own when the dev host reboots: it runs with
`--restart always`); the guest that never becomes ready is cut off a few seconds into its
boot. Every other bad input is
refused before anything is made. Each check of "nothing left" covers the unit, the dataset, the
listing, the VM's runtime directory and the whole network state (links, so its tap, leases,
published ports, firewall rules, DNS records).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from browser import save_screenshot
from cli_checks import (
    assert_nothing_left,
    copy_image,
    hc_fails,
    set_crash_point,
    wait_for,
)
from console_pages import add_door_user, open_console_page, terminal_text
from netstate import NetworkState, network_state

from homecloud import devhost as devhosts
from homecloud.devhost import DevHost
from homecloud.instances.drivers.qemu import QEMU, QEMU_PACKAGE, runtime_subdir

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.system
pytest_plugins = ("browser",)

IMAGE = "debian-vm"
NAME = "vm1"
PUBLISHED = (8080, 80)  # host port -> guest port
BOOT_TIMEOUT = 300.0  # a TCG boot takes 10-40 s here; a hung one must not hang the suite
PROBE = Path(__file__).with_name("netprobe.py")
SERVICE_SET_OVERRIDE = "/etc/homecloud/service-sets/vm.yaml"
SHIPPED_SERVICE_SET = Path(__file__).parents[2] / "service-sets" / "vm.yaml"
NOT_READY_TIMEOUT = 3  # seconds: the guest is still in its kernel by then
NO_QEMU_DROPIN = "/run/systemd/system/hcd.service.d/no-qemu.conf"
DOOR_USER = "vm_console_user"  # a front-door user, for the console in the browser
DOOR_PASSWORD = "vm console password"


# -- fixtures and checks --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def host(private_devhost: DevHost, devhost: DevHost, vm_image_build: Any) -> DevHost:
    """The module's dev host with the session's Debian VM image in its pool."""
    if shutil.which(QEMU) is None:
        pytest.skip(f"microVMs need {QEMU} (apt-get install --no-install-recommends "
                    "qemu-system-x86)")
    if shutil.which("debootstrap") is None:
        pytest.skip("building the VM image needs debootstrap (apt-get install debootstrap)")
    if private_devhost.run("test", "-c", "/dev/net/tun", check=False).returncode != 0:
        pytest.skip("the dev host has no /dev/net/tun: a VM's tap needs it")
    copy_image(devhost, private_devhost, IMAGE)
    return private_devhost


def runtime_dir_exists(host: DevHost, name: str) -> bool:
    return host.run("test", "-e", f"/run/{runtime_subdir(name)}", check=False).returncode == 0


@contextmanager
def nothing_left_of(host: DevHost, name: str, before: NetworkState | None = None
                    ) -> Iterator[None]:
    """Whatever the block does, afterwards ``name`` has no unit, dataset, listing or runtime
    directory and the network is as it was (``before``, or as it is on entry)."""
    before = before or network_state(host)
    yield
    assert_nothing_left(host, name)
    assert not runtime_dir_exists(host, name)
    assert network_state(host) == before


@dataclass(frozen=True)
class BootedVm:
    name: str
    network_before: NetworkState  # the host's network before the VM was made


@pytest.fixture(scope="module")
def vm(host: DevHost) -> Iterator[BootedVm]:
    """vm1, booted once for the module: `hc run` returns when the guest is READY."""
    before = network_state(host)
    host.hc("run", IMAGE, "--vm", "--name", NAME, "--memory", "512M", "--cpus", "2",
            "-p", f"{PUBLISHED[0]}:{PUBLISHED[1]}", "--restart", "always", "-q",
            timeout=BOOT_TIMEOUT)
    yield BootedVm(NAME, before)
    host.hc("rm", "-f", NAME, check=False, timeout=120)


def guest(host: DevHost, *argv: str, check: bool = True) -> str:
    """Run ``argv`` in vm1 through `hc exec` (the guest agent); its output."""
    return host.hc("exec", NAME, "--", *argv, check=check, timeout=60).stdout


def network(host: DevHost) -> dict[str, Any]:
    info: dict[str, Any] = host.hc("network", "ls", json=True)
    return info


def instance(host: DevHost, name: str) -> dict[str, Any]:
    return {i["name"]: i for i in host.hc("ls", json=True)}[name]


def unit_pid(host: DevHost, name: str) -> int:
    return int(host.run("systemctl", "show", "-p", "MainPID", "--value",
                        f"hc-{name}.service").stdout)


# -- bad input: refused before anything is made ---------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    (("--memory", "64M"), "--memory 64M is too small: a VM's kernel needs at least 128M"),
    (("--memory", "999G"), "--memory 999G is more than this host has"),
    (("--cpus", "64"), "--cpus 64 is more than this host has"),
    (("--uefi",), "--uefi needs a full PC: add --machine q35"),
    (("--tpm",), "--tpm needs a full PC: add --machine q35"),
    (("--cdrom", "/etc/hostname"), "--cdrom needs a full PC: add --machine q35"),
    (("--uefi", "--tpm"), "--uefi, --tpm need a full PC: add --machine q35"),
    (("--", "true"), "a VM boots; it does not run a command in place of its init"),
])
def test_bad_input_is_refused_and_leaves_nothing(host: DevHost, args: tuple[str, ...],
                                                 message: str) -> None:
    with nothing_left_of(host, "bad"):
        error = hc_fails(host, "run", IMAGE, "--vm", "--name", "bad", *args, message=message)
    assert "\n" not in error


def test_an_unknown_machine_is_a_usage_error(host: DevHost) -> None:
    with nothing_left_of(host, "bad"):
        error = hc_fails(host, "run", IMAGE, "--vm", "--name", "bad", "--machine", "nosuch",
                         code=2)
    assert "invalid choice: 'nosuch' (choose from 'microvm', 'q35')" in error


def test_a_container_image_is_not_a_vm_image(host: DevHost) -> None:
    if not any(i["name"] == "busybox" for i in host.hc("image", "ls", json=True)):
        host.hc("image", "build", "busybox", "-q")
    with nothing_left_of(host, "bad"):
        hc_fails(host, "run", "busybox", "--vm", "--name", "bad",
                 message="image 'busybox' is not a VM image (it is a container's tree): "
                         "build one with `hc image build debian --vm`")


@contextmanager
def qemu_hidden_from_the_agent(host: DevHost) -> Iterator[None]:
    """The agent restarted with qemu's binary inaccessible in its mount namespace (systemd's
    InaccessiblePaths=), as on a host without the package; put back afterwards."""
    host.run("mkdir", "-p", str(Path(NO_QEMU_DROPIN).parent))
    host.run("tee", NO_QEMU_DROPIN, input=f"[Service]\nInaccessiblePaths=-/usr/bin/{QEMU}\n")
    host.run("systemctl", "daemon-reload")
    host.run("systemctl", "restart", "hcd.service")
    try:
        yield
    finally:
        host.run("rm", "-f", NO_QEMU_DROPIN)
        host.run("systemctl", "daemon-reload")
        host.run("systemctl", "restart", "hcd.service")


def test_without_qemu_a_vm_is_refused_naming_the_package(host: DevHost) -> None:
    with nothing_left_of(host, "bad"), qemu_hidden_from_the_agent(host):
        error = hc_fails(host, "run", IMAGE, "--vm", "--name", "bad", code=3)
    assert error == (f"{QEMU} is not installed on this host: apt-get install {QEMU_PACKAGE}")
    # Only the agent's view was changed: qemu is back for it.
    assert host.run("test", "-x", f"/usr/bin/{QEMU}", check=False).returncode == 0


@contextmanager
def start_timeout(host: DevHost, seconds: float) -> Iterator[None]:
    """The VM service set with the start step's timeout cut to ``seconds`` (a file in
    /etc/homecloud/service-sets overrides the shipped one; read on every creation)."""
    composition = yaml.safe_load(SHIPPED_SERVICE_SET.read_text())
    for step in composition["steps"]:
        if step["action"] == "start-unit":
            step["with"] = {"timeout": seconds}
    host.run("mkdir", "-p", str(Path(SERVICE_SET_OVERRIDE).parent))
    host.run("tee", SERVICE_SET_OVERRIDE, input=yaml.safe_dump(composition))
    try:
        yield
    finally:
        host.run("rm", "-f", SERVICE_SET_OVERRIDE)


def test_a_guest_that_never_becomes_ready_fails_with_its_console_and_leaves_nothing(
        host: DevHost) -> None:
    with nothing_left_of(host, "slow"), start_timeout(host, NOT_READY_TIMEOUT):
        result = host.hc("run", IMAGE, "--vm", "--name", "slow", "-p", "8081:80", "-q",
                         check=False, timeout=120)
    assert result.returncode != 0 and result.stdout == ""
    first, *console = result.stderr.splitlines()
    assert first == ("hc: VM slow did not become ready within the start timeout; last log "
                     "lines:"), result.stderr
    # The console's last lines: the kernel's, timestamped, a few seconds into its boot.
    assert any(re.search(r"\[ *\d+\.\d+\] ", line) for line in console), result.stderr


# -- crash safety -----------------------------------------------------------------------------

@pytest.mark.parametrize("step", ["tap", "identity"])
def test_a_crash_while_creating_a_vm_is_cleaned_up(host: DevHost, step: str) -> None:
    with nothing_left_of(host, "crashed"):
        set_crash_point(host, step)
        try:
            hc_fails(host, "run", IMAGE, "--vm", "--name", "crashed", "-p", "8082:80",
                     message="lost the connection to the agent")
        finally:
            set_crash_point(host, None)
        # The next command starts the agent through its socket; its reconcile pass removes
        # what the crash left (checked on leaving the block).
        host.hc("ls")
    journal = host.run("journalctl", "-u", "hcd.service", "-n", "30", "-o", "cat").stdout
    assert "reconcile instances: removed half made: crashed" in journal


# -- one booted VM ----------------------------------------------------------------------------

def test_the_vm_is_listed_running_with_its_addresses(host: DevHost, vm: BootedVm) -> None:
    listed = instance(host, vm.name)
    assert (listed["kind"], listed["state"], listed["image"]) == ("vm", "running", IMAGE)
    assert listed["ipv4"] and listed["ipv6"]
    assert listed["ports"]
    # systemd owns qemu: the unit's main process is it, in homecloud's slice.
    pid = unit_pid(host, vm.name)
    assert host.run("cat", f"/proc/{pid}/comm").stdout.strip().startswith("qemu-system")
    assert host.run("systemctl", "show", "-p", "Slice", "--value",
                    f"hc-{vm.name}.service").stdout.strip() == "hc.slice"
    # The guest has the addresses it is listed with.
    addresses = guest(host, "ip", "-o", "addr", "show", "dev", "eth0")
    assert f" {listed['ipv4']}/" in addresses and f" {listed['ipv6']}/" in addresses


def test_the_vm_name_resolves_through_hc_dns(host: DevHost, vm: BootedVm) -> None:
    assert_name_resolves(host, vm)


def assert_name_resolves(host: DevHost, vm: BootedVm) -> None:
    info = network(host)
    fqdn = f"{vm.name}.{info['zone']}"
    listed = instance(host, vm.name)
    for qtype, address in (("A", listed["ipv4"]), ("AAAA", listed["ipv6"])):
        answer = host.run("dig", "+short", f"@{info['gateway4']}", fqdn, qtype).stdout
        assert answer.split() == [address]


def test_exec_runs_in_the_guest_through_its_agent(host: DevHost, vm: BootedVm) -> None:
    assert guest(host, "cat", "/etc/hostname") == f"{vm.name}\n"
    result = host.hc("exec", vm.name, "--", "sh", "-c", "echo out; echo err >&2; exit 7",
                     check=False, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (7, "out\n", "err\n")


def test_shell_refuses_a_terminal_naming_the_console_and_runs_a_piped_script(
        host: DevHost, vm: BootedVm) -> None:
    hc = " ".join(host.hc_argv())
    # script(1) gives `hc shell` a terminal for its stdin, as a user typing it has.
    on_terminal = host.run("script", "-qec", f"{hc} shell {vm.name}", "/dev/null",
                           check=False, timeout=60)
    assert on_terminal.returncode == 1
    assert on_terminal.stdout.replace("\r\n", "\n") == (
        f"hc: hc shell cannot give {vm.name} a terminal: use its serial console, "
        f"`hc console {vm.name} --text`, or ssh (or pipe a script: "
        f"`hc shell {vm.name} < script`)\n")
    piped = host.run(*host.hc_argv(), "shell", vm.name, input="cat /etc/hostname\n",
                     timeout=60)
    assert piped.stdout == f"{vm.name}\n"


def test_the_guest_reaches_the_host_bridge(host: DevHost, vm: BootedVm) -> None:
    gateway = network(host)["gateway4"]
    # hc-dns is the one service of the host instances may reach: TCP to it over the bridge.
    result = host.hc("exec", vm.name, "--", "bash", "-c",
                     f"exec 3<>/dev/tcp/{gateway}/53 && echo connected", check=False,
                     timeout=60)
    assert result.stdout == "connected\n", result.stderr
    # ... and by name, through it.
    resolved = guest(host, "getent", "hosts", f"{vm.name}.{network(host)['zone']}")
    assert instance(host, vm.name)["ipv6"] in resolved


def test_a_published_port_reaches_a_listener_in_the_guest(host: DevHost, vm: BootedVm) -> None:
    # The image has no nc or python: systemd's socket activator answers each connection.
    guest(host, "systemd-run", "--unit=probe", "systemd-socket-activate", "-l",
          str(PUBLISHED[1]), "-a", "--inetd", "echo", f"answer from {vm.name}")

    def answer() -> str | None:
        result = host.run(host.python, str(PROBE), "connect-tcp", "127.0.0.1",
                          str(PUBLISHED[0]), "5", check=False, timeout=30)
        return result.stdout.strip() if result.returncode == 0 else None
    assert wait_for("the published port", answer, timeout=60) == f"answer from {vm.name}"


def test_logs_show_the_serial_console(host: DevHost, vm: BootedVm) -> None:
    logs = host.hc("logs", "-n", "2000", vm.name).stdout
    assert "Linux version" in logs  # the kernel's first line, on ttyS0
    assert f"Debian GNU/Linux 12 {vm.name} ttyS0" in logs  # getty, with the written hostname


def test_the_serial_console_in_a_browser_shows_the_login_prompt(host: DevHost, vm: BootedVm,
                                                                page: Page) -> None:
    add_door_user(host, DOOR_USER, DOOR_PASSWORD)
    open_console_page(page, host, vm.name, DOOR_USER, DOOR_PASSWORD, "terminal")
    assert page.inner_text("#note") == f"{vm.name} has no screen: this is its serial console"
    page.keyboard.press("Enter")  # getty answers with its prompt again
    wait_for("the login prompt", lambda: f"{vm.name} login:" in terminal_text(page))
    save_screenshot(page, "serial-console")


def test_killing_the_agent_does_not_stop_the_vm(host: DevHost, vm: BootedVm) -> None:
    pid = unit_pid(host, vm.name)
    agent = int(host.run("systemctl", "show", "-p", "MainPID", "--value", "hcd.service").stdout)
    host.run("systemctl", "kill", "--signal=SIGKILL", "hcd.service")
    wait_for("the agent to die", lambda: host.run("test", "-e", f"/proc/{agent}",
                                                  check=False).returncode != 0)
    assert host.run("systemctl", "is-active", f"hc-{vm.name}.service").stdout.strip() == "active"
    # The agent comes back on the next command and adopts the VM as it is.
    assert instance(host, vm.name)["state"] == "running"
    assert guest(host, "cat", "/etc/hostname") == f"{vm.name}\n"
    assert unit_pid(host, vm.name) == pid


def test_stop_powers_the_guest_off_and_start_boots_it_again(host: DevHost,
                                                           vm: BootedVm) -> None:
    host.hc("stop", vm.name, timeout=120)
    assert instance(host, vm.name)["state"] == "stopped"
    journal = host.run("journalctl", "-u", f"hc-{vm.name}.service", "-n", "40", "-o", "cat"
                       ).stdout
    assert "reboot: Power down" in journal  # the guest powered itself off (ACPI) ...
    # ... before systemd had to kill qemu (its own line, not the guest's shutdown's)
    assert "Killing process" not in journal and "timed out" not in journal, journal
    assert not runtime_dir_exists(host, vm.name)
    host.hc("start", vm.name, timeout=BOOT_TIMEOUT)
    assert instance(host, vm.name)["state"] == "running"
    assert guest(host, "cat", "/etc/hostname") == f"{vm.name}\n"
    assert guest(host, "cat", "/proc/cmdline").count("root=LABEL=hc-root") == 1


def test_a_restart_always_vm_comes_back_after_a_reboot(host: DevHost, vm: BootedVm) -> None:
    # The agent starts at boot and brings the VM back before it says it is ready: the dev
    # host's boot lasts as long as the guest's under TCG.
    devhosts.reboot(host.name, timeout=2 * BOOT_TIMEOUT)
    wait_for("vm1 to be running again", lambda: instance(host, vm.name)["state"] == "running",
             timeout=BOOT_TIMEOUT)
    assert guest(host, "cat", "/etc/hostname") == f"{vm.name}\n"
    journal = host.run("journalctl", "-b", "-u", "hcd.service", "-o", "cat").stdout
    assert f"reconcile instances: restarted: {vm.name}" in journal, journal
    # With its network: the tap is back on the bridge, the name resolves.
    assert_name_resolves(host, vm)


def test_rm_force_leaves_nothing(host: DevHost, vm: BootedVm) -> None:
    with nothing_left_of(host, vm.name, before=vm.network_before):
        host.hc("rm", "-f", vm.name, timeout=120)
