"""Peer hosts (children and parent): checked, their subnets and the routes to them derived."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from homecloud.config import NetworkConfig, PeerHostConfig
from homecloud.errors import UserError
from homecloud.network.addresses import ula_prefix
from homecloud.network.peers import (
    check_instance_names,
    check_overlaps,
    peer_routes,
    validate_peers,
)


def peers(**config):  # type: ignore[no-untyped-def]
    return validate_peers(NetworkConfig(**config), "beta", config.get("domain", "home.arpa"))


def test_a_child_with_routes_and_derived_dns_servers() -> None:
    (kid,) = peers(children=(PeerHostConfig("kid", via=("192.168.1.30", "fd00:99::30"),
                                            subnets=("10.7.0.0/24",)),))
    assert kid.zone == "kid.beta.home.arpa"
    assert kid.servers == (ip_address("10.7.0.1"),)  # where its DNS listens: its bridge
    assert kid.subnets == (ip_network("10.7.0.0/24"), ula_prefix("kid"))
    assert [str(r) for r in peer_routes([kid])] == [
        "10.7.0.0/24 via 192.168.1.30 (kid)", f"{ula_prefix('kid')} via fd00:99::30 (kid)"]


def test_the_parent_is_named_by_our_domain() -> None:
    (parent,) = peers(domain="alpha.home.arpa",
                      parent=PeerHostConfig(addresses=("192.168.1.10",), via=("192.168.1.10",),
                                            subnets=("10.6.0.0/24",)))
    assert (parent.name, parent.role, parent.zone) == ("alpha", "parent", "alpha.home.arpa")
    assert parent.servers == (ip_address("192.168.1.10"),)
    assert parent.subnets == (ip_network("10.6.0.0/24"),)  # no IPv6 next hop: no /48
    assert [str(r) for r in peer_routes([parent])] == ["10.6.0.0/24 via 192.168.1.10 (alpha)"]


def test_without_via_nothing_is_routed() -> None:
    (kid,) = peers(children=(PeerHostConfig("kid", addresses=("192.168.1.30",)),))
    assert kid.subnets == () and peer_routes([kid]) == []


@pytest.mark.parametrize(("config", "message"), [
    ({"children": (PeerHostConfig("kid", via=("x",), subnets=("10.7.0.0/24",)),)},
     "network.children: kid: via: 'x' does not appear to be an IPv4 or IPv6 address"),
    ({"children": (PeerHostConfig("kid", subnets=("10.7.0.1/24",)),)},
     "network.children: kid: subnets: 10.7.0.1/24 has host bits set"),
    ({"children": (PeerHostConfig("kid", via=("fd00::1",), subnets=("10.7.0.0/24",)),)},
     "network.children: kid: no IPv4 address in 'via' to route 10.7.0.0/24 through"),
    ({"children": (PeerHostConfig("k_d", addresses=("10.0.0.1",)),)},
     "network.children: name 'k_d' is not a DNS label"),
    ({"parent": PeerHostConfig(addresses=("10.0.0.1",)), "domain": "arpa"},
     "network.parent: this host's domain 'arpa' must be the parent's zone"),
])
def test_bad_peers(config: dict[str, object], message: str) -> None:
    with pytest.raises(UserError) as info:
        peers(**config)
    assert info.value.message.startswith(message)


def test_overlapping_subnets_are_refused() -> None:
    two = peers(children=(PeerHostConfig("kid", subnets=("10.7.0.0/24",)),
                          PeerHostConfig("other", subnets=("10.7.0.128/25",))))
    with pytest.raises(UserError, match=r"network.children: other: subnet 10.7.0.128/25 "
                                        r"overlaps the subnet of kid 10.7.0.0/24"):
        check_overlaps(two, ())
    with pytest.raises(UserError, match=r"network.children: kid: subnet 10.7.0.0/24 overlaps "
                                        r"this host's subnet 10.7.0.0/16"):
        check_overlaps(two[:1], (ip_network("10.7.0.0/16"),))
    check_overlaps(two[:1], (ip_network("10.8.0.0/24"), ip_network("fd00::/48")))


def test_an_instance_may_not_take_a_child_hosts_name() -> None:
    family = peers(domain="alpha.home.arpa",
                   children=(PeerHostConfig("kid", addresses=("10.0.0.9",)),),
                   parent=PeerHostConfig(addresses=("10.0.0.1",)))
    check_instance_names(family, ["web", "alpha"])  # the parent's name is not in our zone
    with pytest.raises(UserError) as info:
        check_instance_names(family, ["web", "kid"])
    assert info.value.message == (
        "instance name 'kid' is taken by a child host (network.children): "
        "kid.beta.alpha.home.arpa is delegated to it; choose another name")
