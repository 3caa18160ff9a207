"""Bare-metal installs end to end, in a dev host of this module's own: `hc provision enable`
runs hc-dhcp and hc-provision on the bridge hc0, `hc machine add` names each machine, and real
qemus (TCG, one vCPU each) on taps on hc0 play the machines: each NIC's iPXE boots the
installer over the network, the installer runs the workflow against hc-provision, and a machine
comes up with its hostname, its SSH key and its name.

Kept to one round of VM boots (TCG: every boot is minutes of CI's time), four machines
switched on together through the same hc-dhcp and hc-provision, each with its
own token, steps and log:
- node1 installs under UEFI (OVMF) onto an empty disk; hc-provision is restarted while its
  image streams (the image step fails, is tried again, and the machine is not called installed
  before it is; a diskless machine fetching its image at that moment may be cut too, and its
  step then ends ok on a later try);
  then the installed disk boots by itself (boot.ipxe answers `exit`, the firmware goes on to
  the disk);
- node2 network-boots under SeaBIOS (iPXE there too) and runs its image from RAM;
- node4 has a disk too small for the image, node5 a user's workflow with a step past its
  timeout: both must fail, and switch themselves off.
Afterwards a copy of node1's disk boots under BIOS (SeaBIOS, through the extlinux on the same
ESP).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import time
from collections.abc import Callable, Iterator
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
    machines_on,
    start_machine,
    step,
    wait_for_machines,
)
from tests.system.cli_checks import wait_for

IMAGE = "debian-machine"
MAC, MAC2 = "52:54:00:4e:00:01", "52:54:00:4e:00:02"
MAC4, MAC5 = "52:54:00:4e:00:04", "52:54:00:4e:00:05"
WORK = "/var/tmp/machine-install"  # in the dev host: disks, firmware variables, serial logs
DISK_SIZE = "3G"
TINY_DISK = "64M"  # far below what the image needs
DISKLESS_MEMORY_MIB = 1024  # the image's tree lives in that RAM
STEP_TIMEOUT = 5  # the user's slow step, in seconds
KEY = f"{WORK}/id_node1"
SSH = ["ssh", "-i", KEY, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
       "-o", "ConnectTimeout=30", "-o", "BatchMode=yes"]  # an emulated sshd on busy cores
INSTALL_TIMEOUT = 600  # power-on to installed under TCG on a busy 2-core machine, alone
# Four emulated machines at once share the cores (two once node4 and node5 are off): each
# takes up to twice as long.
TOGETHER_TIMEOUT = 2 * INSTALL_TIMEOUT
BOOT_TIMEOUT = 600  # from the disk to a login prompt: about 70 s quiet, 400 s at load 19
RETRY_TIMEOUT = 300  # from the cut to the image step's second try (HTTP back-off up to 10 s)
# Switched on together; node1 and node2 come up, node4 and node5 fail and switch themselves off.
BOOTS = (Boot("node1", MAC, DISK_SIZE, uefi=True),
         Boot("node2", MAC2, None, memory_mib=DISKLESS_MEMORY_MIB),
         Boot("node4", MAC4, TINY_DISK),
         Boot("node5", MAC5, None, memory_mib=DISKLESS_MEMORY_MIB))
UP = ("node1", "node2")

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
def host(private_devhost: DevHost) -> DevHost:
    """The module's dev host with the machine image and an SSH key for the machines."""
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
    """Full DHCP on hc0 for known MACs; node1 (the install workflow), node2 (diskless), node4
    (the install workflow, a tiny disk) and node5 (diskless, the slow workflow) added."""
    address = enable_provisioning(host)
    host.hc("machine", "add", "node1", "--mac", MAC, "--image", IMAGE, "--ssh-key", f"{KEY}.pub",
            timeout=600)  # the first add builds the installer
    host.hc("machine", "add", "node2", "--mac", MAC2, "--image", IMAGE, "--diskless",
            "--ssh-key", f"{KEY}.pub")
    host.hc("machine", "add", "node4", "--mac", MAC4, "--image", IMAGE)
    # A workflow is YAML, and JSON is YAML.
    host.run("sh", "-c", "mkdir -p /etc/homecloud/workflows && printf '%s\\n' "
             f"{shlex.quote(json.dumps(SLOW_WORKFLOW))} > /etc/homecloud/workflows/slow.yaml")
    host.hc("machine", "add", "node5", "--mac", MAC5, "--image", IMAGE, "--diskless",
            "--workflow", "slow")
    return address


