"""hc-dns's limits on what clients can cost it: TCP connections per client (tcp_clients.py)
and the rate of error lines in its log (errorlog.py)."""

import logging

import pytest

from homecloud.dns.errorlog import RateLimitedLog
from homecloud.dns.tcp_clients import Connection, TcpClients, client_of


@pytest.mark.parametrize("address,client", [
    ("127.0.0.2", "127.0.0.2"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:bbbb::7", "2001:db8:1:2::/64"),  # the same machine's network
    ("::ffff:10.0.0.1", "10.0.0.1"),
    ("fe80::1%eth0", "fe80::/64"),
])
def test_clients_are_addresses_or_ipv6_networks(address, client):
    assert client_of(address) == client


class Closed(list):
    def connection(self, client, idle_since=0.0):
        conn = Connection(client, lambda: self.append(conn), idle_since)
        return conn


def test_one_client_cannot_hold_more_than_its_share():
    closed = Closed()
    clients = TcpClients(total=8, per_client=3)
    mine = [closed.connection("10.0.0.1") for _ in range(5)]
    assert [clients.admit(c) for c in mine] == [True, True, True, False, False]
    assert clients.held_by("10.0.0.1") == 3 and closed == []
    clients.release(mine[0])
    clients.release(mine[0])  # twice: harmless
    assert clients.admit(mine[3]) and clients.held_by("10.0.0.1") == 3


def test_when_full_a_newcomer_takes_the_longest_idle_connection_of_the_biggest_holder():
    closed = Closed()
    clients = TcpClients(total=6, per_client=4)
    greedy = [closed.connection("10.0.0.1", idle_since=t) for t in (5.0, 1.0, 3.0, None)]
    other = [closed.connection("10.0.0.2", idle_since=0.0) for _ in range(2)]
    assert all(clients.admit(c) for c in greedy + other)
    newcomer = closed.connection("10.0.0.3")
    assert clients.admit(newcomer)
    assert closed == [greedy[1]]  # idle since 1.0, the longest of the biggest holder
    assert clients.held_by("10.0.0.1") == 3 and clients.count == 6


def test_when_full_and_nobody_idle_or_bigger_the_newcomer_is_refused():
    closed = Closed()
    clients = TcpClients(total=4, per_client=4)
    busy = [closed.connection("10.0.0.1", idle_since=None) for _ in range(4)]
    assert all(clients.admit(c) for c in busy)
    assert not clients.admit(closed.connection("10.0.0.2"))
    even = TcpClients(total=4, per_client=4)
    for n in range(1, 5):
        assert even.admit(closed.connection(f"10.0.0.{n}"))
    # The newcomer would hold as many as anyone: nobody is closed for it.
    assert not even.admit(closed.connection("10.0.0.5")) and closed == []


class Clock:
    def __init__(self):
        self.now = 100.0
        self.scheduled = []

    def __call__(self):
        return self.now

    def schedule(self, delay, callback):
        self.scheduled.append((self.now + delay, callback))


def raised(message):
    try:
        raise TypeError(message)
    except TypeError as exc:
        return exc


def test_errors_are_logged_once_per_interval_with_a_count(caplog):
    clock = Clock()
    errors = RateLimitedLog(logging.getLogger("test.dns"), "answering queries", interval=60,
                            clock=clock, schedule=clock.schedule)
    with caplog.at_level(logging.ERROR, logger="test.dns"):
        errors.record(raised("first"))
        for n in range(1000):
            clock.now += 0.01
            errors.record(raised(f"n{n}"))
        assert len(caplog.records) == 1
        assert "1 error(s) answering queries" in caplog.records[0].getMessage()
        assert "TypeError: first (at test_dns_limits.py:" in caplog.records[0].getMessage()
        ((when, flush),) = clock.scheduled  # one flush for the whole burst
        assert when == 160.0
        clock.now = when
        flush()
        assert len(caplog.records) == 2
        line = caplog.records[1].getMessage()
        assert "1000 error(s)" in line and "(1001 since start)" in line and "n999" in line
        assert "\n" not in line
        flush()  # nothing new: nothing logged
        assert len(caplog.records) == 2
