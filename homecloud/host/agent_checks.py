"""The checks of `hc doctor` that need the running agent: what it set up (the pool, the network,
the bridge, hc-dns, its registration with systemd-resolved, routes to peer hosts).

Each takes the agent; those that need the network run only once it is set up (homecloud/host/
doctor.py skips them before). Kept light: what a check needs it imports itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from homecloud.host.checks import Failed, Skipped

if TYPE_CHECKING:
    from homecloud.network.service import NetworkService
    from homecloud.storage.base import StorageDriver
    from homecloud.systemd.bus import SystemBus


class RunningAgent(Protocol):
    """What the checks read from the agent (homecloud/agent/app.py's Agent)."""

    @property
    def pool(self) -> StorageDriver: ...

    @property
    def network(self) -> NetworkService: ...

    @property
    def bus(self) -> SystemBus: ...


def pool(agent: RunningAgent) -> str:
    from homecloud.sizes import format_size

    usage = agent.pool.usage()
    return f"{usage.driver} at {usage.path}, {format_size(usage.free)} free"


def network(agent: RunningAgent) -> str:
    if agent.network.error is not None:
        raise Failed(agent.network.error.message, "correct the network: section of "
                     "/etc/homecloud/config.yaml, then `systemctl restart hcd`")
    plan = agent.network.plan
    return (f"bridge {plan.bridge}, {plan.subnet4} and {plan.subnet6}, names "
            f"*.{plan.names.origin}")


def bridge(agent: RunningAgent) -> str:
    from homecloud.network.links import link_addresses

    plan = agent.network.plan
    restart = "`systemctl restart hcd` makes it again"
    addresses = link_addresses(plan.bridge)
    if addresses is None:
        raise Failed(f"bridge {plan.bridge} does not exist", restart)
    missing = [str(a) for a in plan.bridge_interfaces if a not in addresses]
    if missing:
        raise Failed(f"bridge {plan.bridge} lacks {', '.join(missing)}", restart)
    return f"{plan.bridge} is up with {', '.join(str(a) for a in plan.bridge_interfaces)}"


def dns(agent: RunningAgent) -> str:
    from homecloud.network.dns_publish import served_serial
    from homecloud.network.dns_zone import DNS_PORT

    plan = agent.network.plan
    address = str(plan.gateway4)
    serial = served_serial(address, DNS_PORT, plan.names.origin, timeout=1.0)
    if serial is None:
        raise Failed(f"hc-dns does not answer for {plan.names.origin} on {address} port "
                     f"{DNS_PORT}", "`systemctl status hc-dns` says why; "
                     "`systemctl restart hcd` starts it and rewrites its zone")
    return f"hc-dns answers for {plan.names.origin} on {address} port {DNS_PORT} " \
           f"(serial {serial})"


def resolved(agent: RunningAgent) -> str:
    from homecloud.network.resolved import registration_gaps

    plan = agent.network.plan
    gaps = registration_gaps(plan, agent.bus)
    if gaps is None:
        raise Skipped("systemd-resolved is not running: nothing to register with")
    if gaps:
        raise Failed(f"systemd-resolved's link {plan.bridge} lacks {', '.join(gaps)}: the host "
                     f"does not resolve *.{plan.names.origin}", "`systemctl restart hcd` "
                     "registers it (needed when systemd-resolved first starts after hcd)")
    return f"systemd-resolved asks hc-dns on {plan.bridge} for *.{plan.names.origin} and " \
           "the reverse zones"


def peers(agent: RunningAgent) -> str:
    hosts = agent.network.plan.names.peers
    if not hosts:
        raise Skipped("no peer hosts configured (network.children, network.parent)")
    if agent.network.routes_error is not None:
        raise Failed(agent.network.routes_error, "give each peer a 'via' address on a link "
                     "this host shares with it (`ip route get ADDRESS` shows the way), then "
                     "`systemctl restart hcd`")
    routed = sum(len(p.subnets) for p in hosts if p.via)
    return (f"{', '.join(f'{p.name} ({p.role})' for p in hosts)}: {routed} subnet(s) routed, "
            "names asked there")
