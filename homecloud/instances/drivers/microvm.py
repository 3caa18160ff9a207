"""The microvm machine: qemu -M microvm as hc-NAME.service, a transient unit systemd owns.

qemu boots the kernel and initrd in the instance's fork of the image straight from the host
(no firmware), its root file system the fork's volume. The unit is up when qemu runs; the
instance is ready when the guest writes READY=1 on its virtio-serial port, read here from the
port's socket. The serial console (ttyS0) is qemu's stdout, so the unit's journal is the
guest's console log. Stopping presses the guest's power button through QMP (the unit's
ExecStop) and waits for it to power off; systemd kills what is left after TimeoutStopSec.
Neither an agent restart nor its crash touches a running VM: systemd owns qemu.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from homecloud.errors import Conflict, UserError
from homecloud.images.vmimage import INITRD, KERNEL, VmImage
from homecloud.instances.context import Stdio
from homecloud.instances.drivers.base import DriverHost
from homecloud.instances.drivers.kvm import KvmState, probe_kvm
from homecloud.instances.drivers.qemu import (
    QEMU,
    QEMU_PACKAGE,
    MicroVmConfig,
    microvm_argv,
    runtime_subdir,
    vm_sockets,
)
from homecloud.instances.drivers.vm import VmMachine
from homecloud.instances.records import Instance
from homecloud.instances.spec import InstanceSpec
from homecloud.network.ifnames import tap_name
from homecloud.systemd.journal import unit_argv, unit_lines
from homecloud.systemd.transient import TransientService, UnitFailed, UnitStatus
from homecloud.tools import require_tool

log = logging.getLogger(__name__)
VMCTL = "homecloud.instances.drivers.vmctl"
READY_LINE = b"READY=1"
CONSOLE_LINES = 15  # shown when a guest never becomes ready
# Under TCG a guest runs several times slower, its shutdown too (about 1 s on a quiet machine,
# over 30 s on a loaded 2-core one): it gets this many stop timeouts to power off before qemu
# is killed, so a sleep or `hc stop` stays a clean poweroff.
TCG_STOP_FACTOR = 3.0


class MicroVm(VmMachine):
    name = "microvm"

    def __init__(self, host: DriverHost) -> None:
        super().__init__(host)
        self._kvm: KvmState | None = None

    def kvm(self) -> KvmState:
        """Probed once per agent: the answer does not change while it runs."""
        if self._kvm is None:
            self._kvm = probe_kvm()
            if not self._kvm.usable:
                log.warning("KVM is not usable (%s): VMs run under TCG, several times slower",
                            self._kvm.reason)
        return self._kvm

    def validate(self, spec: InstanceSpec, image: VmImage | None) -> None:
        refused = [option for option, given in (("--uefi", spec.uefi), ("--tpm", spec.tpm),
                                                ("--cdrom", spec.cdrom is not None)) if given]
        if refused:
            raise UserError(f"{', '.join(refused)} {'needs' if len(refused) == 1 else 'need'} "
                            "a full PC: add --machine q35 (microvm has no firmware, TPM or "
                            "CD-ROM)")
        require_tool(QEMU, QEMU_PACKAGE)
        if image is not None and (image.layout != "homecloud" or self.name not in
                                  image.machines):
            raise UserError(f"image {spec.image!r} has no kernel to boot directly (an "
                            "imported disk boots its own): run it with --machine q35")

    # -- the unit --------------------------------------------------------------------------------
    def service(self, instance: Instance) -> TransientService:
        spec = instance.spec
        root = self.host.pool.path(instance.dataset)
        image = read_image(root)
        initrd = root / INITRD
        networked = spec.networked and self.host.network is not None
        config = MicroVmConfig(
            name=spec.name, kernel=root / KERNEL,
            initrd=initrd if initrd.exists() else None, cmdline=image.cmdline,
            disk=self.host.pool.volume_path(instance.dataset), sockets=vm_sockets(spec.name),
            kvm=self.kvm().usable, tsc_khz=host_tsc_khz(), cpus=spec.cpus,
            memory=spec.memory,
            tap=tap_name(spec.name) if networked else None)
        stop_timeout = guest_stop_timeout(self.host.stop_timeout, kvm=config.kvm)
        stop_argv = [sys.executable, "-m", VMCTL, "powerdown", str(config.sockets.qmp),
                     f"{stop_timeout:g}"]
        return TransientService(
            name=instance.unit, argv=microvm_argv(config),
            description=f"homecloud VM {spec.name}", slice=self.host.slice,
            # Up once qemu runs; READY comes from the guest, over its port (wait_ready).
            service_type="exec", tasks_max=4096,
            timeout_stop=stop_timeout + 5.0, kill_mode="mixed",
            restart=spec.restart, restart_sec=1.0 if spec.restart != "no" else None,
            device_policy="closed",
            device_allow=(("/dev/kvm", "rw"), ("/dev/net/tun", "rw"),
                          ("/dev/vhost-net", "rw")),
            extra=(("RuntimeDirectory", "as", [runtime_subdir(spec.name)]),
                   ("ExecStop", "a(sasb)", [(stop_argv[0], stop_argv, False)])))

    def start_unit(self, instance: Instance, timeout: float,
                   stdio: Stdio | None = None) -> UnitStatus:
        deadline = time.monotonic() + timeout
        status = self.host.systemd.start_transient(self.service(instance), timeout=timeout)
        try:
            self.wait_ready(instance, deadline)
        except BaseException:
            # A guest that never became ready is not worth a clean poweroff (it may not even
            # heed the power button yet): its disk goes with it.
            self.host.systemd.signal_unit(instance.unit, signal.SIGKILL, "all")
            self.host.systemd.discard(instance.unit)
            raise
        return self.host.systemd.unit_status(instance.unit) or status

    def wait_ready(self, instance: Instance, deadline: float) -> None:
        """Read the guest's READY port until it says READY=1; UnitFailed with the console's
        last lines when qemu exits or ``deadline`` passes first. A connection qemu drops
        while it sets the port up is made again."""
        received = b""
        while READY_LINE not in received and time.monotonic() < deadline:
            port = connect_when_listening(vm_sockets(instance.name).ready, deadline,
                                          lambda: self._running(instance))
            if port is None:
                break
            with port:
                received = _read_until_ready(port, deadline)
            if READY_LINE not in received:
                time.sleep(0.05)
        if READY_LINE in received:
            return
        if time.monotonic() >= deadline:
            raise self._not_ready(instance, "did not become ready within the start timeout")
        raise self._not_ready(instance, "stopped before it was ready")

    def _running(self, instance: Instance) -> bool:
        status = self.host.systemd.unit_status(instance.unit)
        return status is not None and status.active_state in ("active", "activating")

    def _not_ready(self, instance: Instance, what: str) -> UnitFailed:
        lines = unit_lines(instance.unit, CONSOLE_LINES)
        return UnitFailed(f"VM {instance.name} {what}", lines)

    def stop(self, instance: Instance, timeout: float | None = None) -> None:
        self.host.systemd.stop_unit(instance.unit, timeout)
        self.host.systemd.reset_failed(instance.unit)

    def remove(self, instance: Instance) -> None:
        self.host.systemd.discard(instance.unit)
        self.host.pool.destroy(instance.dataset)

    # -- reaching it -----------------------------------------------------------------------------
    def _socket(self, instance: Instance, which: str) -> str:
        path: Path = getattr(vm_sockets(instance.name), which)
        if not path.exists():
            raise Conflict(f"instance {instance.name} is not running; start it with "
                           f"`hc start {instance.name}`")
        return str(path)

    def exec_argv(self, instance: Instance, argv: Sequence[str]) -> list[str]:
        return [sys.executable, "-m", VMCTL, "exec", self._socket(instance, "agent"),
                instance.name, "--", *argv]

    def log_command(self, instance: Instance, *, running: bool, lines: int,
                    follow: bool) -> list[str]:
        return unit_argv(instance.unit, lines, follow=follow)

    def console(self, instance: Instance) -> Any:
        return [sys.executable, "-m", VMCTL, "console", self._socket(instance, "console"),
                instance.name]

    @contextlib.contextmanager
    def guest_agent(self, instance: Instance) -> Iterator[Any]:
        from homecloud.instances.drivers.qmp import ProtocolError, guest_agent

        try:
            channel = guest_agent(vm_sockets(instance.name).agent, instance.name)
        except ProtocolError:  # not running, or no agent answers
            yield None
            return
        with channel:
            channel.sock.settimeout(AGENT_COMMAND_TIMEOUT)
            yield channel


AGENT_COMMAND_TIMEOUT = 10.0  # seconds a guest agent command may take (TCG guests are slow)


def guest_stop_timeout(stop_timeout: float, *, kvm: bool) -> float:
    """Seconds a guest gets to power off: the host's stop timeout, longer under TCG."""
    return stop_timeout if kvm else stop_timeout * TCG_STOP_FACTOR


