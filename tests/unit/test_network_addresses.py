from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_network

import pytest

from homecloud.errors import UserError
from homecloud.network import addresses
from homecloud.network.addresses import (
    bridge_subnet6,
    choose_subnet4,
    gateway4,
    gateway6,
    instance_address6,
    interface_id,
    overlapping_route,
    parse_subnet4,
    ula_prefix,
    validate_subnet4,
)
from homecloud.network.routes import Route


def route(text: str, device: str | None = "eth0", table: int = 254) -> Route:
    return Route(ip_network(text), device, table)


def test_ula_prefix_is_a_stable_fd_48_per_host_name():
    prefix = ula_prefix("alpha")
    assert prefix.prefixlen == 48
    assert prefix.subnet_of(IPv6Network("fd00::/8"))
    assert ula_prefix("alpha") == prefix == ula_prefix("ALPHA")
    assert ula_prefix("beta") != prefix


def test_bridge_subnet_is_a_64_inside_the_host_prefix():
    prefix = ula_prefix("alpha")
    subnet = bridge_subnet6(prefix, "hc0")
    assert subnet.prefixlen == 64 and subnet.subnet_of(prefix)
    assert bridge_subnet6(prefix, "hc0") == subnet
    assert bridge_subnet6(prefix, "hc1") != subnet
    with pytest.raises(ValueError):
        bridge_subnet6(IPv6Network("fd00::/64"), "hc0")


def test_instance_addresses_come_from_the_name_alone():
    subnet = bridge_subnet6(ula_prefix("alpha"), "hc0")
    web = instance_address6(subnet, "web")
    assert web in subnet
    assert instance_address6(subnet, "web") == web
    assert instance_address6(subnet, "db") != web
    assert gateway6(subnet) == subnet.network_address + 1
    assert web != gateway6(subnet)


def test_interface_ids_are_never_reserved():
    ids = {interface_id(f"i{n}") for n in range(5000)}
    assert len(ids) == 5000
    assert not ids & {0, 1}
    assert max(ids) < 0xFDFF_FFFF_FFFF_FF80


def test_a_reserved_hash_is_skipped(monkeypatch):
    real = addresses._digest
    calls = []

    def digest(domain, name):
        calls.append(name)
        if len(calls) == 1:
            return bytes(8) + real(domain, name)[8:]  # interface id 0: reserved
        if len(calls) == 2:
            return bytes.fromhex("ffffffffffffffff") + bytes(24)  # reserved anycast range
        return real(domain, name)

    monkeypatch.setattr(addresses, "_digest", digest)
    iid = interface_id("web")
    assert len(calls) == 3 and iid not in (0, 1)


def test_gateway4_is_the_first_host_address():
    assert str(gateway4(IPv4Network("10.4.5.0/24"))) == "10.4.5.1"


def test_chosen_subnet_is_a_private_24_and_stable():
    subnet = choose_subnet4([], "alpha")
    assert subnet.prefixlen == 24 and subnet.subnet_of(IPv4Network("10.0.0.0/8"))
    assert choose_subnet4([], "alpha") == subnet
    assert choose_subnet4([], "beta") != subnet


def test_chosen_subnet_avoids_every_route_but_the_default():
    first = choose_subnet4([], "alpha")
    routes = [route("0.0.0.0/0"), route(str(first)),
              route(str(IPv4Network((int(first.network_address) + 256, 24))), "wg0", 51820)]
    chosen = choose_subnet4(routes, "alpha")
    assert overlapping_route(chosen, routes) is None
    assert chosen not in (first, IPv4Network((int(first.network_address) + 256, 24)))
    # Our own bridge's route does not push us off our subnet.
    assert choose_subnet4([route(str(first), "hc0")], "alpha", ignore_device="hc0") == first


def test_ipv6_routes_do_not_block_ipv4_subnets():
    assert choose_subnet4([route("fd00::/8")], "alpha") == choose_subnet4([], "alpha")


def test_when_10_8_is_full_the_other_ranges_are_used():
    subnet = choose_subnet4([route("10.0.0.0/8")], "alpha")
    assert subnet.subnet_of(IPv4Network("172.16.0.0/12"))
    subnet = choose_subnet4([route("10.0.0.0/8"), route("172.16.0.0/12")], "alpha")
    assert subnet == IPv4Network("192.168.0.0/24")


def test_no_free_subnet_is_a_user_error():
    full = [route(str(r)) for r in addresses.PRIVATE_RANGES_V4]
    with pytest.raises(UserError, match="every private IPv4 /24 overlaps"):
        choose_subnet4(full, "alpha")


@pytest.mark.parametrize("text,message", [
    ("10.1.2.3/24", "host bits are set"),
    ("banana", "not an IPv4 network"),
    ("fd00::/64", "not IPv4"),
    ("10.1.2.0/30", "between a /8 and a /29"),
    ("8.8.8.0/24", "not private"),
    ("10.0.0.0/7", "between a /8 and a /29"),
])
def test_bad_user_subnets(text, message):
    with pytest.raises(UserError, match=message):
        parse_subnet4(text)


def test_user_subnet_overlapping_a_route_names_the_route():
    routes = [route("10.42.0.0/16", "eth1")]
    with pytest.raises(UserError) as info:
        validate_subnet4("10.42.7.0/24", routes)
    assert "10.42.0.0/16 dev eth1" in info.value.message
    assert validate_subnet4("10.43.7.0/24", routes) == IPv4Network("10.43.7.0/24")
    assert validate_subnet4("10.42.7.0/24", [route("10.42.7.0/24", "hc0")],
                            ignore_device="hc0") == IPv4Network("10.42.7.0/24")


def test_route_text_says_what_it_is():
    assert str(Route(ip_network("10.1.0.0/16"), "eth0")) == "10.1.0.0/16 dev eth0"
    assert str(Route(ip_network("10.1.0.0/16"), None, 100, "blackhole")) == \
        "blackhole 10.1.0.0/16 table 100"
    assert isinstance(instance_address6(IPv6Network("fd00::/64"), "x"), IPv6Address)
