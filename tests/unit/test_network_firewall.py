import json
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from homecloud.errors import Conflict, UserError
from homecloud.network.firewall import (
    FirewallConfig,
    InstanceFirewall,
    removal,
    render_ruleset,
)
from homecloud.network.ports import PortMapping

SUBNET4 = IPv4Network("10.9.8.0/24")
SUBNET6 = IPv6Network("fd00:1:2:3::/64")
WEB = InstanceFirewall("web", IPv4Address("10.9.8.2"), IPv6Address("fd00:1:2:3::2"),
                       (PortMapping(8080, 80), PortMapping(5353, 53, "udp")))
DB = InstanceFirewall("db", IPv4Address("10.9.8.3"), None, (), allow_host=True)


def config(**changes):
    base = dict(bridge="hc0", subnet4=SUBNET4, subnet6=SUBNET6, instances=(WEB, DB))
    return FirewallConfig(**{**base, **changes})


def added(document, kind):
    return [c["add"][kind] for c in document["nftables"] if kind in c.get("add", {})]


def named(document, kind, name):
    return next(item for item in added(document, kind) if item["name"] == name)


def rules(document, chain):
    return [r["expr"] for r in added(document, "rule") if r["chain"] == chain]


def text(exprs):
    return json.dumps(exprs)


def test_the_transaction_replaces_only_our_table():
    document = render_ruleset(config())
    commands = document["nftables"]
    table = {"family": "inet", "name": "homecloud"}
    assert commands[:3] == [{"add": {"table": table}}, {"delete": {"table": table}},
                            {"add": {"table": table}}]
    for command in commands[3:]:
        (op, body), = command.items()
        assert op == "add"
        (spec,) = body.values()
        assert (spec["family"], spec["table"]) == ("inet", "homecloud")
    json.dumps(document)  # what nft -j reads


def test_published_ports_are_map_elements_for_both_families():
    document = render_ruleset(config())
    assert named(document, "map", "dnat4_addr")["elem"] == [
        [{"concat": ["tcp", 8080]}, "10.9.8.2"], [{"concat": ["udp", 5353]}, "10.9.8.2"]]
    assert named(document, "map", "dnat4_port")["elem"] == [
        [{"concat": ["tcp", 8080]}, 80], [{"concat": ["udp", 5353]}, 53]]
    assert [e[1] for e in named(document, "map", "dnat6_addr")["elem"]] == \
        ["fd00:1:2:3::2", "fd00:1:2:3::2"]
    for chain in ("prerouting", "output"):
        dnats = [r for r in rules(document, chain) if "dnat" in text(r)]
        assert len(dnats) == 2
    # From the host itself, ::1 is left alone (it cannot leave the loopback).
    assert '"::1"' in text(rules(document, "output")[1])


def test_an_instance_without_ipv6_publishes_only_ipv4():
    only4 = InstanceFirewall("web", IPv4Address("10.9.8.2"), None, (PortMapping(80, 80),))
    document = render_ruleset(config(instances=(only4,)))
    assert "elem" not in named(document, "map", "dnat6_addr")
    assert len(rules(document, "prerouting")) == 1


def test_nothing_published_means_no_dnat_rules():
    document = render_ruleset(config(instances=(DB,)))
    assert rules(document, "prerouting") == [] and rules(document, "output") == []
    assert "elem" not in named(document, "map", "dnat4_addr")
    assert "127.0.0.0" not in text(rules(document, "postrouting"))


def test_egress_is_masqueraded_by_any_interface_or_only_the_uplink():
    anywhere = text(rules(render_ruleset(config()), "postrouting"))
    assert '"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "hc0"' in anywhere
    uplinked = render_ruleset(config(uplink="eth0"))
    assert '"right": "eth0"' in text(rules(uplinked, "postrouting"))
    forward = rules(uplinked, "forward")
    assert forward[-1] == [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}},
                                      "right": "hc0"}}, {"drop": None}]
    # IPv6 towards ULA space (other homecloud hosts) keeps its source.
    assert '"addr": "fc00::", "len": 7' in anywhere


def test_instances_reach_the_host_only_for_dns_and_icmp_unless_allowed():
    document = render_ruleset(config())
    chain = rules(document, "instance_to_host")
    assert chain[-1] == [{"drop": None}]
    assert '"right": 53' in text(chain)
    assert named(document, "set", "host_allowed4")["elem"] == ["10.9.8.3"]
    assert "elem" not in named(document, "set", "host_allowed6")
    assert rules(document, "input") == [[
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "hc0"}},
        {"jump": {"target": "instance_to_host"}}]]


def test_peers_may_reach_instances():
    peers = (IPv4Network("10.7.0.0/24"), IPv6Network("fd99::/48"))
    document = render_ruleset(config(peers=peers))
    assert named(document, "set", "peers4")["elem"] == [{"prefix": {"addr": "10.7.0.0",
                                                                    "len": 24}}]
    assert named(document, "set", "peers6")["flags"] == ["interval"]


def test_a_port_published_twice_names_both_instances():
    other = InstanceFirewall("api", IPv4Address("10.9.8.4"), None, (PortMapping(8080, 9000),))
    with pytest.raises(Conflict, match="host port 8080/tcp is already published by instance web"):
        render_ruleset(config(instances=(WEB, other)))
    twice = InstanceFirewall("api", IPv4Address("10.9.8.4"), None,
                             (PortMapping(9000, 1), PortMapping(9000, 2)))
    with pytest.raises(UserError, match="given twice"):
        render_ruleset(config(instances=(twice,)))


def test_removal_tolerates_a_missing_table():
    table = {"family": "inet", "name": "homecloud"}
    assert removal() == {"nftables": [{"add": {"table": table}}, {"delete": {"table": table}}]}