def host_tsc_khz(cpuinfo: Path = Path("/proc/cpuinfo")) -> int | None:
    """The host CPU's clock in kHz, which a TCG guest's TSC runs at; None if unknown."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("cpu MHz"):
            return round(float(line.partition(":")[2]) * 1000)
    return None


def read_image(root: Path) -> VmImage:
    from homecloud.images.vmimage import read_vm_image

    image = read_vm_image(root)
    if image is None:
        raise UserError(f"{root} holds no vm.json: not a VM's disk")
    return image


def _read_until_ready(port: socket.socket, deadline: float) -> bytes:
    """What the guest wrote, once it holds READY=1, the connection ends or ``deadline``
    passes."""
    received = b""
    while READY_LINE not in received:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        port.settimeout(min(left, 1.0))
        try:
            chunk = port.recv(4096)
        except TimeoutError:
            continue
        except OSError:  # reset
            break
        if not chunk:
            break
        received = received[-64:] + chunk
    return received


def connect_when_listening(path: Path, deadline: float,
                           running: Callable[[], bool]) -> socket.socket | None:
    """A connection to qemu's socket ``path`` once qemu listens on it (it makes it as it
    starts); None if qemu exits or ``deadline`` passes first."""
    pause = 0.01
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except OSError:
            sock.close()
        if time.monotonic() > deadline or not running():
            return None
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
