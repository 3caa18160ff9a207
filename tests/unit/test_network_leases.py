import sqlite3
from ipaddress import IPv4Address, IPv4Network

import pytest

from homecloud.errors import Conflict
from homecloud.network.leases import LEASES_DDL, LeaseTable, next_free_address

SUBNET = IPv4Network("10.9.8.0/24")


def addr(text: str) -> IPv4Address:
    return IPv4Address(text)


def test_first_lease_skips_network_and_gateway():
    assert next_free_address(SUBNET, []) == addr("10.9.8.2")


def test_next_free_fills_holes_first():
    taken = [addr("10.9.8.2"), addr("10.9.8.4")]
    assert next_free_address(SUBNET, taken) == addr("10.9.8.3")


def test_broadcast_is_never_leased():
    small = IPv4Network("10.9.8.0/29")  # .2 to .6 usable
    taken = [small.network_address + n for n in range(2, 7)]
    with pytest.raises(Conflict, match="no IPv4 address is left in 10.9.8.0/29"):
        next_free_address(small, taken)
    assert next_free_address(small, taken[:-1]) == addr("10.9.8.6")


def test_a_24_holds_253_instances():
    taken: list[IPv4Address] = []
    for _ in range(253):
        taken.append(next_free_address(SUBNET, taken))
    assert taken[-1] == addr("10.9.8.254")
    with pytest.raises(Conflict):
        next_free_address(SUBNET, taken)


@pytest.fixture
def db(tmp_path):
    connection = sqlite3.connect(tmp_path / "state.db")
    connection.executescript(LEASES_DDL)
    yield connection
    connection.close()


def test_leases_are_stored_idempotent_and_released(db, tmp_path):
    table = LeaseTable(db, clock=lambda: 42.0)
    web = table.allocate(SUBNET, "web")
    assert web == addr("10.9.8.2")
    assert table.allocate(SUBNET, "web") == web
    assert table.allocate(SUBNET, "db") == addr("10.9.8.3")
    assert table.leases(SUBNET) == {"db": addr("10.9.8.3"), "web": web}
    assert table.get(SUBNET, "web") == web and table.get(SUBNET, "nope") is None
    # Committed: another connection sees them.
    other = sqlite3.connect(tmp_path / "state.db")
    assert other.execute("SELECT count(*), max(created) FROM leases").fetchone() == (2, 42.0)
    assert table.release("web") == 1
    assert table.release("web") == 0
    assert table.allocate(SUBNET, "new") == web  # the freed address is reused
    other.close()


def test_leases_inside_a_caller_transaction_roll_back_with_it(db):
    db.isolation_level = None
    table = LeaseTable(db)
    db.execute("BEGIN IMMEDIATE")
    table.allocate(SUBNET, "web")
    db.execute("ROLLBACK")
    assert table.leases(SUBNET) == {}


def test_a_lost_race_takes_the_next_address(db):
    table = LeaseTable(db)
    real = table.leases
    calls = []

    def stale(subnet):
        calls.append(subnet)
        if len(calls) == 1:  # another writer took .2 after we looked
            db.execute("INSERT INTO leases VALUES (?, '10.9.8.2', 'other', 0)", (str(subnet),))
            return {}
        return real(subnet)

    table.leases = stale  # type: ignore[method-assign]
    assert table.allocate(SUBNET, "web") == addr("10.9.8.3")
