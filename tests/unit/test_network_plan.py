"""The network plan: names checked, gateways and an instance's addresses derived."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_address

import pytest

from homecloud.config import NetworkConfig, PeerHostConfig
from homecloud.errors import UserError
from homecloud.network.addresses import instance_address6
from homecloud.network.plan import (
    Names,
    NetworkPlan,
    instance_netns,
    validate_bridge,
    validate_names,
)

PLAN = NetworkPlan("hc0", IPv4Network("10.9.8.0/24"), IPv6Network("fd00:1:2:3::/64"),
                   Names("alpha", "home.arpa"))


def test_derived_addresses() -> None:
    assert [str(a) for a in PLAN.gateways] == ["10.9.8.1", "fd00:1:2:3::1"]
    assert [str(i) for i in PLAN.bridge_interfaces] == ["10.9.8.1/24", "fd00:1:2:3::1/64"]
    web = PLAN.addresses("web", IPv4Address("10.9.8.2"))
    assert web.ipv6 == instance_address6(PLAN.subnet6, "web")
    assert [str(i) for i in PLAN.guest_interfaces(web)] == ["10.9.8.2/24", f"{web.ipv6}/64"]
    assert PLAN.fqdn("web") == "web.alpha.home.arpa"
    assert instance_netns("web") == "hc-web"


def test_names_default_to_the_machine_and_are_lower_case() -> None:
    names = validate_names(NetworkConfig(), "Alpha.lan.example")
    assert (names.host, names.domain, names.origin) == ("alpha", "home.arpa",
                                                       "alpha.home.arpa")
    config = NetworkConfig(host_name="Beta", domain="Example.ORG.",
                           children=(PeerHostConfig("Kid", ("192.168.1.20", "fd00::20")),))
    names = validate_names(config, "ignored")
    assert names.origin == "beta.example.org"
    (kid,) = names.peers
    assert (kid.name, kid.role, kid.zone) == ("kid", "child", "kid.beta.example.org")
    assert kid.servers == (ip_address("192.168.1.20"), ip_address("fd00::20"))


@pytest.mark.parametrize(("config", "machine", "message"), [
    (NetworkConfig(), "bad_host", "this machine's host name 'bad_host' is not a DNS label"),
    (NetworkConfig(host_name="-x"), "ok", "network.host_name '-x' is not a DNS label"),
    (NetworkConfig(domain="a..b"), "ok", "network.domain 'a..b': label '' is not a DNS label"),
    (NetworkConfig(domain=""), "ok", "network.domain '' must have 1 to 200 characters"),
    (NetworkConfig(children=(PeerHostConfig("kid", ("nope",)),)), "ok",
     "network.children: kid: addresses: 'nope' does not appear to be an IPv4 or IPv6 address"),
    (NetworkConfig(children=(PeerHostConfig("kid", ("10.0.0.1",)),
                             PeerHostConfig("KID", ("10.0.0.2",)))), "ok",
     "network.children: kid is listed twice"),
])
def test_bad_names(config: NetworkConfig, machine: str, message: str) -> None:
    with pytest.raises(UserError) as info:
        validate_names(config, machine)
    assert info.value.message.startswith(message)
    assert "\n" not in info.value.message


@pytest.mark.parametrize(("bridge", "message"), [
    ("bad name!", "network.bridge: bridge name 'bad name!' is invalid"),
    ("a" * 16, "network.bridge: bridge name '" + "a" * 16 + "' is too long"),
    ("hcvabc", "looks like the names homecloud gives instance links"),
])
def test_bad_bridge(bridge: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        validate_bridge(NetworkConfig(bridge=bridge))
    assert validate_bridge(NetworkConfig(bridge="br-home")) == "br-home"
