"""Bare-metal installs end to end, in a dev host of this module's own: `hc provision enable`
runs hc-dhcp and hc-provision on the bridge hc0, `hc machine add` names a machine, and a real
qemu (TCG, 512 MiB, one vCPU) on a tap on hc0 plays the machine: its NIC's iPXE boots the
installer over the network, the installer runs the workflow against hc-provision, and the
machine comes up from its own disk with its hostname, its SSH key and its name.

Kept to a few VM boots (TCG, and the whole module within a CI budget of ten minutes): one
install under UEFI (OVMF), during which hc-provision is restarted mid-stream (the image step
fails, is tried again, and the machine is not called installed before it is); the installed
disk booting by itself (boot.ipxe answers `exit`, the firmware goes on to the disk); a copy of
that disk booting under BIOS (SeaBIOS, through the extlinux on the same ESP); two machines
switched on together through the same hc-dhcp and hc-provision, one installing (UEFI), one
network-booting under SeaBIOS (iPXE there too) and running its image from RAM, each with its own
token, steps and log; two that must fail, switched on together too: a disk too small for the
image and a user's workflow with a step past its timeout.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Interface
from typing import Any

import pytest

from homecloud.devhost import DevHost
from tests.conftest import build_debian
from tests.system.baremetal import (
    OVMF_CODE,
    Boot,
    Machine,
    enable_provisioning,
    machine_info,
    machines_on,
    start_machine,
    step,
    tap_on_hc0,
    wait_for_machines,
)
from tests.system.cli_checks import wait_for

IMAGE = "debian-machine"
MAC, MAC2, MAC3 = "52:54:00:4e:00:01", "52:54:00:4e:00:02", "52:54:00:4e:00:03"
MAC4, MAC5 = "52:54:00:4e:00:04", "52:54:00:4e:00:05"
WORK = "/var/tmp/machine-install"  # in the dev host: disks, firmware variables, serial logs
DISK_SIZE = "3G"
TINY_DISK = "64M"  # far below what the image needs
DISKLESS_MEMORY_MIB = 1024  # the image's tree lives in that RAM
STEP_TIMEOUT = 5  # the user's slow step, in seconds
KEY = f"{WORK}/id_node1"
SSH = ["ssh", "-i", KEY, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
       "-o", "ConnectTimeout=30", "-o", "BatchMode=yes"]  # an emulated sshd on busy cores
INSTALL_TIMEOUT = 600  # power-on to installed under TCG on a busy 2-core machine
# Two emulated machines at once share the cores: each takes up to twice as long.
TOGETHER_TIMEOUT = 2 * INSTALL_TIMEOUT
BOOT_TIMEOUT = 600  # from the disk to a login prompt: about 70 s quiet, 400 s at load 19


@pytest.fixture(scope="module")
def host(private_devhost: DevHost) -> DevHost:
    """The module's dev host with the machine image and an SSH key for node1."""
    for tool in ("dnsmasq", "qemu-system-x86_64", "ssh", "dig"):
        if shutil.which(tool) is None:
            pytest.skip(f"the install tests need {tool}")
    if not OVMF_CODE.is_file():
        pytest.skip(f"the UEFI install needs {OVMF_CODE} (apt-get install ovmf)")
    host = private_devhost
    build_debian(host, IMAGE, "--machine")
    host.run("mkdir", "-p", WORK)
    host.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test@node1", "-f", KEY)
    return host


@pytest.fixture(scope="module")
def gateway(host: DevHost) -> IPv4Interface:
    """Full DHCP on hc0 for known MACs, node1 added with the key."""
    address = enable_provisioning(host)
    host.hc("machine", "add", "node1", "--mac", MAC, "--image", IMAGE, "--ssh-key", f"{KEY}.pub",
            timeout=600)  # the first add builds the installer
    return address


@pytest.fixture(scope="module")
def tap(host: DevHost) -> Iterator[str]:
    with tap_on_hc0(host, "hcitap0") as name:
        yield name


def node1(host: DevHost) -> dict[str, Any]:
    return machine_info(host, "node1")


def sh_on(host: DevHost, address: str, command: str) -> str:
    return host.run(*SSH, f"root@{address}", command, timeout=60).stdout


def wait_for_ssh(host: DevHost, address: str) -> None:
    """sshd starts after the login prompt shows (its host keys are made at first boot)."""
    wait_for(f"ssh to {address}", lambda: host.run(*SSH, f"root@{address}", "true",
                                                   check=False, timeout=60).returncode == 0,
             BOOT_TIMEOUT)


@dataclass(frozen=True)
class Install:
    machine: dict[str, Any]  # `hc machine ls` once installed
    states_while_cut: list[str]  # node1's state from the cut to the image step's retry
    retry_message: str  # the image step's message when its second try began
    log: str  # `hc machine logs node1`
    console: str  # the serial console, from power-on to the login prompt on the disk
    disk: str
    running: Machine  # still at its login prompt


