"""A bare machine played by qemu in a dev host, for the install tests and the machine bench:
provisioning on hc0, a tap into it, and qemu (TCG, one vCPU, 512 MiB) with a raw disk, the
network first, under OVMF or SeaBIOS, its serial console in a file."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

from homecloud.devhost import DevHost
from tests.system.cli_checks import wait_for

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
MEMORY_MIB = 512


def import_stand_in_image(host: DevHost, image: str) -> None:
    """A tiny image with the files a machine image has (a kernel, an initrd, an init): enough
    for what is checked before a machine boots it; nothing boots it."""
    host.run("sh", "-c", "mkdir -p /tmp/tree/bin /tmp/tree/boot /tmp/tree/usr /tmp/tree/sbin && "
             "cp /bin/busybox /tmp/tree/bin/ && ln -s /bin/busybox /tmp/tree/sbin/init && "
             "echo kernel > /tmp/tree/boot/vmlinuz-0 && echo initrd > /tmp/tree/boot/initrd.img-0")
    host.hc("image", "import", image, "/tmp/tree", "-q")


def enable_provisioning(host: DevHost) -> IPv4Interface:
    """`hc provision enable` with full DHCP on hc0 (the top of its subnet); hc0's address."""
    data = json.loads(host.run("ip", "-j", "-4", "addr", "show", "hc0").stdout)
    info = data[0]["addr_info"][0]
    address = IPv4Interface(f"{info['local']}/{info['prefixlen']}")
    net = address.network
    host.hc("provision", "enable", "--interface", "hc0", "--dhcp-range", f"{net[-56]}-{net[-6]}")
    return address


@contextmanager
def tap_on_hc0(host: DevHost, name: str) -> Iterator[str]:
    host.run("ip", "tuntap", "add", name, "mode", "tap")
    try:
        host.run("ip", "link", "set", name, "master", "hc0", "up")
        yield name
    finally:
        host.run("ip", "link", "delete", name, check=False)


def step(machine: dict[str, Any], step_id: str) -> dict[str, Any]:
    """One step's state; empty before the installer has fetched the workflow."""
    return next((s for s in machine["steps"] if s["id"] == step_id), {})


@dataclass
class Machine:
    """A running qemu and the file its serial console goes to (in the dev host)."""

    host: DevHost
    process: subprocess.Popen[bytes]  # nsenter, which outlives qemu but not the other way
    serial: str
    pidfile: str  # qemu's pid in the dev host

    def console(self) -> str:
        return self.host.run("cat", self.serial, check=False).stdout

    def powered_off(self) -> bool:
        """The machine switched itself off (qemu exits on the guest's poweroff)."""
        return self.process.poll() is not None

    def stop(self) -> None:
        if self.process.poll() is None:
            # qemu itself: ending nsenter would leave it running in the dev host.
            self.host.run("sh", "-c", f'kill "$(cat {self.pidfile})"', check=False)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.host.run("sh", "-c", f'kill -KILL "$(cat {self.pidfile})"', check=False)
                self.process.kill()
                self.process.wait()


def start_machine(host: DevHost, work: str, name: str, disk: str | None, *, uefi: bool,
                  tap: str | None = None, mac: str | None = None,
                  memory_mib: int = MEMORY_MIB) -> Machine:
    """qemu with ``disk`` (after the network, when ``tap`` is given); files under ``work``."""
    serial, pidfile = f"{work}/{name}-serial.log", f"{work}/{name}.pid"
    host.run("rm", "-f", serial, pidfile)
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", str(memory_mib), "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
            "-serial", f"file:{serial}", "-pidfile", pidfile]
    if disk is not None:
        # Through the host's page cache: the guest's flushes cost nothing here, and no disk
        # outlives its test.
        argv += ["-drive", f"file={disk},format=raw,if=none,id=d0,cache=unsafe",
                 "-device", "virtio-blk-pci,drive=d0,bootindex=2"]
    if uefi:
        variables = f"{work}/{name}-vars.fd"
        host.run("cp", str(OVMF_VARS), variables)
        argv += ["-M", "q35", "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                 "-drive", f"if=pflash,format=raw,file={variables}",
                 # OVMF's own network boot (PXE and HTTP boot, IPv4 and IPv6) off, as on a
                 # machine set up to boot the NIC's iPXE: after iPXE's `exit` the firmware
                 # would try each in turn, a minute of timeouts, before the disk.
                 "-fw_cfg", "name=opt/org.tianocore/IPv4Support,string=no",
                 "-fw_cfg", "name=opt/org.tianocore/IPv6Support,string=no"]
    else:
        argv += ["-M", "pc"]
    if tap is not None:
        argv += ["-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
                 "-device", f"virtio-net-pci,netdev=n0,mac={mac},bootindex=1"]
    process = subprocess.Popen(host.command(argv), env=host.environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Machine(host, process, serial, pidfile)


def wait_for_machines(machines: dict[str, Machine], what: str, check: Callable[[], Any],
                      timeout: float) -> Any:
    """wait_for, with the end of each machine's console in the error when it times out."""
    try:
        return wait_for(what, check, timeout)
    except AssertionError as exc:
        ends = "".join(f"\n--- {name}'s console, its end:\n{machine.console()[-2000:]}"
                       for name, machine in machines.items())
        raise AssertionError(f"{exc}{ends}") from None


@dataclass(frozen=True)
class Boot:
    """A machine to switch on: its name, MAC, disk size (None: no disk) and firmware."""

    name: str
    mac: str
    disk_size: str | None
    uefi: bool = False
    memory_mib: int = MEMORY_MIB

    def disk(self, work: str) -> str | None:
        return None if self.disk_size is None else f"{work}/{self.name}.raw"


@contextmanager
def machines_on(host: DevHost, work: str, boots: Sequence[Boot]) -> Iterator[dict[str, Machine]]:
    """Every machine of ``boots`` with an empty disk and a tap of its own on hc0, switched on
    one right after the other once all are ready; all switched off on exit."""
    with ExitStack() as stack:
        taps = {boot.name: stack.enter_context(tap_on_hc0(host, f"hcitap-{boot.name}"))
                for boot in boots}
        for boot in boots:
            disk = boot.disk(work)
            if disk is not None:
                host.run("rm", "-f", disk)
                host.run("truncate", "-s", str(boot.disk_size), disk)
        running: dict[str, Machine] = {}
        for boot in boots:
            running[boot.name] = start_machine(host, work, boot.name, boot.disk(work),
                                               uefi=boot.uefi, tap=taps[boot.name],
                                               mac=boot.mac, memory_mib=boot.memory_mib)
            stack.callback(running[boot.name].stop)
        yield running
