"""Bare-metal installs end to end, in a dev host of this module's own: `hc provision enable`
runs hc-dhcp and hc-provision on the bridge hc0, `hc machine add` names a machine, and a real
qemu (TCG, 512 MiB, one vCPU) on a tap on hc0 plays the machine: its NIC's iPXE boots the
installer over the network, the installer runs the workflow against hc-provision, and the
machine comes up from its own disk with its hostname, its SSH key and its name.

Kept to a few VM boots (TCG, and the whole module within a CI budget of ten minutes): one
install under UEFI (OVMF), during which hc-provision is restarted mid-stream (the image step
fails, is tried again, and the machine is not called installed before it is); the installed
disk booting by itself (boot.ipxe answers `exit`, the firmware goes on to the disk); a copy of
that disk booting under BIOS (SeaBIOS, through the extlinux on the same ESP); a diskless
machine network-booting under SeaBIOS (iPXE there too) and running its image from RAM.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Interface
from typing import Any

import pytest

from homecloud.devhost import DevHost
from tests.conftest import build_debian
from tests.system.baremetal import (
    OVMF_CODE,
    Machine,
    enable_provisioning,
    machine_info,
    start_machine,
    step,
    tap_on_hc0,
)
from tests.system.cli_checks import wait_for

IMAGE = "debian-machine"
MAC, MAC2 = "52:54:00:4e:00:01", "52:54:00:4e:00:02"
WORK = "/var/tmp/machine-install"  # in the dev host: disks, firmware variables, serial logs
DISK_SIZE = "3G"
KEY = f"{WORK}/id_node1"
SSH = ["ssh", "-i", KEY, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
       "-o", "ConnectTimeout=5", "-o", "BatchMode=yes"]
INSTALL_TIMEOUT = 600  # power-on to installed under TCG on a busy 2-core machine
BOOT_TIMEOUT = 240  # from the disk to a login prompt


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
        wait_for("node1's image step to start",
                 lambda: step(node1(host), "image").get("status") == "running", INSTALL_TIMEOUT)
        time.sleep(5)  # some of the stream is on its way
        host.run("systemctl", "restart", "hc-provision.service")
        states = []

        def retried() -> str:
            current = node1(host)
            states.append(current["state"])
            message: str = step(current, "image").get("message", "")
            return message if "try 2" in message else ""
        retry = wait_for("the image step's second try", retried, 120)
        wait_for("node1 to be installed", lambda: node1(host)["state"] == "installed",
                 INSTALL_TIMEOUT)
        wait_for("node1 to boot from its disk to a login prompt",
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
        wait_for("the BIOS boot to reach a login prompt",
                 lambda: "node1 login:" in machine.console(), BOOT_TIMEOUT)
        # SeaBIOS ran the MBR code into extlinux: the kernel found no EFI, as it did under OVMF.
        assert "efi: EFI v" in install.console and "efi: EFI v" not in machine.console()
    finally:
        machine.stop()
        host.run("rm", "-f", copy)


def test_a_diskless_machine_runs_its_image_from_ram(host: DevHost, gateway: IPv4Interface,
                                                    install: Install) -> None:
    """node2 has no disk: the installer unpacks the image into RAM and switches to it (1 GiB:
    the image's tree lives in that RAM)."""
    host.hc("machine", "add", "node2", "--mac", MAC2, "--image", IMAGE, "--diskless",
            "--ssh-key", f"{KEY}.pub")
    with tap_on_hc0(host, "hcitap1") as tap:
        machine = start_machine(host, WORK, "node2", None, uefi=False, tap=tap, mac=MAC2,
                                memory_mib=1024)
        try:
            wait_for("node2 to run from RAM to a login prompt",
                     lambda: "node2 login:" in machine.console(), INSTALL_TIMEOUT)
            node2 = machine_info(host, "node2")
            assert node2["state"] == "installed"
            address = node2["address4"]
            wait_for_ssh(host, address)
            assert sh_on(host, address, "hostname").strip() == "node2"
            assert sh_on(host, address, "findmnt -no FSTYPE /").strip() == "tmpfs"
        finally:
            machine.stop()
            host.hc("machine", "rm", "node2")


def test_image_ls_shows_the_image_installs_on_machines(host: DevHost) -> None:
    [image] = [i for i in host.hc("image", "ls", json=True) if i["name"] == IMAGE]
    assert image["bare_metal"] and not image["vm"]
    assert image["source"] == "build:debian+machine"
    row = next(line.split() for line in host.hc("image", "ls").stdout.splitlines()
               if line.startswith(IMAGE + " "))
    assert row[1] == "container,machine"