def sh_on(host: DevHost, address: str, command: str) -> str:
    return host.run(*SSH, f"root@{address}", command, timeout=60).stdout


def wait_for_ssh(host: DevHost, address: str) -> None:
    """sshd starts after the login prompt shows (its host keys are made at first boot)."""
    wait_for(f"ssh to {address}", lambda: host.run(*SSH, f"root@{address}", "true",
                                                   check=False, timeout=60).returncode == 0,
             BOOT_TIMEOUT)


@dataclass(frozen=True)
class Cut:
    states: list[str]  # node1's state from the cut to the image step's retry
    retry_message: str  # the image step's message when its second try began


Listing = Callable[[], dict[str, dict[str, Any]]]


def cut_node1s_stream(host: DevHost, running: dict[str, Machine], listing: Listing) -> Cut:
    """hc-provision restarted a few seconds into node1's image stream. Not before every
    machine's installer has started a step: iPXE fetches the installer from hc-provision and
    does not try again, the installer does."""
    def streaming() -> bool:
        machines = listing()
        return (step(machines["node1"], "image").get("status") == "running"
                and all(any(s["status"] != "pending" for s in m["steps"])
                        for m in machines.values()))
    wait_for_machines(running, "node1's image step to start, every installer at work",
                      streaming, TOGETHER_TIMEOUT)
    time.sleep(5)  # some of the stream is on its way
    host.run("systemctl", "restart", "hc-provision.service")
    states = []

    def retried() -> str:
        current = listing()["node1"]
        states.append(current["state"])
        message: str = step(current, "image").get("message", "")
        return message if "try 2" in message else ""
    retry = wait_for_machines(running, "node1's image step's second try", retried,
                              RETRY_TIMEOUT)
    return Cut(states, retry)


@dataclass(frozen=True)
class Round:
    """The machines of BOOTS switched on together, seen once each was up or off."""

    machines: dict[str, dict[str, Any]]  # `hc machine ls`, by name
    states: dict[str, set[str]]  # every state each one showed on the way
    cut: Cut
    logs: dict[str, str]  # `hc machine logs NAME`
    consoles: dict[str, str]  # node1's from power-on to the login prompt on its disk
    disks: dict[str, str]  # the disk files of those that have one, in the dev host
    table: str  # `hc machine ls`
    hostnames: dict[str, str]  # over SSH, from the address of each one of UP
    root_types: dict[str, str]  # the file system each one of UP runs from
    answers: dict[str, list[str]]  # the host's DNS answer for each one of UP's name
    node1: Machine  # still at its login prompt


