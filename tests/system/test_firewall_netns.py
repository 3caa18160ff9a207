"""homecloud's nftables table against the real kernel, in namespaces of our own: atomic
replacement that leaves other tables alone, and real TCP/UDP through published ports."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path

import pytest
from netns import ip, link_pair, namespaces, probe, probe_server, python_in, require_netns, run_in

from homecloud.errors import Conflict
from homecloud.network.firewall import (
    FirewallConfig,
    InstanceFirewall,
    apply_ruleset,
    list_table,
    remove_ruleset,
    render_ruleset,
)
from homecloud.network.links import configure_link, ensure_bridge, ensure_veth
from homecloud.network.ports import PortMapping

pytestmark = pytest.mark.system

SUBNET4, SUBNET6 = IPv4Network("10.77.0.0/24"), IPv6Network("fd77::/64")
WEB4, WEB6 = IPv4Address("10.77.0.2"), IPv6Address("fd77::2")
HOST_UP4, HOST_UP6 = "192.168.77.1", "fd99::1"
CLIENT4, CLIENT6 = "192.168.77.2", "fd99::2"
WEB = InstanceFirewall("web", WEB4, WEB6, (PortMapping(8080, 80), PortMapping(5353, 53, "udp")))
CONFIG = FirewallConfig(bridge="hc0", subnet4=SUBNET4, subnet6=SUBNET6, uplink="up0",
                        instances=(WEB,))
OTHER_TABLE = """table ip other {
    chain input {
        type filter hook input priority 10; policy accept;
        tcp dport 9999 counter
    }
}
"""
RESULTS = Path("/tmp/results-nft.md")


@pytest.fixture(autouse=True)
def _netns_support() -> None:
    require_netns()


def nft_in(ns: str, *args: str, input: str | None = None) -> str:
    return run_in(ns, "nft", *args, input=input).stdout


def other_table(ns: str) -> str:
    return nft_in(ns, "-j", "list", "table", "ip", "other")


def items(table: list[dict], kind: str) -> list[dict]:
    return [entry[kind] for entry in table if kind in entry]


def test_apply_replace_and_remove_leave_other_tables_alone() -> None:
    with namespaces("host") as (host,):
        nft_in(host, "-f", "-", input=OTHER_TABLE)
        before = other_table(host)
        assert list_table(netns=host) is None
        apply_ruleset(CONFIG, netns=host)
        table = list_table(netns=host)
        assert table is not None
        assert items(table, "table")[0]["name"] == "homecloud"
        chains = {c["name"] for c in items(table, "chain")}
        assert chains == {"prerouting", "output", "postrouting", "forward", "input",
                          "instance_to_host"}
        rules = len(items(table, "rule"))
        ports = {m["name"]: m.get("elem") for m in items(table, "map")}
        assert len(ports["dnat4_addr"]) == 2 and len(ports["dnat6_port"]) == 2
        # Re-applying replaces: new contents, same number of rules, not twice as many.
        changed = replace(CONFIG, instances=(replace(WEB, ports=(PortMapping(9090, 90),)),))
        apply_ruleset(changed, netns=host)
        table = list_table(netns=host)
        assert len(items(table, "rule")) == rules
        maps = {m["name"]: m.get("elem") for m in items(table, "map")}
        assert maps["dnat4_port"] == [[{"concat": ["tcp", 9090]}, 90]]
        assert other_table(host) == before
        remove_ruleset(netns=host)
        remove_ruleset(netns=host)  # nothing left to remove: still fine
        assert list_table(netns=host) is None
        assert other_table(host) == before


def test_a_bad_ruleset_changes_nothing() -> None:
    clash = InstanceFirewall("api", IPv4Address("10.77.0.3"), None, (PortMapping(8080, 81),))
    with namespaces("host") as (host,):
        apply_ruleset(CONFIG, netns=host)
        before = nft_in(host, "-j", "list", "ruleset")
        with pytest.raises(Conflict, match="host port 8080/tcp is already published by "
                                           "instance web"):
            apply_ruleset(replace(CONFIG, instances=(WEB, clash)), netns=host)
        assert nft_in(host, "-j", "list", "ruleset") == before


@pytest.fixture
def network() -> Iterator[tuple[str, str, str]]:
    """host (bridge hc0 + uplink up0), inst (web, plugged into hc0), client (on up0's wire)."""
    with namespaces("host", "inst", "client") as (host, inst, client):
        ensure_bridge("hc0", [IPv4Interface("10.77.0.1/24"), IPv6Interface("fd77::1/64")],
                      netns=host)
        ensure_veth("hcvweb", "hcpweb", bridge="hc0", target=inst, target_name="eth0",
                    netns=host)
        configure_link("eth0", [IPv4Interface(f"{WEB4}/24"), IPv6Interface(f"{WEB6}/64")],
                       netns=inst)
        ip("-n", inst, "route", "add", "default", "via", "10.77.0.1")
        ip("-n", inst, "-6", "route", "add", "default", "via", "fd77::1")
        link_pair(host, "up0", client, "up1", [f"{HOST_UP4}/24", f"{HOST_UP6}/64"],
                  [f"{CLIENT4}/24", f"{CLIENT6}/64"])
        python_in(host, "from homecloud.network.sysctl import enable_forwarding, "
                        "enable_route_localnet; enable_forwarding(); "
                        "enable_route_localnet('hc0')")
        apply_ruleset(CONFIG, netns=host)
        yield host, inst, client


def test_published_ports_reach_the_instance(network: tuple[str, str, str]) -> None:
    host, inst, client = network
    with probe_server(inst, "tcp", str(WEB4), 80), probe_server(inst, "tcp", str(WEB6), 80), \
            probe_server(inst, "udp", str(WEB4), 53):
        # From another machine, IPv4 and IPv6: the instance sees the real client.
        assert probe(client, "tcp", HOST_UP4, 8080) == CLIENT4
        assert probe(client, "tcp", HOST_UP6, 8080) == CLIENT6
        assert probe(client, "udp", HOST_UP4, 5353) == CLIENT4
        # From the host itself, on its own addresses and on 127.0.0.1.
        assert probe(host, "tcp", HOST_UP4, 8080) == HOST_UP4
        assert probe(host, "tcp", HOST_UP6, 8080) == HOST_UP6
        assert probe(host, "tcp", "127.0.0.1", 8080) == "10.77.0.1"
        # Hairpin: the instance through the host's published port reaches itself.
        assert probe(inst, "tcp", HOST_UP4, 8080) == "10.77.0.1"
        # A port that is not published goes nowhere.
        assert probe(client, "tcp", HOST_UP4, 8081, timeout=1) is None


def test_instances_leave_masqueraded_and_are_not_reachable_uninvited(
        network: tuple[str, str, str]) -> None:
    host, inst, client = network
    ip("-n", client, "route", "add", str(SUBNET4), "via", HOST_UP4)
    ip("-n", client, "-6", "route", "add", str(SUBNET6), "via", HOST_UP6)
    with probe_server(client, "tcp", CLIENT4, 9000), probe_server(client, "tcp", CLIENT6, 9000):
        assert probe(inst, "tcp", CLIENT4, 9000) == HOST_UP4  # masqueraded
        assert probe(inst, "tcp", CLIENT6, 9000) == str(WEB6)  # ULA to ULA: routed as is
    with probe_server(inst, "tcp", str(WEB4), 80), probe_server(inst, "tcp", str(WEB6), 80):
        assert probe(client, "tcp", str(WEB4), 80, timeout=1) is None
        assert probe(client, "tcp", str(WEB6), 80, timeout=1) is None
        # Other homecloud hosts' subnets (peers) may connect directly.
        apply_ruleset(replace(CONFIG, peers=(IPv4Network("192.168.77.0/24"),
                                             IPv6Network("fd99::/64"))), netns=host)
        assert probe(client, "tcp", str(WEB4), 80) == CLIENT4
        assert probe(client, "tcp", str(WEB6), 80) == CLIENT6


def test_instances_reach_the_host_only_for_dns_unless_allowed(
        network: tuple[str, str, str]) -> None:
    host, inst, _ = network
    with probe_server(host, "tcp", "10.77.0.1", 2222), \
            probe_server(host, "tcp", "10.77.0.1", 53), probe_server(host, "udp", "fd77::1", 53):
        assert probe(inst, "tcp", "10.77.0.1", 53) == str(WEB4)
        assert probe(inst, "udp", "fd77::1", 53) == str(WEB6)
        assert probe(inst, "tcp", "10.77.0.1", 2222, timeout=1) is None
        assert probe(inst, "tcp", HOST_UP4, 2222, timeout=1) is None
        assert probe(inst, "icmp", "10.77.0.1", 0) == "10.77.0.1"  # the gateway answers
        apply_ruleset(replace(CONFIG, instances=(replace(WEB, allow_host=True),)), netns=host)
        assert probe(inst, "tcp", "10.77.0.1", 2222) == str(WEB4)


def big_config(instances: int) -> FirewallConfig:
    entries = []
    for n in range(instances):
        address4 = IPv4Address(int(IPv4Address("10.100.0.2")) + n)
        address6 = IPv6Address(int(IPv6Address("fd77::2")) + n)
        entries.append(InstanceFirewall(f"i{n}", address4, address6,
                                        (PortMapping(20000 + n, 80),), allow_host=n % 10 == 0))
    return FirewallConfig(bridge="hc0", subnet4=IPv4Network("10.100.0.0/22"),
                          subnet6=SUBNET6, uplink="eth0", instances=tuple(entries))


def test_a_500_instance_ruleset_is_one_transaction() -> None:
    """Not a benchmark assertion: the time is recorded in /tmp/results-nft.md."""
    config = big_config(500)
    with namespaces("host") as (host,):
        nft_in(host, "-f", "-", input=OTHER_TABLE)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            apply_ruleset(config, netns=host)
            times.append(time.perf_counter() - start)
        table = list_table(netns=host)
        maps = {m["name"]: m.get("elem", []) for m in items(table, "map")}
        assert len(maps["dnat4_addr"]) == len(maps["dnat6_addr"]) == 500
        nexec = time.perf_counter()
        subprocess.run(["ip", "netns", "exec", host, "true"], check=True)
        netns_cost = time.perf_counter() - nexec
        size = len(json.dumps(render_ruleset(config)))
    median = statistics.median(times)
    RESULTS.write_text(
        "# nftables: homecloud ruleset with 500 instances and 500 published ports\n\n"
        f"Date: {datetime.now(UTC).isoformat(timespec='seconds')}\n"
        "Command: `/opt/homecloud/venv/bin/python -m pytest "
        "tests/system/test_firewall_netns.py -k 500`\n\n"
        f"- one `nft -j -f -` transaction (render + apply, replacing the table), "
        f"run in a network namespace via `ip netns exec`\n"
        f"- 500 instances (IPv4+IPv6), 500 TCP ports published in both families, "
        f"{len(items(table, 'rule'))} rules, JSON {size / 1024:.0f} KiB\n"
        f"- apply time over 5 runs: median {median * 1000:.0f} ms, min {min(times) * 1000:.0f} ms, "
        f"max {max(times) * 1000:.0f} ms (includes ~{netns_cost * 1000:.0f} ms of "
        "`ip netns exec` overhead)\n"
        "- machine: 2 shared cores, noisy (other developers' tests running)\n")
    print(RESULTS.read_text())
