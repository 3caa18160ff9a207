"""The dev hosts' address plan: allocation, and the scripts that configure bridge, guest and
firewall."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from homecloud.devhost.netplan import DEVHOST_NETWORK, NetworkPlan
from homecloud.errors import HostError

TINY = NetworkPlan(ipv4=IPv4Network("198.18.0.0/29"), ipv6=IPv6Network("fd68:6364:6576::/64"))


def test_the_plan_uses_test_only_ranges() -> None:
    assert DEVHOST_NETWORK.ipv4.subnet_of(IPv4Network("198.18.0.0/15"))  # RFC 2544
    assert DEVHOST_NETWORK.ipv6.subnet_of(IPv6Network("fd00::/8"))  # ULA
    assert DEVHOST_NETWORK.gateway == IPv4Address("198.18.0.1")
    assert DEVHOST_NETWORK.gateway6 == IPv6Address("fd68:6364:6576::1")
    assert len(DEVHOST_NETWORK.bridge) <= 15


def test_a_number_gives_both_addresses() -> None:
    address = DEVHOST_NETWORK.address(0x1234)
    assert (address.ipv4, address.ipv6) == (IPv4Address("198.18.18.52"),
                                            IPv6Address("fd68:6364:6576::1234"))
    assert DEVHOST_NETWORK.number_of(address.ipv4) == 0x1234
    for number in (0, 1, 65535):  # network, bridge, broadcast
        with pytest.raises(ValueError, match="outside"):
            DEVHOST_NETWORK.address(number)


def test_allocation_is_stable_and_skips_taken_numbers() -> None:
    first = DEVHOST_NETWORK.allocate("dev1", taken=())
    assert DEVHOST_NETWORK.allocate("dev1", taken={5, 6}) == first
    assert DEVHOST_NETWORK.allocate("dev2", taken=()) != first
    moved = DEVHOST_NETWORK.allocate("dev1", taken={first.number})
    assert moved.number != first.number


def test_allocation_in_a_full_range_fails_clearly() -> None:
    numbers = {TINY.allocate("x", taken=set()).number}
    while len(numbers) < 5:  # 2..6 in a /29
        numbers.add(TINY.allocate("x", taken=numbers).number)
    assert numbers == {2, 3, 4, 5, 6}
    with pytest.raises(HostError, match=r"no free dev host address left in 198.18.0.0/29"):
        TINY.allocate("x", taken=numbers)


def test_firewall_replaces_only_our_table_and_masquerades_what_leaves() -> None:
    script = DEVHOST_NETWORK.firewall()
    lines = [line.strip() for line in script.splitlines()]
    assert lines[:3] == ["table ip hc-devhost {}", "delete table ip hc-devhost",
                         "table ip hc-devhost {"]
    assert "type nat hook postrouting priority srcnat; policy accept;" in lines
    assert "ip saddr 198.18.0.0/16 ip daddr != 198.18.0.0/16 masquerade" in lines
    tables = [line for line in lines if line.startswith(("table", "delete"))]
    assert all(" ip hc-devhost " in f"{line} " for line in tables)


def test_bridge_and_guest_commands() -> None:
    assert DEVHOST_NETWORK.bridge_commands().splitlines() == [
        "address replace 198.18.0.1/16 dev hcdev0",
        "address replace fd68:6364:6576::1/64 dev hcdev0 nodad",
        "link set hcdev0 up",
    ]
    assert DEVHOST_NETWORK.guest_commands(DEVHOST_NETWORK.address(7)).splitlines() == [
        "link set lo up",
        "address replace 198.18.0.7/16 dev host0",
        "address replace fd68:6364:6576::7/64 dev host0 nodad",
        "link set host0 up",
        "route replace default via 198.18.0.1 dev host0",
    ]