@pytest.fixture(scope="module")
def switched_on(host: DevHost, gateway: IPv4Interface) -> Iterator[Round]:
    """BOOTS switched on together with empty disks; node1's stream cut; once node1 and node2
    are at their login prompts and node4 and node5 are off, node1 and node2 seen over SSH and
    node2 switched off. node1 runs until the module's end."""
    with machines_on(host, WORK, BOOTS) as running:
        states: dict[str, set[str]] = {name: set() for name in running}

        def listing() -> dict[str, dict[str, Any]]:
            # Every other second: each `hc` run takes CPU the emulated machines are short of.
            time.sleep(2)
            machines = {m["name"]: m for m in host.hc("machine", "ls", json=True)
                        if m["name"] in running}
            for name, machine in machines.items():
                states[name].add(machine["state"])
            return machines

        def finished(name: str, machine: dict[str, Any]) -> bool:
            return running[name].powered_off() or (
                machine["state"] == "installed" and f"{name} login:" in running[name].console())

        cut = cut_node1s_stream(host, running, listing)
        wait_for_machines(running, "node1 and node2 at their login prompts, node4 and node5 off",
                          lambda: all(finished(name, m) for name, m in listing().items()),
                          TOGETHER_TIMEOUT + BOOT_TIMEOUT)
        machines = listing()
        hostnames, root_types, answers = {}, {}, {}
        for name in UP:
            if running[name].powered_off():
                continue  # it failed: the tests say how
            address = machines[name]["address4"]
            wait_for_ssh(host, address)
            hostnames[name], root_types[name] = sh_on(
                host, address, "hostname; findmnt -no FSTYPE /").split()
            answers[name] = host.run("dig", f"@{gateway.ip}", "+short", machines[name]["fqdn"],
                                     "A").stdout.split()
        seen = Round(machines, states, cut,
                     {name: host.hc("machine", "logs", name).stdout for name in running},
                     {name: machine.console() for name, machine in running.items()},
                     {boot.name: disk for boot in BOOTS if (disk := boot.disk(WORK)) is not None},
                     host.hc("machine", "ls").stdout, hostnames, root_types, answers,
                     running["node1"])
        running["node2"].stop()  # one emulated machine less on the cores for the tests
        yield seen


# -- node1: an install under UEFI, its stream cut --------------------------------------------------

def test_the_install_runs_every_step_and_boots_the_disk(switched_on: Round) -> None:
    node1 = switched_on.machines["node1"]
    assert node1["state"] == "installed"
    assert [s["status"] for s in node1["steps"]] == ["ok"] * 5
    console = switched_on.consoles["node1"]
    assert "homecloud installer" in console and "installed: rebooting into the disk" in console
    # After the install, boot.ipxe said `exit`: the firmware went on to the disk's systemd-boot.
    assert console.count("homecloud installer") == 1
    assert "UEFI: systemd-boot on the ESP" in switched_on.logs["node1"]


def test_a_cut_stream_fails_the_step_which_is_retried(switched_on: Round) -> None:
    cut, log = switched_on.cut, switched_on.logs["node1"]
    assert "installed" not in cut.states, cut.states
    assert "the image stream was cut or damaged" in log, log
    assert cut.retry_message == "stream-image (try 2 of 3)"
    assert "received image debian-machine" in log


def test_the_machine_has_its_name_key_and_network(host: DevHost, gateway: IPv4Interface,
                                                  switched_on: Round) -> None:
    address = switched_on.machines["node1"]["address4"]
    fqdn = switched_on.machines["node1"]["fqdn"]
    assert sh_on(host, address, "hostname").strip() == "node1"
    assert "test@node1" in sh_on(host, address, "cat /root/.ssh/authorized_keys")
    assert sh_on(host, address, "findmnt -no FSTYPE,OPTIONS /").startswith("btrfs")
    answer = host.run("dig", f"@{gateway.ip}", "+short", fqdn, "A").stdout.split()
    assert answer == [address]


def test_a_copy_of_the_disk_boots_under_bios(host: DevHost, switched_on: Round) -> None:
    sh_on(host, switched_on.machines["node1"]["address4"], "sync")
    switched_on.node1.stop()  # its disk no longer changing; one emulated machine less
    copy = f"{WORK}/node1-bios.raw"
    host.run("cp", "--sparse=always", switched_on.disks["node1"], copy)
    machine = start_machine(host, WORK, "node1-bios", copy, uefi=False)
    try:
        wait_for_machines({"node1-bios": machine}, "the BIOS boot to reach a login prompt",
                          lambda: "node1 login:" in machine.console(), BOOT_TIMEOUT)
        # SeaBIOS ran the MBR code into extlinux: the kernel found no EFI, as it did under OVMF.
        assert ("efi: EFI v" in switched_on.consoles["node1"]
                and "efi: EFI v" not in machine.console())
    finally:
        machine.stop()
        host.run("rm", "-f", copy)


# -- node1 and node2 at once ----------------------------------------------------------------------

