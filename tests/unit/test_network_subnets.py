"""Which subnets a bridge gets, and that they are kept."""

from __future__ import annotations

import sqlite3
from ipaddress import IPv4Network, IPv6Network, ip_network

import pytest

from homecloud.errors import UserError
from homecloud.network.addresses import bridge_subnet6, ula_prefix
from homecloud.network.routes import Route
from homecloud.network.subnets import NETWORKS_DDL, NetworkTable, Subnets, decide_subnets

ROUTES = [Route(ip_network("192.168.1.0/24"), "eth0"), Route(ip_network("0.0.0.0/0"), "eth0"),
          Route(ip_network("10.42.0.0/24"), "hc0")]  # our own bridge's


def no_leases(_: IPv4Network) -> int:
    return 0


def test_ipv6_follows_from_the_names() -> None:
    subnets = decide_subnets("hc0", "alpha", None, None, ROUTES, no_leases)
    assert subnets.subnet6 == bridge_subnet6(ula_prefix("alpha"), "hc0")
    assert subnets.subnet4.prefixlen == 24 and subnets.subnet4.is_private


def test_a_user_set_subnet_ignores_our_own_bridges_route() -> None:
    subnets = decide_subnets("hc0", "alpha", "10.42.0.0/24", None, ROUTES, no_leases)
    assert subnets.subnet4 == IPv4Network("10.42.0.0/24")


def test_a_user_set_subnet_overlapping_a_route_is_refused() -> None:
    with pytest.raises(UserError) as info:
        decide_subnets("hc0", "alpha", "192.168.1.128/25", None, ROUTES, no_leases)
    assert info.value.message == (
        "network.subnet4: subnet 192.168.1.128/25 overlaps the route 192.168.1.0/24 dev eth0 "
        "already on this host: choose another subnet, or leave it unset to pick a free one")


def test_the_stored_subnet_is_kept_and_a_change_needs_no_instances() -> None:
    stored = Subnets(IPv4Network("10.7.7.0/24"), IPv6Network("fd00::/64"))
    assert decide_subnets("hc0", "alpha", None, stored, ROUTES, no_leases).subnet4 == \
        stored.subnet4
    assert decide_subnets("hc0", "alpha", "10.8.0.0/24", stored, ROUTES,
                          no_leases).subnet4 == IPv4Network("10.8.0.0/24")
    with pytest.raises(UserError, match="network.subnet4 changed from 10.7.7.0/24 to "
                       "10.8.0.0/24, but 2 instance"):
        decide_subnets("hc0", "alpha", "10.8.0.0/24", stored, ROUTES, lambda _: 2)


def test_the_table_keeps_one_row_per_bridge(tmp_path) -> None:
    db = sqlite3.connect(tmp_path / "state.db")
    db.executescript(NETWORKS_DDL)
    table = NetworkTable(db, clock=lambda: 1.0)
    assert table.get("hc0") is None
    first = Subnets(IPv4Network("10.1.0.0/24"), IPv6Network("fd00:1::/64"))
    table.put("hc0", first)
    table.put("hc0", Subnets(IPv4Network("10.2.0.0/24"), first.subnet6))
    assert table.get("hc0") == Subnets(IPv4Network("10.2.0.0/24"), first.subnet6)
    assert db.execute("SELECT count(*) FROM networks").fetchone() == (1,)
