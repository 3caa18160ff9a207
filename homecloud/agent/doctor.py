"""`hc doctor`: what the host has and lacks, each check one line, with the fix for a failure.

Checks: systemd is PID 1, the pool, the network configuration, the bridge, IP forwarding,
hc-dns answering, homecloud's firewall table, and other firewalls dropping forwarded traffic
(Docker's FORWARD policy). Checks that need the network are skipped when it is not set up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from homecloud.agent.app import Agent
from homecloud.errors import HomecloudError
from homecloud.network.plan import NetworkPlan

PROC = Path("/proc")
FORWARDING = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | fail | skipped
    detail: str
    fix: str | None = None


class _Failed(Exception):
    def __init__(self, detail: str, fix: str | None = None) -> None:
        super().__init__(detail)
        self.detail, self.fix = detail, fix


def _systemd(_: Agent) -> str:
    comm = (PROC / "1/comm").read_text().strip()
    if comm != "systemd":
        raise _Failed(f"PID 1 is {comm}, not systemd", "homecloud needs systemd as PID 1; on "
                      "a machine without it, boot a dev host (`hc-devhost up NAME`)")
    return "PID 1 is systemd"


def _pool(agent: Agent) -> str:
    from homecloud.sizes import format_size

    usage = agent.pool.usage()
    return f"{usage.driver} at {usage.path}, {format_size(usage.free)} free"


def _network(agent: Agent) -> str:
    if agent.network.error is not None:
        raise _Failed(agent.network.error.message, "correct the network: section of "
                      "/etc/homecloud/config.yaml, then `systemctl restart hcd`")
    plan = agent.network.plan
    return (f"bridge {plan.bridge}, {plan.subnet4} and {plan.subnet6}, names "
            f"*.{plan.names.origin}")


def _bridge(plan: NetworkPlan) -> str:
    from homecloud.network.links import link_addresses

    restart = "`systemctl restart hcd` makes it again"
    addresses = link_addresses(plan.bridge)
    if addresses is None:
        raise _Failed(f"bridge {plan.bridge} does not exist", restart)
    missing = [str(a) for a in plan.bridge_interfaces if a not in addresses]
    if missing:
        raise _Failed(f"bridge {plan.bridge} lacks {', '.join(missing)}", restart)
    return f"{plan.bridge} is up with {', '.join(str(a) for a in plan.bridge_interfaces)}"


def _forwarding(_: NetworkPlan) -> str:
    off = [key for key in FORWARDING
           if (PROC / "sys" / key).read_text().strip() != "1"]
    if off:
        names = [key.replace("/", ".") for key in off]
        raise _Failed(f"forwarding is off: {', '.join(names)}",
                      f"`sysctl -w {' '.join(n + '=1' for n in names)}` (the agent sets it at "
                      "start: something turned it off)")
    return "IPv4 and IPv6 forwarding are on"


def _dns(plan: NetworkPlan) -> str:
    from homecloud.dns.publish import DNS_PORT, served_serial

    address = str(plan.gateway4)
    serial = served_serial(address, DNS_PORT, plan.names.origin, timeout=1.0)
    if serial is None:
        raise _Failed(f"hc-dns does not answer for {plan.names.origin} on {address} port "
                      f"{DNS_PORT}", "`systemctl status hc-dns` says why; "
                      "`systemctl restart hcd` starts it and rewrites its zone")
    return f"hc-dns answers for {plan.names.origin} on {address} port {DNS_PORT} " \
           f"(serial {serial})"


def _firewall(_: NetworkPlan) -> str:
    from homecloud.network.firewall import FAMILY, TABLE, list_table

    table = list_table()
    if table is None:
        raise _Failed(f"nftables table {FAMILY} {TABLE} is missing",
                      "`systemctl restart hcd` applies it again")
    rules = sum(1 for item in table if "rule" in item)
    return f"table {FAMILY} {TABLE} with {rules} rules"


def _other_firewalls(plan: NetworkPlan) -> str:
    from homecloud.network.audit import forward_blockers, read_ruleset

    blockers = forward_blockers(read_ruleset(), plan.bridge)
    if blockers:
        first = blockers[0]
        raise _Failed(f"{', '.join(str(b) for b in blockers)} drops forwarded traffic "
                      "(policy drop, as Docker sets): instances cannot reach the network and "
                      "published ports do not answer", first.fix(plan.bridge))
    return "no other firewall drops forwarded traffic"


def _run(name: str, check: Callable[[], str]) -> Check:
    try:
        return Check(name, "ok", check())
    except _Failed as failed:
        return Check(name, "fail", failed.detail, failed.fix)
    except HomecloudError as exc:
        return Check(name, "fail", exc.message)
    except OSError as exc:
        return Check(name, "fail", f"{type(exc).__name__}: {exc}")


def run_checks(agent: Agent) -> list[Check]:
    checks = [_run("systemd", lambda: _systemd(agent)), _run("pool", lambda: _pool(agent)),
              _run("network", lambda: _network(agent))]
    needs_network: list[tuple[str, Callable[[NetworkPlan], str]]] = [
        ("bridge", _bridge), ("forwarding", _forwarding), ("dns", _dns),
        ("firewall", _firewall), ("other firewalls", _other_firewalls)]
    if agent.network.error is not None:
        checks += [Check(name, "skipped", "no network (see above)") for name, _ in needs_network]
        return checks
    plan = agent.network.plan
    for name, check in needs_network:
        checks.append(_run(name, lambda check=check: check(plan)))  # type: ignore[misc]
    return checks
