"""`hc doctor`: what the host has and lacks, each check one line, with the fix for a failure.

Checks: systemd is PID 1, the inotify limits, the config file, the pool, the network
configuration, the bridge, IP forwarding, hc-dns answering, systemd-resolved asking it for our
names (where resolved runs), routes to peer hosts, homecloud's firewall table, and other
firewalls dropping forwarded traffic (Docker's FORWARD policy). Those that need no agent are in
homecloud/hostchecks.py (the CLI runs them alone when the agent does not answer); those that
need the network are skipped when it is not set up.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from homecloud import hostchecks
from homecloud.agent.app import Agent
from homecloud.hostchecks import CHECK_NAMES, Check, Failed, Skipped, run_check
from homecloud.network.plan import NetworkPlan


def _pool(agent: Agent) -> str:
    from homecloud.sizes import format_size

    usage = agent.pool.usage()
    return f"{usage.driver} at {usage.path}, {format_size(usage.free)} free"


def _network(agent: Agent) -> str:
    if agent.network.error is not None:
        raise Failed(agent.network.error.message, "correct the network: section of "
                     "/etc/homecloud/config.yaml, then `systemctl restart hcd`")
    plan = agent.network.plan
    return (f"bridge {plan.bridge}, {plan.subnet4} and {plan.subnet6}, names "
            f"*.{plan.names.origin}")


def _bridge(plan: NetworkPlan) -> str:
    from homecloud.network.links import link_addresses

    restart = "`systemctl restart hcd` makes it again"
    addresses = link_addresses(plan.bridge)
    if addresses is None:
        raise Failed(f"bridge {plan.bridge} does not exist", restart)
    missing = [str(a) for a in plan.bridge_interfaces if a not in addresses]
    if missing:
        raise Failed(f"bridge {plan.bridge} lacks {', '.join(missing)}", restart)
    return f"{plan.bridge} is up with {', '.join(str(a) for a in plan.bridge_interfaces)}"


def _dns(plan: NetworkPlan) -> str:
    from homecloud.dns.publish import DNS_PORT, served_serial

    address = str(plan.gateway4)
    serial = served_serial(address, DNS_PORT, plan.names.origin, timeout=1.0)
    if serial is None:
        raise Failed(f"hc-dns does not answer for {plan.names.origin} on {address} port "
                     f"{DNS_PORT}", "`systemctl status hc-dns` says why; "
                     "`systemctl restart hcd` starts it and rewrites its zone")
    return f"hc-dns answers for {plan.names.origin} on {address} port {DNS_PORT} " \
           f"(serial {serial})"


def _resolved(plan: NetworkPlan, agent: Agent) -> str:
    from homecloud.network.resolved import registration_gaps

    gaps = registration_gaps(plan, agent.bus)
    if gaps is None:
        raise Skipped("systemd-resolved is not running: nothing to register with")
    if gaps:
        raise Failed(f"systemd-resolved's link {plan.bridge} lacks {', '.join(gaps)}: the host "
                     f"does not resolve *.{plan.names.origin}", "`systemctl restart hcd` "
                     "registers it (needed when systemd-resolved first starts after hcd)")
    return f"systemd-resolved asks hc-dns on {plan.bridge} for *.{plan.names.origin} and " \
           "the reverse zones"


def _peers(plan: NetworkPlan, agent: Agent) -> str:
    peers = plan.names.peers
    if not peers:
        raise Skipped("no peer hosts configured (network.children, network.parent)")
    if agent.network.routes_error is not None:
        raise Failed(agent.network.routes_error, "give each peer a 'via' address on a link "
                     "this host shares with it (`ip route get ADDRESS` shows the way), then "
                     "`systemctl restart hcd`")
    routed = sum(len(p.subnets) for p in peers if p.via)
    return (f"{', '.join(f'{p.name} ({p.role})' for p in peers)}: {routed} subnet(s) routed, "
            "names asked there")


def run_checks(agent: Agent) -> list[Check]:
    """Every check of CHECK_NAMES, in that order."""
    alone: dict[str, Callable[[], str]] = {
        "systemd": hostchecks.systemd, "inotify": hostchecks.inotify,
        "config": hostchecks.config, "pool": lambda: _pool(agent),
        "network": lambda: _network(agent)}
    needs_network: dict[str, Callable[[NetworkPlan], str]] = {
        "bridge": _bridge, "forwarding": lambda _: hostchecks.forwarding(), "dns": _dns,
        "resolved": lambda plan: _resolved(plan, agent),
        "peers": lambda plan: _peers(plan, agent),
        "firewall": lambda _: hostchecks.firewall(),
        "other firewalls": lambda plan: hostchecks.other_firewalls(plan.bridge)}
    checks = []
    for name in CHECK_NAMES:
        if name in alone:
            checks.append(run_check(name, alone[name]))
        elif agent.network.error is not None:
            checks.append(Check(name, "skipped", "no network (see above)"))
        else:
            checks.append(run_check(name, partial(needs_network[name], agent.network.plan)))
    return checks