@pytest.fixture(scope="module")
def install(host: DevHost, gateway: IPv4Interface, tap: str) -> Iterator[Install]:
    """node1 powered on with an empty disk under UEFI; hc-provision restarted while the image
    streams; the machine left running from its disk at the login prompt."""
    disk = f"{WORK}/node1.raw"
    host.run("truncate", "-s", DISK_SIZE, disk)
    machine = start_machine(host, WORK, "node1", disk, uefi=True, tap=tap, mac=MAC)
    try:
        wait_for_machines({"node1": machine}, "node1's image step to start",
                          lambda: step(node1(host), "image").get("status") == "running",
                          INSTALL_TIMEOUT)
        time.sleep(5)  # some of the stream is on its way
        host.run("systemctl", "restart", "hc-provision.service")
        states = []

        def retried() -> str:
            current = node1(host)
            states.append(current["state"])
            message: str = step(current, "image").get("message", "")
            return message if "try 2" in message else ""
        retry = wait_for("the image step's second try", retried, 120)
        wait_for_machines({"node1": machine}, "node1 to be installed",
                          lambda: node1(host)["state"] == "installed", INSTALL_TIMEOUT)
        wait_for_machines({"node1": machine}, "node1 to boot from its disk to a login prompt",
                          lambda: "node1 login:" in machine.console(), BOOT_TIMEOUT)
        wait_for_ssh(host, node1(host)["address4"])
        yield Install(node1(host), states, retry, host.hc("machine", "logs", "node1").stdout,
                      machine.console(), disk, machine)
    finally:
        machine.stop()


def test_the_install_runs_every_step_and_boots_the_disk(install: Install) -> None:
    assert install.machine["state"] == "installed"
    assert [s["status"] for s in install.machine["steps"]] == ["ok"] * 5
    console = install.console
    assert "homecloud installer" in console and "installed: rebooting into the disk" in console
    # After the install, boot.ipxe said `exit`: the firmware went on to the disk's systemd-boot.
    assert console.count("homecloud installer") == 1
    assert "UEFI: systemd-boot on the ESP" in install.log


def test_a_cut_stream_fails_the_step_which_is_retried(install: Install) -> None:
    assert "installed" not in install.states_while_cut, install.states_while_cut
    assert "the image stream was cut or damaged" in install.log, install.log
    assert install.retry_message == "stream-image (try 2 of 3)"
    assert "received image debian-machine" in install.log


def test_the_machine_has_its_name_key_and_network(host: DevHost, gateway: IPv4Interface,
                                                  install: Install) -> None:
    address = install.machine["address4"]
    fqdn = install.machine["fqdn"]
    assert sh_on(host, address, "hostname").strip() == "node1"
    assert "test@node1" in sh_on(host, address, "cat /root/.ssh/authorized_keys")
    assert sh_on(host, address, "findmnt -no FSTYPE,OPTIONS /").startswith("btrfs")
    answer = host.run("dig", f"@{gateway.ip}", "+short", fqdn, "A").stdout.split()
    assert answer == [address]


def test_a_copy_of_the_disk_boots_under_bios(host: DevHost, install: Install) -> None:
    sh_on(host, install.machine["address4"], "sync")
    install.running.stop()  # one emulated machine at a time on this machine's two cores
    copy = f"{WORK}/node1-bios.raw"
    host.run("cp", "--sparse=always", install.disk, copy)
    machine = start_machine(host, WORK, "node1-bios", copy, uefi=False)
    try:
        wait_for_machines({"node1-bios": machine}, "the BIOS boot to reach a login prompt",
                          lambda: "node1 login:" in machine.console(), BOOT_TIMEOUT)
        # SeaBIOS ran the MBR code into extlinux: the kernel found no EFI, as it did under OVMF.
        assert "efi: EFI v" in install.console and "efi: EFI v" not in machine.console()
    finally:
        machine.stop()
        host.run("rm", "-f", copy)


# -- machines switched on together ---------------------------------------------------------------

@dataclass(frozen=True)
class Together:
    """Machines switched on at the same time, seen once every one of them had finished."""

    machines: dict[str, dict[str, Any]]  # `hc machine ls`, by name
    states: dict[str, set[str]]  # every state each one showed on the way
    logs: dict[str, str]  # `hc machine logs NAME`
    consoles: dict[str, str]
    disks: dict[str, str]  # the disk files of those that have one, in the dev host
    table: str  # `hc machine ls`


