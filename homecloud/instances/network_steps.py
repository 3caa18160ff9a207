"""The creation steps that put an instance on the network (service-sets/container.yaml):

    lease     an IPv4 address (IPv6 follows from the name) and the published ports, recorded in
              one transaction
    netns     the instance's network namespace, veth on the bridge, addresses and routes
    tap       a VM's tap on the bridge (the guest sets its own addresses); ``attach-tap``
              makes it again when a stopped VM starts (taps are gone after a reboot)
    dns       the zone rebuilt with the instance in, and served, before the instance starts
    firewall  the whole ruleset replaced with the instance's rules (published ports) in; an
              instance publishing no port changes nothing in it, and skips this

dns, firewall and netns run at the same time, after lease. Each undoes itself. A manager
without a network service (tests that drive containers alone) gets steps that do nothing, and
its instances get a private network with loopback only; so does an instance created with
``--network none``, whatever the manager has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from homecloud.errors import UserError

if TYPE_CHECKING:
    from homecloud.network.plan import InstanceAddresses
    from homecloud.network.ports import PortMapping
    from homecloud.network.service import NetworkService


class NetworkContext(Protocol):
    """What the steps need of the creation context."""

    @property
    def instance_name(self) -> str: ...

    @property
    def ports(self) -> tuple[PortMapping, ...]: ...

    @property
    def networked(self) -> bool: ...  # False: `--network none`, every step does nothing

    addresses: InstanceAddresses | None


class _Step:
    def __init__(self, network: NetworkService | None) -> None:
        self.network = network

    def do(self, ctx: NetworkContext) -> None:
        if self.network is not None and ctx.networked:
            self.run(self.network, ctx)

    def undo(self, ctx: NetworkContext) -> None:
        if self.network is not None and ctx.networked:
            self.revert(self.network, ctx)

    def run(self, network: NetworkService, ctx: NetworkContext) -> None:
        raise NotImplementedError

    def revert(self, network: NetworkService, ctx: NetworkContext) -> None:
        raise NotImplementedError


class Lease(_Step):
    def run(self, network: NetworkService, ctx: NetworkContext) -> None:
        ctx.addresses = network.allocate(ctx.instance_name, ctx.ports)

    def revert(self, network: NetworkService, ctx: NetworkContext) -> None:
        network.release(ctx.instance_name)


class Namespace(_Step):
    def run(self, network: NetworkService, ctx: NetworkContext) -> None:
        if ctx.addresses is None:
            raise AssertionError("the netns step runs after the lease step")
        network.plumb(ctx.instance_name, ctx.addresses)

    def revert(self, network: NetworkService, ctx: NetworkContext) -> None:
        network.unplumb(ctx.instance_name)


class Tap(_Step):
    def run(self, network: NetworkService, ctx: NetworkContext) -> None:
        if ctx.addresses is None:
            raise AssertionError("the tap step runs after the lease step")
        network.plumb_tap(ctx.instance_name, ctx.addresses)

    def revert(self, network: NetworkService, ctx: NetworkContext) -> None:
        network.unplumb_tap(ctx.instance_name)


class AttachTap(_Step):
    def run(self, network: NetworkService, ctx: NetworkContext) -> None:
        if not network.replumb_tap(ctx.instance_name):
            # Its address is written into its disk: a new one would not reach the guest.
            raise UserError(f"VM {ctx.instance_name} has no address on this host's network "
                            "(the subnet changed since it was made): re-create it")

    def revert(self, network: NetworkService, ctx: NetworkContext) -> None:
        """A tap made again is kept, like a container's namespace."""


class PublishName(_Step):
    def run(self, network: NetworkService, ctx: NetworkContext) -> None:
        network.refresh_dns_quietly()

    def revert(self, network: NetworkService, ctx: NetworkContext) -> None:
        network.hide(ctx.instance_name)
        network.refresh_dns_quietly()


class ApplyFirewall(_Step):
    def run(self, network: NetworkService, ctx: NetworkContext) -> None:
        if ctx.ports:
            network.refresh_firewall()

    def revert(self, network: NetworkService, ctx: NetworkContext) -> None:
        if ctx.ports:
            network.hide(ctx.instance_name)
            network.refresh_firewall()


def network_actions(network: NetworkService | None
                    ) -> Mapping[str, Callable[[Mapping[str, Any]], _Step]]:
    """Action name -> factory, for the manager's registry."""
    def factory(cls: type[_Step]) -> Callable[[Mapping[str, Any]], _Step]:
        def make(params: Mapping[str, Any]) -> _Step:
            if params:
                raise ValueError(f"takes no parameters, got {', '.join(params)}")
            return cls(network)
        return make

    return {"lease-address": factory(Lease), "make-netns": factory(Namespace),
            "publish-name": factory(PublishName), "apply-firewall": factory(ApplyFirewall),
            "make-tap": factory(Tap), "attach-tap": factory(AttachTap)}
