from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest

from homecloud.dns.zone import (
    ChildHost,
    InstanceEntry,
    ServiceRecord,
    ZoneDescription,
    build_zones,
    name_key,
    reverse_zone_names,
)
from homecloud.errors import UserError

DESCRIPTION = ZoneDescription(
    host="alpha",
    addresses=(ip_address("10.1.2.1"), ip_address("fd00:1:2:3::1")),
    subnets=(ip_network("10.1.2.0/24"), ip_network("fd00:1:2:3::/64")),
    instances=(InstanceEntry("web", IPv4Address("10.1.2.2"), IPv6Address("fd00:1:2:3::abcd"),
                             (ServiceRecord("tcp", 8080, 80),
                              ServiceRecord("udp", 53, 53, "dns"))),),
    children=(ChildHost("beta", (ip_address("192.168.1.20"),)),),
    serial=7,
)


def test_description_round_trips_through_json():
    assert ZoneDescription.from_json(DESCRIPTION.to_json()) == DESCRIPTION
    assert DESCRIPTION.origin == "alpha.home.arpa"


@pytest.mark.parametrize("data,message", [
    ({}, "KeyError"),
    ({"host": "a", "addresses": ["nope"]}, "does not appear to be an IPv4 or IPv6 address"),
    ({"host": "a", "instances": [{"ipv4": "10.0.0.1"}]}, "KeyError"),
    ({"host": "a", "serial": "x"}, "ValueError"),
])
def test_bad_descriptions_are_one_line_errors(data, message):
    with pytest.raises(UserError, match=message):
        ZoneDescription.from_json(data)


def test_zones_forward_and_reverse():
    zones = build_zones(DESCRIPTION)
    apexes = {b".".join(z.apex).decode() for z in zones.zones}
    assert apexes == {"alpha.home.arpa", "2.1.10.in-addr.arpa",
                      "3.0.0.0.2.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa"}
    forward = zones.find(name_key("WEB.Alpha.home.arpa"))
    assert forward is not None and forward.apex == name_key("alpha.home.arpa")
    assert zones.find(name_key("example.com")) is None
    assert zones.find(name_key("home.arpa")) is None


def test_records_of_an_instance():
    zones = build_zones(DESCRIPTION)
    forward = zones.find(zones.origin)
    node = forward.records[name_key("web.alpha.home.arpa")]
    assert {str(rr.rdata) for rrs in node.values() for rr in rrs} == \
        {"10.1.2.2", "fd00:1:2:3::abcd"}
    srv = forward.records[name_key("_80._tcp.web.alpha.home.arpa")]
    assert [str(rr.rdata) for rr in srv[33]] == ["0 0 8080 alpha.home.arpa."]
    assert name_key("_dns._udp.web.alpha.home.arpa") in forward.records
    assert name_key("_tcp.web.alpha.home.arpa") in forward.empty_nonterminals


def test_ptr_records_for_host_and_instances():
    zones = build_zones(DESCRIPTION)
    for address, target in (("10.1.2.2", "web.alpha.home.arpa."),
                            ("fd00:1:2:3::abcd", "web.alpha.home.arpa."),
                            ("10.1.2.1", "alpha.home.arpa.")):
        key = name_key(ip_address(address).reverse_pointer)
        zone = zones.find(key)
        assert [str(rr.rdata) for rr in zone.records[key][12]] == [target]


def test_soa_and_ns_at_each_apex():
    zones = build_zones(DESCRIPTION)
    for zone in zones.zones:
        node = zone.records[zone.apex]
        assert str(node[6][0].rdata).startswith("alpha.home.arpa. hostmaster.alpha.home.arpa. 7 ")
        assert [str(rr.rdata) for rr in node[2]] == ["alpha.home.arpa."]
        assert zone.negative_ttl == 30


def test_children_are_delegated_with_glue():
    forward = build_zones(DESCRIPTION).find(name_key("alpha.home.arpa"))
    cut, delegation = forward.delegation_for(name_key("x.y.beta.alpha.home.arpa"))
    assert cut == name_key("beta.alpha.home.arpa")
    assert [str(rr.rdata) for rr in delegation.ns] == ["beta.alpha.home.arpa."]
    assert [str(rr.rdata) for rr in delegation.glue] == ["192.168.1.20"]
    assert delegation.servers == (("192.168.1.20", 53),)
    assert forward.delegation_for(name_key("web.alpha.home.arpa")) is None


@pytest.mark.parametrize("instances,children,message", [
    (("web", "web"), (), "has the name of another instance"),
    (("web",), ("web",), "has the name of another instance"),
    (("a.b",), (), "not a single DNS label"),
])
def test_name_clashes_are_refused(instances, children, message):
    description = ZoneDescription(
        host="alpha", instances=tuple(InstanceEntry(n) for n in instances),
        children=tuple(ChildHost(n, (ip_address("10.0.0.1"),)) for n in children))
    with pytest.raises(UserError, match=message):
        build_zones(description)


@pytest.mark.parametrize("network,zones", [
    ("10.83.12.0/24", ["12.83.10.in-addr.arpa"]),
    ("10.83.12.0/23", ["12.83.10.in-addr.arpa", "13.83.10.in-addr.arpa"]),
    ("10.83.12.64/26", ["12.83.10.in-addr.arpa"]),
    ("fd12:3456:789a:1::/64", ["1.0.0.0.a.9.8.7.6.5.4.3.2.1.d.f.ip6.arpa"]),
    ("fd12:3456:789a::/48", ["a.9.8.7.6.5.4.3.2.1.d.f.ip6.arpa"]),
])
def test_reverse_zone_names(network, zones):
    assert reverse_zone_names(ip_network(network)) == zones