@contextmanager
def switched_on_together(host: DevHost, boots: Sequence[Boot],
                         finished: Callable[[dict[str, Any], Machine], bool]
                         ) -> Iterator[Together]:
    """Every machine of ``boots`` switched on at once; the context is entered when
    ``finished`` holds for all of them, which run until it exits."""
    with machines_on(host, WORK, boots) as running:
        states: dict[str, set[str]] = {name: set() for name in running}

        def all_finished() -> bool:
            time.sleep(1)  # `hc machine ls` and the consoles once a second, not ten times
            listing = {m["name"]: m for m in host.hc("machine", "ls", json=True)}
            for name in running:
                states[name].add(listing[name]["state"])
            return all(finished(listing[name], machine) for name, machine in running.items())
        wait_for_machines(running, f"{', '.join(running)} to finish", all_finished,
                          TOGETHER_TIMEOUT)
        listing = {m["name"]: m for m in host.hc("machine", "ls", json=True)}
        yield Together({name: listing[name] for name in running}, states,
                       {name: host.hc("machine", "logs", name).stdout for name in running},
                       {name: machine.console() for name, machine in running.items()},
                       {boot.name: disk for boot in boots
                        if (disk := boot.disk(WORK)) is not None},
                       host.hc("machine", "ls").stdout)


@dataclass(frozen=True)
class Pair:
    together: Together
    hostnames: dict[str, str]  # over SSH, from each machine's address
    root_types: dict[str, str]  # the file system each runs from
    answers: dict[str, list[str]]  # the host's DNS answer for each one's name


@pytest.fixture(scope="module")
def pair(host: DevHost, gateway: IPv4Interface) -> Pair:
    """node2 (no disk: its image from RAM, SeaBIOS) and node3 (an empty disk, UEFI) switched
    on together; seen over SSH once both are up, then switched off."""
    host.hc("machine", "add", "node2", "--mac", MAC2, "--image", IMAGE, "--diskless",
            "--ssh-key", f"{KEY}.pub")
    host.hc("machine", "add", "node3", "--mac", MAC3, "--image", IMAGE, "--ssh-key", f"{KEY}.pub")
    boots = [Boot("node2", MAC2, None, memory_mib=DISKLESS_MEMORY_MIB),
             Boot("node3", MAC3, DISK_SIZE, uefi=True)]

    def up(machine: dict[str, Any], running: Machine) -> bool:
        return (machine["state"] in ("installed", "failed")
                and f"{machine['name']} login:" in running.console())
    with switched_on_together(host, boots, up) as together:
        hostnames, root_types, answers = {}, {}, {}
        for name, machine in together.machines.items():
            address = machine["address4"]
            wait_for_ssh(host, address)
            hostnames[name], root_types[name] = sh_on(
                host, address, "hostname; findmnt -no FSTYPE /").split()
            answers[name] = host.run("dig", f"@{gateway.ip}", "+short", machine["fqdn"],
                                     "A").stdout.split()
    return Pair(together, hostnames, root_types, answers)


def test_two_machines_switched_on_together_both_come_up_named(pair: Pair) -> None:
    machines = pair.together.machines
    assert {name: m["state"] for name, m in machines.items()} == {"node2": "installed",
                                                                 "node3": "installed"}
    assert pair.hostnames == {"node2": "node2", "node3": "node3"}
    assert pair.root_types == {"node2": "tmpfs", "node3": "btrfs"}
    assert pair.answers == {name: [m["address4"]] for name, m in machines.items()}
    # At once: each one's workflow began before the other's ended.
    spans = {name: (min(s["started"] for s in m["steps"]), max(s["finished"] for s in m["steps"]))
             for name, m in machines.items()}
    assert spans["node2"][0] < spans["node3"][1] and spans["node3"][0] < spans["node2"][1], spans


def test_two_machines_at_once_keep_their_own_steps_logs_and_tokens(
        host: DevHost, gateway: IPv4Interface, pair: Pair) -> None:
    together = pair.together
    steps = {name: [(s["id"], s["status"]) for s in m["steps"]]
             for name, m in together.machines.items()}
    assert steps == {"node2": [("rootfs", "ok"), ("identity", "ok")],
                     "node3": [(step, "ok") for step in
                               ("wipe", "partition", "image", "boot", "identity")]}
    for name, other in (("node2", "node3"), ("node3", "node2")):
        assert f"identity: {name}," in together.logs[name], together.logs[name]
        assert other not in together.logs[name], together.logs[name]
        assert "homecloud installer" in together.consoles[name]
        assert f"hc.machine={name} " in together.consoles[name]
        assert f"hc.machine={other} " not in together.consoles[name]
    assert "received image debian-machine" in together.logs["node3"]
    assert "root in RAM" in together.logs["node2"]
    # Each installer had a token of its own, which opens its own machine only.
    tokens = {name: re.findall(r"hc\.token=(\S+)", console)[0]
              for name, console in together.consoles.items()}
    assert tokens["node2"] != tokens["node3"]
    url = f"http://{gateway.ip}:8067"

    def status(name: str, token: str) -> str:
        # /m/NAME/nosuch: the token is checked first, and nothing is changed either way.
        return host.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                        f"Authorization: Bearer {token}", f"{url}/m/{name}/nosuch").stdout
    assert status("node3", tokens["node2"]) == "403"
    assert status("node2", tokens["node3"]) == "403"
    assert status("node2", tokens["node2"]) == "404"


