"""The VM driver: a virtual machine on a copy-on-write fork of a VM image's disk.

One kind, two machines behind one small interface (VmMachine), found by name like drivers are:

    microvm  qemu -M microvm, direct kernel boot, virtio; qemu runs as hc-NAME.service, owned
             by systemd (drivers/microvm.py)
    q35      a full PC through libvirt (persistent domain, OVMF + NVRAM, swtpm, VNC on a UNIX
             socket); hc-NAME.service mirrors the domain (drivers/q35.py)

The steps of service-sets/vm.yaml that only VMs have are this driver's actions:

    vm-disk          the forked disk grown to --disk
    vm-identity      hostname, machine-id, static network, SSH keys written into the disk of
                     homecloud's own images (imported images get them through cloud-init)
    cloud-init-seed  a NoCloud `cidata` disk (instances/cloudinit.py), when there is something
                     to tell cloud-init (imported images, --user-data)
    prepare-machine  what the machine needs before its unit starts (q35: the libvirt domain)
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from homecloud.classpath import load_class
from homecloud.errors import HostError, UserError
from homecloud.images.catalog import image_dataset
from homecloud.images.vmimage import VmImage, read_vm_image
from homecloud.instances.context import Stdio, StepContext
from homecloud.instances.drivers.base import CONSOLE, EXEC, DriverHost, InstanceDriver
from homecloud.instances.drivers.qemu import MIN_VM_MEMORY
from homecloud.instances.records import Instance
from homecloud.instances.servicesets import ActionFactory
from homecloud.instances.spec import InstanceSpec
from homecloud.sizes import format_size
from homecloud.systemd.transient import UnitStatus

DEFAULT_MACHINE = "microvm"
MACHINES: Mapping[str, str] = {
    "microvm": "homecloud.instances.drivers.microvm:MicroVm",
    "q35": "homecloud.instances.drivers.q35:Q35",
}


class VmMachine(ABC):
    """One way of running a VM. Methods mirror InstanceDriver's, for one machine type."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, host: DriverHost) -> None:
        self.host = host

    def validate(self, spec: InstanceSpec,  # noqa: B027 (most machines take any spec)
                 image: VmImage | None) -> None:
        """Refuse, before anything is made, what this machine cannot run. ``image``: the VM
        image's description (None when the image does not exist: the manager says so)."""

    def prepare(self, ctx: StepContext) -> None:  # noqa: B027
        """Make what the unit needs (the prepare-machine step)."""

    def unprepare(self, ctx: StepContext) -> None:  # noqa: B027
        """Undo ``prepare``; idempotent."""

    @abstractmethod
    def start_unit(self, instance: Instance, timeout: float,
                   stdio: Stdio | None = None) -> UnitStatus: ...

    @abstractmethod
    def stop(self, instance: Instance, timeout: float | None = None) -> None: ...

    @abstractmethod
    def remove(self, instance: Instance) -> None: ...

    @abstractmethod
    def exec_argv(self, instance: Instance, argv: Sequence[str]) -> list[str]: ...

    @abstractmethod
    def log_command(self, instance: Instance, *, running: bool, lines: int,
                    follow: bool) -> list[str]: ...

    @abstractmethod
    def console(self, instance: Instance) -> Any:
        """`hc console NAME --text`: a host command line attaching this terminal to the
        guest's text console (run like `hc exec`'s, with the client's terminal)."""

    def display_socket(self, instance: Instance) -> str | None:
        """The running VM's VNC socket; None: this machine has no screen."""
        return None

    def guest_agent(self, instance: Instance) -> contextlib.AbstractContextManager[Any]:
        """See InstanceDriver.guest_agent."""
        return contextlib.nullcontext(None)


class VmDriver(InstanceDriver):
    kind = "vm"
    description = "a virtual machine (qemu microvm under systemd, or q35 through libvirt)"
    capabilities = frozenset({EXEC, CONSOLE})

    def __init__(self, host: DriverHost) -> None:
        super().__init__(host)
        self._machines: dict[str, VmMachine] = {}

    def machine(self, spec: InstanceSpec) -> VmMachine:
        name = spec.machine or DEFAULT_MACHINE
        loaded = self._machines.get(name)
        if loaded is not None:
            return loaded
        path = MACHINES.get(name)
        if path is None:
            raise UserError(f"--machine {name!r} is not known: use "
                            f"{' or '.join(sorted(MACHINES))}")
        cls = load_class(path, VmMachine, f"the {name} machine", "a VM machine")
        machine = cls(self.host)
        self._machines[name] = machine
        return machine

    def validate(self, spec: InstanceSpec) -> None:
        if spec.command:
            raise UserError("a VM boots; it does not run a command in place of its init: drop "
                            "`-- CMD`, or run it with `hc exec` once the VM is up")
        if spec.binds:
            raise UserError("--bind is for containers: a VM has disks of its own")
        if spec.memory is not None and spec.memory < MIN_VM_MEMORY:
            raise UserError(f"--memory {format_size(spec.memory)} is too small: a VM's kernel "
                            f"needs at least {format_size(MIN_VM_MEMORY)}")
        self.machine(spec).validate(spec, self.image(spec.image))

    def image(self, name: str) -> VmImage | None:
        """The VM description of image ``name``; None when there is no such image. A
        container image is refused with what to do."""
        dataset = image_dataset(name)
        if not self.host.pool.exists(dataset):
            return None
        image = read_vm_image(self.host.pool.path(dataset))
        if image is None:
            raise UserError(f"image {name!r} is not a VM image (it is a container's tree): "
                            "build one with `hc image build debian --vm`, or import a disk")
        return image

    def instance_image(self, instance: Instance) -> VmImage:
        """The VM description in the instance's own fork (it outlives the image)."""
        image = read_vm_image(self.host.pool.path(instance.dataset))
        if image is None:
            raise HostError(f"instance {instance.name}: its disk's vm.json is missing")
        return image

    def actions(self) -> Mapping[str, ActionFactory[StepContext]]:
        from homecloud.instances.vm_steps import vm_actions

        return vm_actions(self)

    def start_unit(self, instance: Instance, timeout: float,
                   stdio: Stdio | None = None) -> UnitStatus:
        return self.machine(instance.spec).start_unit(instance, timeout, stdio)

    def stop(self, instance: Instance, timeout: float | None = None) -> None:
        self.machine(instance.spec).stop(instance, timeout)

    def remove(self, instance: Instance) -> None:
        self.machine(instance.spec).remove(instance)

    def exec_argv(self, instance: Instance, argv: Sequence[str]) -> list[str]:
        return self.machine(instance.spec).exec_argv(instance, argv)

    def log_command(self, instance: Instance, *, running: bool, lines: int,
                    follow: bool) -> list[str]:
        return self.machine(instance.spec).log_command(instance, running=running, lines=lines,
                                                       follow=follow)

    def console(self, instance: Instance) -> Any:
        return self.machine(instance.spec).console(instance)

    def display_socket(self, instance: Instance) -> str | None:
        return self.machine(instance.spec).display_socket(instance)

    def guest_agent(self, instance: Instance) -> contextlib.AbstractContextManager[Any]:
        return self.machine(instance.spec).guest_agent(instance)
