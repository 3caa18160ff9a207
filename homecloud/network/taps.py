"""A VM's link to the host's network: a persistent tap (``hct`` + a hash of the name) that is a
port of the bridge; qemu attaches to it by name. The guest sets its own addresses (written into
its disk before it boots), so the host side is the tap alone.
"""

from __future__ import annotations

from homecloud.network.ifnames import TAP_PREFIX, tap_name
from homecloud.network.links import delete_link, ensure_tap, link_names
from homecloud.network.neighbours import forget_neighbours
from homecloud.network.netlink import rtnl
from homecloud.network.plan import InstanceAddresses, NetworkPlan


def plumb_tap(plan: NetworkPlan, instance: str, addresses: InstanceAddresses) -> str:
    """Make (or complete) the VM's tap on the bridge; return its name. The addresses may have
    been another instance's a moment ago: the host's neighbour entries for them go."""
    name = tap_name(instance)
    ensure_tap(name, bridge=plan.bridge)
    with rtnl() as ipr:
        forget_neighbours(ipr, plan.bridge, [addresses.ipv4, addresses.ipv6])
    return name


def unplumb_tap(instance: str) -> bool:
    """Remove the VM's tap; False if it was not there."""
    return delete_link(tap_name(instance))


def stray_taps(instances: set[str]) -> list[str]:
    """Taps homecloud made for instances not in ``instances``."""
    ours = {tap_name(name) for name in instances}
    return [name for name in link_names() if name.startswith(TAP_PREFIX) and name not in ours]
