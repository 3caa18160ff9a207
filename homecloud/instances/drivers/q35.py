"""q35 VMs: a full PC as a persistent libvirt domain (qemu:///system), mirrored by
hc-NAME.service (drivers/domain_unit.py), so systemd owns the VM's life as it owns every
instance's while libvirt owns the qemu process.

The prepare-machine step defines the domain (domainxml.py); starting the unit starts it;
removing the instance undefines it with its NVRAM and TPM state. Everything about the VM lives
in libvirt's persistent domain and the instance's dataset (disk, NVRAM, seed, console log), so
the agent may restart or crash at any time.

Ready: homecloud's own images say READY on org.homecloud.ready; an imported disk whose image
runs qemu-guest-agent is ready when the agent answers; any other imported disk when the domain
runs (its guest may still be booting).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from homecloud.errors import HostError, UserError
from homecloud.images.vmimage import ESP, INITRD, KERNEL, VmImage, read_vm_image
from homecloud.instances.cloudinit import seed_path
from homecloud.instances.context import Stdio, StepContext
from homecloud.instances.drivers import domain_unit, libvirt_conn
from homecloud.instances.drivers.domainxml import (
    OVMF_CODE,
    OVMF_PACKAGE,
    DirectBoot,
    Disk,
    DomainConfig,
    domain_name,
    domain_uuid,
    domain_xml,
    slice_partition,
    vnc_socket,
)
from homecloud.instances.drivers.qemu import guest_mac, memory_mib, vcpus
from homecloud.instances.drivers.vm import VmMachine
from homecloud.instances.nocloud import parse_user_data
from homecloud.instances.records import Instance
from homecloud.instances.spec import InstanceSpec
from homecloud.systemd.transient import TransientService, UnitStatus

CONSOLE_LOG = "console.log"
DOMAINCTL = "homecloud.instances.drivers.domainctl"
NVRAM = "nvram.fd"
SWTPM = "swtpm"
SWTPM_PACKAGES = "swtpm swtpm-tools"
# What the unit's process gets beyond the guest's own stop timeout to destroy the domain.
STOP_MARGIN = 10.0


class Q35(VmMachine):
    name = "q35"

    def __init__(self, host: Any) -> None:
        super().__init__(host)
        self._kvm: bool | None = None

    # -- before anything is made ---------------------------------------------------------------
    def validate(self, spec: InstanceSpec, image: VmImage | None) -> None:
        if image is not None:
            check_image(spec, image)
        if spec.cdrom is not None:
            _check_cdrom(spec.cdrom)
        if spec.user_data is not None:
            parse_user_data(spec.user_data)
        if spec.uefi and not OVMF_CODE.exists():
            raise HostError(f"--uefi needs OVMF ({OVMF_CODE} is missing): apt-get install "
                            f"{OVMF_PACKAGE}")
        if spec.tpm and shutil.which(SWTPM) is None:
            raise HostError(f"--tpm needs swtpm: apt-get install {SWTPM_PACKAGES}")
        libvirt_conn.connect().close()  # no libvirtd: one line now, before anything is made

    # -- what a VM is made of ------------------------------------------------------------------
    def dataset_path(self, instance: Instance) -> Path:
        return self.host.pool.path(instance.dataset)

    def image(self, instance: Instance) -> VmImage:
        image = read_vm_image(self.dataset_path(instance))
        if image is None:
            raise HostError(f"instance {instance.name}: its disk's vm.json is missing")
        check_image(instance.spec, image)
        return image

    def kvm(self) -> bool:
        if self._kvm is None:
            from homecloud.instances.drivers.kvm import probe_kvm

            self._kvm = probe_kvm().usable
        return self._kvm

    def console_log(self, instance: Instance) -> Path:
        return self.dataset_path(instance) / CONSOLE_LOG

    def domain_config(self, instance: Instance) -> DomainConfig:
        spec = instance.spec
        root = self.dataset_path(instance)
        image = self.image(instance)
        own = image.layout == "homecloud"
        # An imported disk that only UEFI boots gets UEFI without being asked.
        uefi = spec.uefi or (not own and "bios" not in image.firmware)
        disks: list[Disk] = [Disk(self.host.pool.volume_path(instance.dataset),
                                  boot_order=None if own else 1)]
        direct = None
        if own and uefi:
            disks.append(Disk(root / ESP, boot_order=1))
        elif own:
            direct = DirectBoot(root / KERNEL, root / INITRD if (root / INITRD).exists()
                                else None, image.cmdline)
        seed = seed_path(root)
        if seed.exists():
            disks.append(Disk(seed, readonly=True))
        if spec.cdrom is not None:
            # After the disk: a disk that boots keeps booting; an empty one falls through to
            # the CD-ROM (an installer).
            disks.append(Disk(Path(spec.cdrom), device="cdrom", boot_order=None if own else 2))
        network = self.host.network
        tap = None
        if spec.networked and network is not None:
            from homecloud.network.ifnames import tap_name

            tap = tap_name(spec.name)
        return DomainConfig(
            instance=spec.name, machine_id=instance.machine_id, kvm=self.kvm(),
            vcpus=vcpus(spec.cpus), memory_mib=memory_mib(spec.memory), disks=tuple(disks),
            direct=direct, uefi=uefi, nvram=root / NVRAM if uefi else None, tpm=spec.tpm,
            tap=tap, mac=guest_mac(spec.name), serial_log=self.console_log(instance),
            partition=slice_partition(self.host.slice) if self.host.slice else None,
            ready_channel=own and image.ready_port is not None,
            agent_channel=image.guest_agent)

    def ready_mode(self, instance: Instance) -> str:
        image = self.image(instance)
        if image.layout == "homecloud" and image.ready_port is not None:
            return "port"
        return "agent" if image.guest_agent else "running"

    # -- steps -----------------------------------------------------------------------------------
    def define(self, instance: Instance) -> None:
        conn = libvirt_conn.connect()
        try:
            libvirt_conn.define(conn, domain_xml(self.domain_config(instance)))
        finally:
            conn.close()

    def prepare(self, ctx: StepContext) -> None:
        self.define(ctx.instance)

    def unprepare(self, ctx: StepContext) -> None:
        self._undefine(ctx.instance)

    def _undefine(self, instance: Instance) -> None:
        conn = libvirt_conn.connect()
        try:
            libvirt_conn.undefine(conn, domain_name(instance.name),
                                  domain_uuid(instance.machine_id))
        finally:
            conn.close()

    # -- the unit --------------------------------------------------------------------------------
    def start_unit(self, instance: Instance, timeout: float,
                   stdio: Stdio | None = None) -> UnitStatus:
        conn = libvirt_conn.connect()
        try:
            missing = libvirt_conn.lookup(conn, domain_name(instance.name)) is None
        finally:
            conn.close()
        if missing:  # undefined by hand: the record says all it was
            self.define(instance)
        stop_timeout = self.host.stop_timeout
        argv = [sys.executable, "-m", "homecloud.instances.drivers.domain_unit", instance.name,
                "--ready", self.ready_mode(instance), "--stop-timeout", f"{stop_timeout:g}",
                "--console-log", str(self.console_log(instance))]
        svc = TransientService(
            name=instance.unit, argv=argv,
            description=f"homecloud VM {instance.name} (libvirt domain "
                        f"{domain_name(instance.name)})",
            service_type="notify", notify_access="main", slice=self.host.slice,
            # READY comes when the guest is up: under TCG that may be past systemd's
            # default start timeout (90 s); the creation step's timeout is the one that counts.
            timeout_start=timeout,
            timeout_stop=stop_timeout + STOP_MARGIN, restart=instance.spec.restart,
            accounting=False, environment={"PYTHONUNBUFFERED": "1"},
            extra=[("RestartPreventExitStatus", "(aiai)", ([domain_unit.DESTROYED], []))])
        return self.host.systemd.start_transient(svc, timeout=timeout)

    def stop(self, instance: Instance, timeout: float | None = None) -> None:
        self.host.systemd.stop_unit(instance.unit, timeout)
        self.host.systemd.reset_failed(instance.unit)
        # The unit may have been gone while the domain ran on (its process killed).
        conn = libvirt_conn.connect()
        try:
            dom = libvirt_conn.lookup(conn, domain_name(instance.name))
            if dom is not None:
                libvirt_conn.shut_down(dom, self.host.stop_timeout if timeout is None
                                       else timeout)
        finally:
            conn.close()

    def remove(self, instance: Instance) -> None:
        """Pull the plug at once (a guest being removed needs no clean shutdown), then the
        unit, which exits when its domain is destroyed, the domain and the dataset."""
        conn = libvirt_conn.connect()
        try:
            dom = libvirt_conn.lookup(conn, domain_name(instance.name))
            if dom is not None:
                libvirt_conn.destroy(dom)
        finally:
            conn.close()
        self.host.systemd.discard(instance.unit)
        self._undefine(instance)
        self.host.pool.destroy(instance.dataset)

    # -- reaching it -----------------------------------------------------------------------------
    def exec_argv(self, instance: Instance, argv: Sequence[str]) -> list[str]:
        """CMD through the guest agent, which libvirt holds (drivers/domainctl.py)."""
        if not self.image(instance).guest_agent:
            raise UserError(f"hc exec needs qemu-guest-agent in the guest, and {instance.name}'s "
                            f"image has none: reach it with ssh (--ssh-key), or its console "
                            f"with `hc console {instance.name} --text`")
        return [sys.executable, "-m", DOMAINCTL, "exec", instance.name, "--", *argv]

    @contextlib.contextmanager
    def guest_agent(self, instance: Instance) -> Iterator[Any]:
        """Through libvirt, which holds the domain's agent channel."""
        if not self.image(instance).guest_agent:
            yield None
            return
        conn = libvirt_conn.connect()
        try:
            dom = libvirt_conn.lookup(conn, domain_name(instance.name))
            answers = (dom is not None and libvirt_conn.is_active(dom)
                       and libvirt_conn.agent_answers(dom))
            yield libvirt_conn.DomainAgent(dom, instance.name) if answers else None
        finally:
            conn.close()

    def log_command(self, instance: Instance, *, running: bool, lines: int,
                    follow: bool) -> list[str]:
        """The serial console's log, kept in the VM's dataset."""
        tail = shutil.which("tail") or "/usr/bin/tail"
        return [tail, "-n", str(lines), *(["-F"] if follow else []),
                str(self.console_log(instance))]

    def display_socket(self, instance: Instance) -> str | None:
        """The VNC socket libvirt chose for the running domain."""
        conn = libvirt_conn.connect()
        try:
            dom = libvirt_conn.lookup(conn, domain_name(instance.name))
            path = None if dom is None or not dom.isActive() else vnc_socket(dom.XMLDesc(0))
        finally:
            conn.close()
        return None if path is None else str(path)

    def console(self, instance: Instance) -> Any:
        """The serial console through libvirt (Ctrl-] detaches)."""
        virsh = shutil.which("virsh")
        if virsh is None:
            raise HostError("virsh is missing: apt-get install libvirt-clients")
        return [virsh, "--connect", libvirt_conn.LIBVIRT_URI, "console", "--force",
                domain_name(instance.name)]


def check_image(spec: InstanceSpec, image: VmImage) -> None:
    if "q35" not in image.machines:
        raise UserError(f"image {spec.image!r} does not boot as q35 (it boots as "
                        f"{', '.join(image.machines)})")
    if spec.uefi and "uefi" not in image.firmware:
        raise UserError(f"image {spec.image!r} does not boot with UEFI: drop --uefi")


def _check_cdrom(path: str) -> None:
    if not os.path.isabs(path):
        raise UserError(f"--cdrom {path!r} must be an absolute path on the host")
    if not os.path.exists(path):
        raise UserError(f"--cdrom {path} does not exist on the host")
    if not os.path.isfile(path):
        raise UserError(f"--cdrom {path} is not a file: give an ISO image")
    if not os.access(path, os.R_OK):
        raise UserError(f"--cdrom {path} is not readable")
