"""What homecloud tells systemd-resolved about its bridge: the D-Bus arguments, built and read
back (tests/system/test_resolved.py checks them against a real resolved)."""

from __future__ import annotations

import socket
from ipaddress import IPv4Network, IPv6Network, ip_address

from homecloud.network.plan import Names, NetworkPlan
from homecloud.network.resolved import (
    LinkDns,
    dns_servers,
    parse_link,
    register_bridge,
    routing_domains,
)

PLAN = NetworkPlan("hc0", IPv4Network("10.9.8.0/24"), IPv6Network("fd00:1:2:3::/64"),
                   Names("alpha", "home.arpa"))
REVERSE6 = "3.0.0.0.2.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa"


def test_the_bridge_addresses_and_our_zones_routing_only() -> None:
    wanted = LinkDns.of(PLAN)
    assert [str(s) for s in wanted.servers] == ["10.9.8.1", "fd00:1:2:3::1"]
    assert wanted.domains == ("alpha.home.arpa", "8.9.10.in-addr.arpa", REVERSE6)
    assert wanted.default_route is False
    assert wanted.describe() == ("DNS servers 10.9.8.1 fd00:1:2:3::1, domains ~alpha.home.arpa "
                                 f"~8.9.10.in-addr.arpa ~{REVERSE6}")


def test_a_wider_subnet_has_a_reverse_zone_per_label_boundary() -> None:
    plan = NetworkPlan("hc0", IPv4Network("10.9.8.0/23"), IPv6Network("fd00:1:2:3::/64"),
                       Names("alpha", "home.arpa"))
    assert LinkDns.of(plan).domains[1:3] == ("8.9.10.in-addr.arpa", "9.9.10.in-addr.arpa")


def test_addresses_go_as_family_and_raw_bytes() -> None:
    servers = dns_servers((ip_address("10.9.8.1"), ip_address("fd00:1:2:3::1")))
    assert servers == [(socket.AF_INET, bytes([10, 9, 8, 1])),
                       (socket.AF_INET6, bytes.fromhex("fd000001000200030000000000000001"))]


def test_domains_go_as_routing_only() -> None:
    assert routing_domains(("alpha.home.arpa", "8.9.10.in-addr.arpa")) == [
        (b"alpha.home.arpa", True), (b"8.9.10.in-addr.arpa", True)]


def test_the_manager_calls_on_the_link() -> None:
    calls = LinkDns.of(PLAN).calls(7)
    assert [(method, signature) for method, signature, _ in calls] == [
        (b"SetLinkDNS", b"ia(iay)"), (b"SetLinkDomains", b"ia(sb)"),
        (b"SetLinkDefaultRoute", b"ib"), (b"SetLinkLLMNR", b"is"),
        (b"SetLinkMulticastDNS", b"is")]
    assert all(args[0] == 7 for _, _, args in calls)
    assert [args[1] for _, _, args in calls[2:]] == [False, b"no", b"no"]


def test_the_zones_asked_of_peer_hosts_go_to_the_bridge_too() -> None:
    """hc-dns asks the parent for its zone and peers for their reverse zones: the host's own
    lookups of those names go to hc-dns as well."""
    from homecloud.config import NetworkConfig, PeerHostConfig
    from homecloud.network.plan import validate_names

    names = validate_names(NetworkConfig(
        host_name="beta", domain="alpha.home.arpa",
        parent=PeerHostConfig(via=("192.168.1.10",), subnets=("10.6.0.0/24",))), "ignored")
    plan = NetworkPlan("hc0", PLAN.subnet4, PLAN.subnet6, names)
    assert LinkDns.of(plan).domains == ("beta.alpha.home.arpa", "8.9.10.in-addr.arpa",
                                        REVERSE6, "alpha.home.arpa", "0.6.10.in-addr.arpa")


def test_the_arguments_fit_their_signatures() -> None:
    """pystemd marshals each value by its signature: a shape that does not fit fails here."""
    from pystemd.dbuslib import apply_signature

    for _, signature, args in LinkDns.of(PLAN).calls(7):
        assert apply_signature(signature, args)


def test_link_properties_read_back_as_pystemd_gives_them() -> None:
    props = {b"DNS": [(2, [10, 9, 8, 1]),
                      (10, list(bytes.fromhex("fd000001000200030000000000000001")))],
             b"Domains": [(b"alpha.home.arpa", True), (b"8.9.10.in-addr.arpa", True),
                          (f"{REVERSE6}".encode(), True), (b"lan", False)],
             b"DefaultRoute": False, b"LLMNR": b"yes"}
    current = parse_link(props)
    assert current == LinkDns.of(PLAN)  # the search domain "lan" is not ours: left out
    assert LinkDns.of(PLAN).lacking(current) == []


def test_what_a_link_lacks() -> None:
    current = parse_link({b"DNS": [(2, [10, 9, 8, 1])], b"Domains": [], b"DefaultRoute": True})
    assert LinkDns.of(PLAN).lacking(current) == [
        "DNS server fd00:1:2:3::1", "domain ~alpha.home.arpa", "domain ~8.9.10.in-addr.arpa",
        f"domain ~{REVERSE6}", "DefaultRoute=no"]
    assert parse_link({}) == LinkDns((), (), False)


def test_no_bus_no_registration() -> None:
    register_bridge(PLAN, None)  # the agent's tests run without systemd: nothing to do
