"""The step actions every kind's service set can use; a driver adds its own (drivers/).

    record-instance   the row, phase 'creating': claims the name, marks the work half-made
    fork-dataset      the image's dataset forked copy-on-write (a directory tree or a volume),
                      or, for a clone, the source instance's snapshot
    start-unit        the driver starts the instance's unit (with: {timeout: seconds})
    mark-ready        phase 'ready': from here on a crash leaves a finished instance
    attach-network    on start: the namespace again after a reboot, or, for an instance with
                      no address, the join-network service set
and the network's steps (network_steps.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from homecloud.images.catalog import image_dataset
from homecloud.instances.context import StepContext
from homecloud.instances.drivers.base import InstanceDriver
from homecloud.instances.records import InstanceRecords
from homecloud.instances.servicesets import ActionFactory, plain_action

if TYPE_CHECKING:
    from homecloud.network.service import NetworkService


def common_actions(records: InstanceRecords, driver: InstanceDriver,
                   network: NetworkService | None,
                   join_network: Callable[[StepContext], None]
                   ) -> Mapping[str, ActionFactory[StepContext]]:
    host = driver.host

    class Record:
        def do(self, ctx: StepContext) -> None:
            records.insert(ctx.instance)

        def undo(self, ctx: StepContext) -> None:
            records.forget_creating(ctx.instance.name)

    class Fork:
        def do(self, ctx: StepContext) -> None:
            source = ctx.origin.source_of(ctx.instance.dataset) if ctx.origin else None
            if source is None:
                host.pool.fork(image_dataset(ctx.instance.spec.image), ctx.instance.dataset)
            else:
                host.pool.fork(source[0], ctx.instance.dataset, snapshot=source[1])

        def undo(self, ctx: StepContext) -> None:
            host.pool.destroy(ctx.instance.dataset)

    class StartUnit:
        def __init__(self, timeout: float | None = None) -> None:
            self.timeout = float(timeout) if timeout is not None else host.start_timeout

        def do(self, ctx: StepContext) -> None:
            ctx.status = driver.start_unit(ctx.instance_to_start(), self.timeout, ctx.stdio)

        def undo(self, ctx: StepContext) -> None:
            host.systemd.discard(ctx.instance.unit)

    class MarkReady:
        def do(self, ctx: StepContext) -> None:
            records.set_phase(ctx.instance.name, "ready")

        def undo(self, ctx: StepContext) -> None:
            records.set_phase(ctx.instance.name, "creating")

    class AttachNetwork:
        def do(self, ctx: StepContext) -> None:
            # /run/netns is a tmpfs: after a reboot the namespace is made again from the
            # lease; an instance with no lease joins the network now.
            if network is not None and ctx.networked and not network.replumb(ctx.instance_name):
                join_network(ctx)

        def undo(self, ctx: StepContext) -> None:
            """Joining undoes itself whole when it fails; a namespace made again is kept."""

    factories: dict[str, Callable[[Mapping[str, Any]], Any]] = {
        "record-instance": plain_action(Record), "fork-dataset": plain_action(Fork),
        "start-unit": plain_action(StartUnit), "mark-ready": plain_action(MarkReady),
        "attach-network": plain_action(AttachNetwork),
    }
    return factories
