"""Routes to peer hosts' subnets (homecloud/network/routing.py) in a real network namespace:
made with homecloud's protocol number, replaced when the next hop changes, removed when no
longer wanted, other routes never touched, and an unreachable next hop one line."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_address, ip_network

import pytest
from netns import ip, link_pair, namespaces, require_netns

from homecloud.errors import HostError
from homecloud.network.peers import PeerRoute
from homecloud.network.routing import ROUTE_PROTOCOL, sync_routes

pytestmark = pytest.mark.system


@pytest.fixture
def host() -> Iterator[str]:
    """A namespace with a LAN link (192.0.2.1/24, 2001:db8::1/64) and a route of its own."""
    require_netns()
    with namespaces("host", "lan") as (ns, lan):
        link_pair(ns, "uplink", lan, "peer", ["192.0.2.1/24", "2001:db8::1/64"],
                  ["192.0.2.2/24", "2001:db8::2/64"])
        ip("-n", ns, "route", "add", "198.51.100.0/24", "via", "192.0.2.9")
        yield ns


def routes(ns: str) -> list[str]:
    return [line.strip() for family in ("-4", "-6")
            for line in ip("-n", ns, family, "route", "show", "proto", str(ROUTE_PROTOCOL))
            .splitlines()]


def route(destination: str, gateway: str) -> PeerRoute:
    return PeerRoute(ip_network(destination), ip_address(gateway), "beta")


def test_routes_are_made_changed_and_removed(host: str) -> None:
    wanted = [route("10.7.0.0/24", "192.0.2.2"), route("fd12:3456:789a::/48", "2001:db8::2")]
    assert sync_routes(wanted, netns=host) == [f"route {r}" for r in wanted]
    assert routes(host) == ["10.7.0.0/24 via 192.0.2.2 dev uplink",
                            "fd12:3456:789a::/48 via 2001:db8::2 dev uplink metric 1024 "
                            "pref medium"]
    assert sync_routes(wanted, netns=host) == []  # already so: nothing done
    moved = [route("10.7.0.0/24", "192.0.2.3")]
    assert sync_routes(moved, netns=host) == ["route 10.7.0.0/24 via 192.0.2.3 (beta)",
                                              "removed route fd12:3456:789a::/48"]
    assert routes(host) == ["10.7.0.0/24 via 192.0.2.3 dev uplink"]
    assert sync_routes([], netns=host) == ["removed route 10.7.0.0/24"]
    assert routes(host) == []
    # The namespace's own route was never ours to touch.
    assert "198.51.100.0/24 via 192.0.2.9" in ip("-n", host, "route", "show")


def test_an_unreachable_next_hop_is_one_line_and_the_rest_is_made(host: str) -> None:
    sync_routes([route("10.8.0.0/24", "192.0.2.2")], netns=host)
    with pytest.raises(HostError) as info:
        sync_routes([route("10.8.0.0/24", "203.0.113.7"), route("10.7.0.0/24", "192.0.2.2")],
                    netns=host)
    message = info.value.message
    assert message.startswith("cannot route to peer hosts: 10.8.0.0/24 via 203.0.113.7 (beta)")
    assert "is the next hop on a link of this host?" in message and "\n" not in message
    # The route it was to replace is gone too: it led where the configuration no longer says.
    assert routes(host) == ["10.7.0.0/24 via 192.0.2.2 dev uplink"]