# -- bad input: a disk too small, a step past its timeout ---------------------------------------

SLOW_WORKFLOW = {
    "description": "the image in RAM, then a command that outlives its step's timeout",
    "actions": [
        {"id": "rootfs", "action": "fetch-rootfs", "timeout": 900},
        {"id": "slow", "action": "run-in-target", "timeout": STEP_TIMEOUT,
         "with": {"argv": ["sleep", "600"]}},
        {"id": "identity", "action": "identity", "timeout": 60},
    ],
}


@pytest.fixture(scope="module")
def failures(host: DevHost, gateway: IPv4Interface) -> Together:
    """node4 (a 64 MiB disk, the install workflow) and node5 (a user's workflow whose second
    step sleeps past its timeout) switched on together, seen once both switched themselves
    off."""
    # A workflow is YAML, and JSON is YAML.
    host.run("sh", "-c", "mkdir -p /etc/homecloud/workflows && printf '%s\\n' "
             f"{shlex.quote(json.dumps(SLOW_WORKFLOW))} > /etc/homecloud/workflows/slow.yaml")
    host.hc("machine", "add", "node4", "--mac", MAC4, "--image", IMAGE)
    host.hc("machine", "add", "node5", "--mac", MAC5, "--image", IMAGE, "--diskless",
            "--workflow", "slow")
    boots = [Boot("node4", MAC4, TINY_DISK), Boot("node5", MAC5, None,
                                                  memory_mib=DISKLESS_MEMORY_MIB)]
    with switched_on_together(host, boots, lambda _, running: running.powered_off()) as seen:
        return seen


def test_a_disk_too_small_is_refused_before_anything_is_written(
        host: DevHost, failures: Together) -> None:
    node4 = failures.machines["node4"]
    assert node4["state"] == "failed" and "installed" not in failures.states["node4"]
    steps = {s["id"]: s for s in node4["steps"]}
    assert [steps[i]["status"] for i in ("wipe", "partition", "image", "boot", "identity")] == \
        ["ok", "failed", "pending", "pending", "pending"]
    message = steps["partition"]["message"]
    found = re.fullmatch(r"partition failed: disk /dev/vda is too small: 64 MiB, the image "
                         r"needs at least (\d+) MiB", message)
    assert found, message
    # The image's own size counted (twice: received, then its writable snapshot growing).
    [image] = [i for i in host.hc("image", "ls", json=True) if i["name"] == IMAGE]
    assert int(found.group(1)) >= 2 * image["size_bytes"] // 2**20
    assert f"node4: step partition: {message}" in failures.table
    assert "partition:failed" in failures.table
    # No partition table, no file system: nothing half-written on the disk.
    assert host.run("wipefs", "--no-act", failures.disks["node4"]).stdout == ""
    assert host.run("sfdisk", "--dump", failures.disks["node4"], check=False).returncode != 0


def test_a_step_past_its_timeout_fails_and_stops_the_workflow(failures: Together) -> None:
    node5 = failures.machines["node5"]
    assert node5["state"] == "failed" and "installed" not in failures.states["node5"]
    steps = {s["id"]: s for s in node5["steps"]}
    assert [steps[i]["status"] for i in ("rootfs", "slow", "identity")] == \
        ["ok", "failed", "pending"]
    assert steps["slow"]["message"] == f"run-in-target timed out after {STEP_TIMEOUT}s"
    # The last try ended at its timeout, not when `sleep 600` would have.
    assert STEP_TIMEOUT <= steps["slow"]["duration"] < STEP_TIMEOUT + 30
    assert (f"node5: step slow: run-in-target timed out after {STEP_TIMEOUT}s"
            in failures.table)
    assert "slow:failed" in failures.table
    console = failures.consoles["node5"]
    # The step's own processes ended with it: the root in RAM could be unmounted.
    assert "the workflow stopped at step 1" in console
    assert "Resource busy" not in console, console


def test_image_ls_shows_the_image_installs_on_machines(host: DevHost) -> None:
    [image] = [i for i in host.hc("image", "ls", json=True) if i["name"] == IMAGE]
    assert image["bare_metal"] and not image["vm"]
    assert image["source"] == "build:debian+machine"
    row = next(line.split() for line in host.hc("image", "ls").stdout.splitlines()
               if line.startswith(IMAGE + " "))
    assert row[1] == "container,machine"
