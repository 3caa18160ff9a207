"""cloud-init NoCloud seeds for VMs: the cloud-init-seed step of service-sets/vm.yaml."""

from __future__ import annotations

from typing import TYPE_CHECKING

from homecloud.instances.context import StepContext

if TYPE_CHECKING:
    from homecloud.instances.drivers.vm import VmDriver


class CloudInitSeed:
    """Makes the `cidata` disk when the guest needs one (an imported image, --user-data)."""

    def __init__(self, driver: VmDriver) -> None:
        self.driver = driver

    def do(self, ctx: StepContext) -> None:
        if ctx.instance.spec.user_data is not None:
            raise NotImplementedError("cloud-init seeds are not written yet")

    def undo(self, ctx: StepContext) -> None:
        """Nothing was made."""