def test_two_machines_switched_on_together_both_come_up_named(switched_on: Round) -> None:
    machines = {name: switched_on.machines[name] for name in UP}
    assert {name: m["state"] for name, m in machines.items()} == {"node1": "installed",
                                                                 "node2": "installed"}
    assert switched_on.hostnames == {"node1": "node1", "node2": "node2"}
    assert switched_on.root_types == {"node1": "btrfs", "node2": "tmpfs"}
    assert switched_on.answers == {name: [m["address4"]] for name, m in machines.items()}
    # At once: each one's workflow began before the other's ended.
    spans = {name: (min(s["started"] for s in m["steps"]), max(s["finished"] for s in m["steps"]))
             for name, m in machines.items()}
    assert spans["node1"][0] < spans["node2"][1] and spans["node2"][0] < spans["node1"][1], spans


def test_two_machines_at_once_keep_their_own_steps_logs_and_tokens(
        host: DevHost, gateway: IPv4Interface, switched_on: Round) -> None:
    # node2's rootfs step may have been cut by the restart too: then it was tried again, and
    # its last try ended ok.
    steps = {name: [(s["id"], s["status"]) for s in switched_on.machines[name]["steps"]]
             for name in UP}
    assert steps == {"node1": [(step, "ok") for step in
                               ("wipe", "partition", "image", "boot", "identity")],
                     "node2": [("rootfs", "ok"), ("identity", "ok")]}
    logs, consoles = switched_on.logs, switched_on.consoles
    for name, other in (("node1", "node2"), ("node2", "node1")):
        assert f"identity: {name}," in logs[name], logs[name]
        assert other not in logs[name], logs[name]
        assert "homecloud installer" in consoles[name]
        assert f"hc.machine={name} " in consoles[name]
        assert f"hc.machine={other} " not in consoles[name]
    assert "received image debian-machine" in logs["node1"]
    assert "root in RAM" in logs["node2"]
    # Each installer had a token of its own, which opens its own machine only.
    tokens = {name: re.findall(r"hc\.token=(\S+)", consoles[name])[0] for name in UP}
    assert tokens["node1"] != tokens["node2"]
    url = f"http://{gateway.ip}:8067"

    def status(name: str, token: str) -> str:
        # /m/NAME/nosuch: the token is checked first, and nothing is changed either way.
        return host.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                        f"Authorization: Bearer {token}", f"{url}/m/{name}/nosuch").stdout
    assert status("node1", tokens["node2"]) == "403"
    assert status("node2", tokens["node1"]) == "403"
    assert status("node2", tokens["node2"]) == "404"


# -- bad input: a disk too small, a step past its timeout ---------------------------------------

def test_a_disk_too_small_is_refused_before_anything_is_written(
        host: DevHost, switched_on: Round) -> None:
    node4 = switched_on.machines["node4"]
    assert node4["state"] == "failed" and "installed" not in switched_on.states["node4"]
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
    assert f"node4: step partition: {message}" in switched_on.table
    assert "partition:failed" in switched_on.table
    # No partition table, no file system: nothing half-written on the disk.
    assert host.run("wipefs", "--no-act", switched_on.disks["node4"]).stdout == ""
    assert host.run("sfdisk", "--dump", switched_on.disks["node4"], check=False).returncode != 0


def test_a_step_past_its_timeout_fails_and_stops_the_workflow(switched_on: Round) -> None:
    node5 = switched_on.machines["node5"]
    assert node5["state"] == "failed" and "installed" not in switched_on.states["node5"]
    steps = {s["id"]: s for s in node5["steps"]}
    # rootfs may have been cut by the restart and tried again: its last try ended ok.
    assert [steps[i]["status"] for i in ("rootfs", "slow", "identity")] == \
        ["ok", "failed", "pending"]
    assert steps["slow"]["message"] == f"run-in-target timed out after {STEP_TIMEOUT}s"
    # The last try ended at its timeout, not when `sleep 600` would have.
    assert STEP_TIMEOUT <= steps["slow"]["duration"] < STEP_TIMEOUT + 30
    assert (f"node5: step slow: run-in-target timed out after {STEP_TIMEOUT}s"
            in switched_on.table)
    assert "slow:failed" in switched_on.table
    console = switched_on.consoles["node5"]
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
