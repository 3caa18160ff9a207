"""Leases and published ports in the real state database (migration 3)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Network

import pytest

from homecloud.errors import Conflict
from homecloud.network.plan import Names, NetworkPlan
from homecloud.network.ports import PortMapping
from homecloud.network.records import NetworkRecords
from homecloud.state.store import Store

PLAN = NetworkPlan("hc0", IPv4Network("10.9.8.0/24"), IPv6Network("fd00:1:2:3::/64"),
                   Names("alpha", "home.arpa"))
WEB_PORTS = (PortMapping(8080, 80), PortMapping(5353, 53, "udp"))


@pytest.fixture
def records(tmp_path) -> NetworkRecords:
    return NetworkRecords(Store(tmp_path / "state.db"))


def test_allocate_is_idempotent_and_release_frees(records: NetworkRecords) -> None:
    web = records.allocate(PLAN, "web", WEB_PORTS)
    assert web == PLAN.addresses("web", IPv4Address("10.9.8.2"))
    assert records.allocate(PLAN, "web", WEB_PORTS) == web
    db = records.allocate(PLAN, "db")
    assert db.ipv4 == IPv4Address("10.9.8.3")
    assert [(m.name, m.ports) for m in records.members(PLAN)] == [("db", ()),
                                                                  ("web", WEB_PORTS)]
    assert records.holders() == {"web", "db"}
    assert records.leases_in(PLAN.subnet4) == 2
    records.release("web")
    assert records.addresses(PLAN, "web") is None
    assert records.published() == {}
    assert records.allocate(PLAN, "cache").ipv4 == IPv4Address("10.9.8.2")  # reused


def test_a_published_port_conflict_records_nothing(records: NetworkRecords) -> None:
    records.allocate(PLAN, "web", WEB_PORTS)
    with pytest.raises(Conflict, match="host port 8080/tcp is already published by instance "
                       "web"):
        records.allocate(PLAN, "db", (PortMapping(9000, 90), PortMapping(8080, 81)))
    assert records.addresses(PLAN, "db") is None
    assert set(records.published()) == {"web"}
    # Another protocol on the same number is another port.
    records.allocate(PLAN, "db", (PortMapping(8080, 80, "udp"),))


def test_subnets_are_stored(records: NetworkRecords) -> None:
    from homecloud.network.subnets import Subnets

    assert records.stored_subnets("hc0") is None
    records.save_subnets("hc0", Subnets(PLAN.subnet4, PLAN.subnet6))
    assert records.stored_subnets("hc0") == Subnets(PLAN.subnet4, PLAN.subnet6)


def test_release_says_whether_the_instance_held_anything(records: NetworkRecords) -> None:
    records.allocate(PLAN, "web", WEB_PORTS)
    records.allocate(PLAN, "db")
    assert records.release("web") == 1 + len(WEB_PORTS)  # its lease and its ports
    assert records.release("db") == 1
    # Held nothing (`--network none`, or released already): the service rebuilds nothing.
    assert records.release("db") == 0
    assert records.release("never") == 0
