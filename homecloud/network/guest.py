"""An instance's own network: a named namespace (hc-<instance>) holding ``eth0``, the peer of a
veth whose host end is a port of the bridge; addresses and default routes set from the host
before the instance starts, so it is reachable the moment it is ready.

systemd runs the instance's nspawn inside that namespace (NetworkNamespacePath=): nspawn cannot
join it itself once it has made the guest's user namespace, and the guest's root, unprivileged
there, cannot change what the host configured. Being unprivileged there, it could not bind
ports below 1024 or ping either: the namespace is made with those allowed to everyone in it
(it is the instance's alone).
"""

from __future__ import annotations

import contextlib

from homecloud.network.ifnames import (
    VETH_HOST_PREFIX,
    VETH_PEER_PREFIX,
    veth_host_name,
    veth_peer_name,
)
from homecloud.network.links import (
    configure_instance_link,
    delete_link,
    ensure_veth,
    link_names,
)
from homecloud.network.namespaces import create_netns, delete_netns, list_netns, netns_path
from homecloud.network.neighbours import refresh_neighbours
from homecloud.network.plan import (
    GUEST_LINK,
    INSTANCE_NETNS_PREFIX,
    InstanceAddresses,
    NetworkPlan,
    instance_netns,
)

# Set in each instance's namespace as it is made.
INSTANCE_SYSCTLS = {
    "net/ipv4/ip_unprivileged_port_start": "0",  # a web server on port 80
    "net/ipv4/ping_group_range": "0 2147483647",  # ping through ICMP sockets
    # eth0 arrives after this: its link-local address is usable at once, like the bridge's.
    "net/ipv6/conf/default/accept_dad": "0",
}


def plumb_instance(plan: NetworkPlan, instance: str, addresses: InstanceAddresses) -> None:
    """Make (or complete) the instance's namespace, veth and addresses. Idempotent; if it
    fails on a namespace it made, it removes what it made."""
    netns = instance_netns(instance)
    made = create_netns(netns, sysctls=INSTANCE_SYSCTLS)
    try:
        ensure_veth(veth_host_name(instance), veth_peer_name(instance), bridge=plan.bridge,
                    target=netns, target_name=GUEST_LINK)
        configure_instance_link(GUEST_LINK, plan.guest_interfaces(addresses), plan.gateways,
                                netns=netns)
        # The addresses may have been another link's a moment ago (a re-created instance).
        refresh_neighbours(plan.bridge, veth_host_name(instance),
                           [addresses.ipv4, addresses.ipv6], guest_netns=netns,
                           guest_link=GUEST_LINK)
    except BaseException:
        if made:
            with contextlib.suppress(Exception):
                unplumb_instance(instance)
        raise


def unplumb_instance(instance: str) -> bool:
    """Remove the instance's veth and namespace; False if neither was there."""
    link = delete_link(veth_host_name(instance))
    delete_link(veth_peer_name(instance))  # a peer never moved, after an interruption
    return delete_netns(instance_netns(instance)) or link


def instance_netns_path(instance: str) -> str:
    return str(netns_path(instance_netns(instance)))


def stray_parts(instances: set[str]) -> tuple[list[str], list[str]]:
    """Namespaces and links homecloud made for instances not in ``instances``: what a crash
    left of half-made or half-removed ones."""
    namespaces = [name for name in list_netns(INSTANCE_NETNS_PREFIX)
                  if name[len(INSTANCE_NETNS_PREFIX):] not in instances]
    ours = {f(name) for name in instances for f in (veth_host_name, veth_peer_name)}
    strays = [name for name in link_names()
              if name.startswith((VETH_HOST_PREFIX, VETH_PEER_PREFIX)) and name not in ours]
    return namespaces, strays


def remove_stray_parts(namespaces: list[str], links: list[str]) -> None:
    for link in links:
        delete_link(link)
    for namespace in namespaces:
        delete_netns(namespace)
