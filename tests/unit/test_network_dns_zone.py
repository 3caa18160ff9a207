"""The zone the agent gives hc-dns: built from the network's record, serials that only grow."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Network, ip_address
from pathlib import Path

from homecloud.config import NetworkConfig, PeerHostConfig
from homecloud.dns.config import DnsConfig, load_config
from homecloud.dns.zone import Forwarding
from homecloud.network.addresses import ula_prefix
from homecloud.network.dns_publish import ZoneFile
from homecloud.network.dns_zone import dns_config, zone_description, zone_records
from homecloud.network.plan import NetworkPlan, validate_names
from homecloud.network.ports import PortMapping
from homecloud.network.records import Member

PLAN = NetworkPlan("hc0", IPv4Network("10.9.8.0/24"), IPv6Network("fd00:1:2:3::/64"),
                   validate_names(NetworkConfig(
                       host_name="alpha", children=(PeerHostConfig("kid", ("10.0.0.9",)),)),
                       "ignored"))
WEB = Member("web", PLAN.addresses("web", IPv4Address("10.9.8.2")), (PortMapping(8080, 80),))


def test_the_zone_holds_the_bridge_instances_subnets_and_children() -> None:
    zone = zone_description(PLAN, [WEB])
    assert zone.origin == "alpha.home.arpa"
    assert zone.addresses == PLAN.gateways
    assert zone.subnets == (PLAN.subnet4, PLAN.subnet6)
    (entry,) = zone.instances
    assert (entry.name, entry.ipv4, entry.ipv6) == ("web", WEB.addresses.ipv4,
                                                    WEB.addresses.ipv6)
    assert [(s.label, s.host_port) for s in entry.services] == [("_80._tcp", 8080)]
    assert [(c.name, c.addresses) for c in zone.children] == [("kid", (ip_address("10.0.0.9"),))]
    assert zone.forwards == ()
    config = dns_config(PLAN, [WEB])
    assert config.listen == ("10.9.8.1", "fd00:1:2:3::1") and config.port == 53


def test_records_as_rows() -> None:
    rows = zone_records(zone_description(PLAN, [WEB]))
    found = {(r["name"], r["type"], r["data"]) for r in rows}
    assert ("web.alpha.home.arpa", "A", "10.9.8.2") in found
    assert ("web.alpha.home.arpa", "AAAA", str(WEB.addresses.ipv6)) in found
    assert ("2.8.9.10.in-addr.arpa", "PTR", "web.alpha.home.arpa") in found
    assert ("_80._tcp.web.alpha.home.arpa", "SRV", "0 0 8080 alpha.home.arpa") in found
    assert ("kid.alpha.home.arpa", "NS", "kid.alpha.home.arpa") in found
    assert ("kid.alpha.home.arpa", "A", "10.0.0.9") in found
    assert rows[0]["zone"] == "alpha.home.arpa"  # the forward zone first


def test_the_file_changes_only_with_the_zone_and_its_serial_grows(tmp_path: Path) -> None:
    clock = {"now": 1000.0}
    zone_file = ZoneFile(tmp_path / "dns.json", clock=lambda: clock["now"])
    assert zone_file.current() is None
    first = zone_file.write(dns_config(PLAN, []))
    assert first is not None and first.zone.serial == 1000
    assert zone_file.write(dns_config(PLAN, [])) is None  # same zone: untouched
    second = zone_file.write(dns_config(PLAN, [WEB]))
    assert second is not None and second.zone.serial == 1001  # same second: still grows
    clock["now"] = 5000.0
    third = zone_file.write(dns_config(PLAN, []))
    assert third is not None and third.zone.serial == 5000
    assert load_config(tmp_path / "dns.json") == third
    (tmp_path / "dns.json").write_text("not json")  # replaced, not fatal
    assert zone_file.write(dns_config(PLAN, [])) is not None


def test_peer_hosts_zones_are_asked_there() -> None:
    """A child's reverse zones go to the child; the parent's zone and reverse zones to the
    parent; with an IPv6 next hop, the reverse zone of the peer's /48 too."""
    names = validate_names(NetworkConfig(
        host_name="beta", domain="alpha.home.arpa",
        children=(PeerHostConfig("kid", via=("192.168.1.30",), subnets=("10.1.2.0/24",)),),
        parent=PeerHostConfig(addresses=("10.0.0.1",), via=("192.168.1.10", "fd00:99::10"),
                              subnets=("10.0.0.0/24",))), "ignored")
    plan = NetworkPlan("hc0", IPv4Network("10.9.8.0/24"), IPv6Network("fd00:1:2:3::/64"), names)
    zone = zone_description(plan, [])
    assert [(c.name, [str(a) for a in c.addresses]) for c in zone.children] == [
        ("kid", ["10.1.2.1"])]
    alpha48 = ula_prefix("alpha")
    alpha_reverse = ".".join(reversed(f"{alpha48.network_address.exploded}".replace(":", "")
                                      [:12])) + ".ip6.arpa"
    assert zone.forwards == (
        Forwarding("2.1.10.in-addr.arpa", (ip_address("10.1.2.1"),)),
        Forwarding("alpha.home.arpa", (ip_address("10.0.0.1"),)),
        Forwarding("0.0.10.in-addr.arpa", (ip_address("10.0.0.1"),)),
        Forwarding(alpha_reverse, (ip_address("10.0.0.1"),)))
    again = DnsConfig.from_json(dns_config(plan, []).to_json())
    assert again.zone.forwards == zone.forwards
