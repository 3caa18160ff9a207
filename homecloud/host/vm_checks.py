"""`hc doctor`'s check of what VMs need: qemu, and whether KVM runs a guest here (without it
VMs still run, under TCG, several times slower). Kept light, as the CLI imports it."""

from __future__ import annotations

import shutil

from homecloud.host.checks import Failed


def kvm() -> str:
    from homecloud.instances.drivers.kvm import probe_kvm
    from homecloud.instances.drivers.qemu import QEMU, QEMU_PACKAGE

    if shutil.which(QEMU) is None:
        raise Failed(f"{QEMU} is not installed: `hc run --vm` cannot start VMs",
                     f"apt-get install --no-install-recommends {QEMU_PACKAGE}")
    state = probe_kvm()
    if not state.usable:
        return f"VMs run under TCG, several times slower than KVM: {state.reason}"
    return f"VMs run under KVM: {state.reason}"
