"""The step actions only VMs have (service-sets/vm.yaml):

    vm-disk          the forked volume grown to --disk; the guest grows its file system at
                     boot (x-systemd.growfs in the image's fstab)
    vm-identity      hostname, machine-id, hosts, resolvers, static network and root's SSH keys
                     written into the disk of homecloud's own images (vm_identity.py); an
                     imported whole disk learns them through cloud-init instead
    cloud-init-seed  a NoCloud seed, when the guest needs one (cloudinit.py)
    prepare-machine  what the machine needs before its unit starts (drivers/vm.py VmMachine)

Each undoes itself; what is written into the fork goes with the dataset's own undo.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from homecloud.instances.cloudinit import CloudInitSeed
from homecloud.instances.context import StepContext
from homecloud.instances.drivers.qemu import guest_mac
from homecloud.instances.rootfs import GuestNetwork
from homecloud.instances.servicesets import ActionFactory, plain_action
from homecloud.instances.vm_identity import (
    VmNetwork,
    identity_files,
    read_guest_file,
    write_guest_files,
)

if TYPE_CHECKING:
    from homecloud.instances.drivers.vm import VmDriver


def vm_actions(driver: VmDriver) -> Mapping[str, ActionFactory[StepContext]]:
    host = driver.host

    class Disk:
        def do(self, ctx: StepContext) -> None:
            if ctx.instance.spec.disk is not None:
                host.pool.resize_volume(ctx.instance.dataset, ctx.instance.spec.disk)

        def undo(self, ctx: StepContext) -> None:
            """The dataset's own undo removes the volume."""

    class Identity:
        def do(self, ctx: StepContext) -> None:
            image = driver.instance_image(ctx.instance)
            if image.layout != "homecloud":
                return  # cloud-init-seed tells an imported disk
            volume = host.pool.volume_path(ctx.instance.dataset)
            spec = ctx.instance.spec
            files = identity_files(spec.name, ctx.instance.machine_id,
                                   read_guest_file(volume, "etc/hosts"),
                                   vm_network(driver, ctx), spec.ssh_keys)
            write_guest_files(volume, files)

        def undo(self, ctx: StepContext) -> None:
            """The dataset's own undo removes what was written."""

    class PrepareMachine:
        def do(self, ctx: StepContext) -> None:
            driver.machine(ctx.instance.spec).prepare(ctx)

        def undo(self, ctx: StepContext) -> None:
            driver.machine(ctx.instance.spec).unprepare(ctx)

    class Seed(CloudInitSeed):
        def __init__(self) -> None:
            super().__init__(driver)

    return {"vm-disk": plain_action(Disk), "vm-identity": plain_action(Identity),
            "prepare-machine": plain_action(PrepareMachine),
            "cloud-init-seed": plain_action(Seed)}


def vm_network(driver: VmDriver, ctx: StepContext) -> VmNetwork | None:
    """What the guest is told of its network; None without one (--network none)."""
    network = driver.host.network
    if network is None or ctx.addresses is None or not ctx.networked:
        return None
    plan = network.plan
    addresses = (str(ctx.addresses.ipv4), str(ctx.addresses.ipv6))
    return VmNetwork(
        mac=guest_mac(ctx.instance_name),
        addresses=tuple(str(i) for i in plan.guest_interfaces(ctx.addresses)),
        gateways=tuple(str(g) for g in plan.gateways),
        guest=GuestNetwork(addresses=addresses,
                           nameservers=tuple(str(g) for g in plan.gateways),
                           search=plan.names.origin))

