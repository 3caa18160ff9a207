"""The qemu command line of a microVM (pure logic: no I/O).

    qemu-system-x86_64 -M microvm  direct kernel boot of the image's kernel and initrd
      virtio-blk                   the instance's forked volume
      virtio-net                   a tap on the bridge, with a MAC derived from the name
      ttyS0                        on qemu's stdout: the unit's journal is the serial console
      virtio-serial                the READY port, the guest agent's port and a text console
                                   (hvc0), each a UNIX socket in the VM's runtime directory
      QMP                          a UNIX socket, for a clean poweroff

Every socket lives in the unit's runtime directory (/run/homecloud/vms/NAME), which systemd
makes as the unit starts and removes when it stops.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from homecloud.images.vmimage import READY_PORT

QEMU = "qemu-system-x86_64"
QEMU_PACKAGE = "qemu-system-x86"
GUEST_AGENT_PORT = "org.qemu.guest_agent.0"
RUNTIME_ROOT = Path("/run")
RUNTIME_SUBDIR = "homecloud/vms"
# Below this the Debian cloud kernel, its initrd and systemd do not fit (measured: 96 MiB
# panics in the initrd, 128 MiB boots).
MIN_VM_MEMORY = 128 << 20
DEFAULT_VM_MEMORY = 512 << 20
DEFAULT_VM_CPUS = 2  # 2 vCPUs boot faster than 1 under TCG (ENVIRONMENT.md)


@dataclass(frozen=True)
class VmSockets:
    """The UNIX sockets of one VM (qemu listens on each)."""

    directory: Path

    @property
    def qmp(self) -> Path:
        return self.directory / "qmp.sock"

    @property
    def ready(self) -> Path:
        return self.directory / "ready.sock"

    @property
    def agent(self) -> Path:
        return self.directory / "agent.sock"

    @property
    def console(self) -> Path:
        return self.directory / "console.sock"


def runtime_subdir(instance: str) -> str:
    """The unit's RuntimeDirectory= (relative to /run)."""
    return f"{RUNTIME_SUBDIR}/{instance}"


def vm_sockets(instance: str, root: Path = RUNTIME_ROOT) -> VmSockets:
    return VmSockets(root / runtime_subdir(instance))


def guest_mac(instance: str) -> str:
    """A fixed, locally administered unicast MAC for the VM's NIC: the same name always gets
    the same MAC, so the guest's network and the host's neighbour entries stay valid across
    restarts."""
    raw = bytearray(hashlib.sha256(f"homecloud/vm-mac\0{instance}".encode()).digest()[:6])
    raw[0] = (raw[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


def vcpus(cpus: float | None) -> int:
    """--cpus 1.5 gives the guest 2 vCPUs (whole CPUs are what a guest can have)."""
    return DEFAULT_VM_CPUS if cpus is None else max(1, math.ceil(cpus))


def memory_mib(memory: int | None) -> int:
    return (memory if memory is not None else DEFAULT_VM_MEMORY) >> 20


@dataclass(frozen=True)
class MicroVmConfig:
    name: str
    kernel: Path
    initrd: Path | None
    cmdline: str
    disk: Path
    sockets: VmSockets
    kvm: bool  # -accel kvm when the host's KVM runs a vCPU, else TCG
    cpus: float | None = None
    memory: int | None = None  # bytes
    tap: str | None = None  # None: no NIC (--network none)
    tsc_khz: int | None = None  # the host's TSC rate, told to a TCG guest
    qemu: str = QEMU


def kernel_cmdline(config: MicroVmConfig) -> str:
    """The image's command line; under TCG with the TSC rate given, so the guest need not
    calibrate it: microvm has no HPET or PM timer, and calibrating against the PIT fails on a
    busy host (measured), leaving the guest hung."""
    if config.kvm or config.tsc_khz is None:
        return config.cmdline
    return f"{config.cmdline} tsc_early_khz={config.tsc_khz}".strip()


def _chardev_socket(name: str, path: Path) -> list[str]:
    # server=on,wait=off: qemu listens and runs without a client; one can attach any time.
    return ["-chardev", f"socket,id={name},path={path},server=on,wait=off"]


def microvm_argv(config: MicroVmConfig) -> list[str]:
    sockets = config.sockets
    argv = [
        config.qemu, "-name", f"{config.name},debug-threads=on",
        "-nodefaults", "-no-user-config", "-display", "none",
        # ACPI on: QMP system_powerdown presses a power button the guest's systemd obeys.
        "-M", "microvm,acpi=on",
        "-accel", "kvm" if config.kvm else "tcg",
        # The default CPU under TCG: `-cpu max` is slower and hangs now and then (measured).
        *(["-cpu", "host"] if config.kvm else []),
        "-smp", str(vcpus(config.cpus)),
        "-m", f"{memory_mib(config.memory)}M",
        "-kernel", str(config.kernel),
        *(["-initrd", str(config.initrd)] if config.initrd is not None else []),
        "-append", kernel_cmdline(config),
        "-drive", f"id=root,file={config.disk},format=raw,if=none,discard=unmap",
        "-device", "virtio-blk-device,drive=root",
        "-chardev", "stdio,id=serial,signal=off",
        "-serial", "chardev:serial",
        "-device", "virtio-serial-device",
        *_chardev_socket("ready", sockets.ready),
        "-device", f"virtserialport,chardev=ready,name={READY_PORT}",
        *_chardev_socket("agent", sockets.agent),
        "-device", f"virtserialport,chardev=agent,name={GUEST_AGENT_PORT}",
        *_chardev_socket("console", sockets.console),
        "-device", "virtconsole,chardev=console",
        *_chardev_socket("qmp", sockets.qmp),
        "-mon", "chardev=qmp,mode=control",
    ]
    if config.tap is not None:
        # vhost-net needs KVM's ioeventfd: under TCG qemu moves the packets itself.
        vhost = "on" if config.kvm else "off"
        argv += ["-netdev", f"tap,id=net,ifname={config.tap},script=no,downscript=no,"
                            f"vhost={vhost}",
                 "-device", f"virtio-net-device,netdev=net,mac={guest_mac(config.name)}"]
    return argv
