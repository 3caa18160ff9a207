"""--idle: durations, what a spec refuses, the firewall of a sleeping instance, and the wake
listener's pure decisions (whom a connection is for, who is due to sleep)."""

import json
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from homecloud.errors import UserError
from homecloud.instances.info import instance_state
from homecloud.instances.spec import HostLimits, InstanceSpec, parse_idle
from homecloud.network.firewall import (
    WAKE_PORT,
    FirewallConfig,
    InstanceFirewall,
    render_ruleset,
)
from homecloud.network.ports import PortMapping
from homecloud.systemd.transient import UnitSummary
from homecloud.wake.targets import IdleClock, IdleInstance, find_target, idle_instances

HOST = HostLimits(cpus=4, memory=8 << 30)


@pytest.mark.parametrize(("text", "seconds"), [
    ("10m", 600), ("30s", 30), ("2h", 7200), ("1d", 86400), ("45", 45), (" 1.5M ", 90), (5, 5)])
def test_idle_durations(text, seconds):
    assert parse_idle(text) == seconds


@pytest.mark.parametrize(("text", "message"), [
    ("ten", "'ten' is invalid: give a duration like 30s"),
    ("10x", "invalid"), ("-5s", "invalid"), ("", "invalid"), ("1e3", "invalid"),
    ("0s", "out of range: give 1s to 7d"), ("0.5", "out of range"), ("8d", "out of range"),
    (True, "invalid")])
def test_bad_idle_durations_say_what_to_give(text, message):
    with pytest.raises(UserError, match=message):
        parse_idle(text)


def test_idle_needs_a_booted_networked_instance():
    spec = InstanceSpec(name="blog", image="debian", idle=600.0)
    assert spec.validate(HOST) is spec
    with pytest.raises(UserError, match="--idle needs a booted instance"):
        InstanceSpec(name="job", image="debian", idle=60.0, command=["true"]).validate(HOST)
    with pytest.raises(UserError, match="--idle needs networking"):
        InstanceSpec(name="lab", image="debian", idle=60.0, network="none").validate(HOST)
    with pytest.raises(UserError, match="out of range"):
        InstanceSpec(name="blog", image="debian", idle=0.1).validate(HOST)


def test_idle_survives_the_record():
    spec = InstanceSpec(name="blog", image="debian", idle=600.0)
    assert InstanceSpec.from_json(json.loads(json.dumps(spec.to_json()))).idle == 600.0
    old_row = {k: v for k, v in spec.to_json().items() if k != "idle"}
    assert InstanceSpec.from_json(old_row).idle is None


def test_a_stopped_idle_instance_sleeps():
    up = UnitSummary("hc-blog.service", "loaded", "active", "running")
    assert instance_state("ready", None, idle=True) == "sleeping"
    assert instance_state("ready", None) == "stopped"
    assert instance_state("ready", up, idle=True) == "running"
    assert instance_state("creating", None, idle=True) == "creating"


BLOG = InstanceFirewall("blog", IPv4Address("10.9.8.2"), IPv6Address("fd00:1:2:3::2"),
                        (PortMapping(8080, 80), PortMapping(5353, 53, "udp")))


def firewall(sleeping):
    return render_ruleset(FirewallConfig(
        bridge="hc0", subnet4=IPv4Network("10.9.8.0/24"), subnet6=IPv6Network("fd00:1:2:3::/64"),
        instances=(InstanceFirewall(**{**vars(BLOG), "sleeping": sleeping}),)))


def named(document, kind, name):
    return next(c["add"][kind] for c in document["nftables"]
                if kind in c.get("add", {}) and c["add"][kind]["name"] == name)


def rules(document, chain):
    return [c["add"]["rule"]["expr"] for c in document["nftables"]
            if "rule" in c.get("add", {}) and c["add"]["rule"]["chain"] == chain]


def test_a_sleeping_instance_sends_its_tcp_connections_to_the_wake_listener():
    document = firewall(sleeping=True)
    assert named(document, "set", "sleeping4")["elem"] == ["10.9.8.2"]
    assert named(document, "set", "sleeping6")["elem"] == ["fd00:1:2:3::2"]
    assert named(document, "set", "wake_ports")["elem"] == [8080]  # TCP only
    for chain in ("prerouting", "output"):
        wake = [r for r in rules(document, chain) if "@dnat4_addr" not in json.dumps(r)
                and "@dnat6_addr" not in json.dumps(r)]
        targets = [r[-1]["dnat"] for r in wake]
        assert {"family": "ip", "addr": "10.9.8.1", "port": WAKE_PORT} in targets
        assert {"family": "ip6", "addr": "fd00:1:2:3::1", "port": WAKE_PORT} in targets
        # ahead of the published ports' DNAT, which would send them to the sleeping guest
        assert rules(document, chain)[:len(wake)] == wake
    guard = json.dumps(rules(document, "input")[:2])
    assert '"right": 7079' in guard and '"dnat"' in guard and '"drop"' in guard


def test_an_awake_instance_gets_the_table_it_had_before_idle_existed():
    document = json.dumps(firewall(sleeping=False))
    assert "sleeping4" not in document and "wake_ports" not in document
    assert str(WAKE_PORT) not in document


LISTING = [
    {"name": "blog", "idle": 600.0, "state": "sleeping", "ipv4": "10.9.8.2",
     "ipv6": "fd00:1:2:3::2", "ports": ["8080:80/tcp", "5353:53/udp"]},
    {"name": "web", "idle": None, "state": "running", "ipv4": "10.9.8.3",
     "ipv6": "fd00:1:2:3::3", "ports": ["9090:80/tcp"]},
]


def test_the_original_destination_names_the_instance_and_its_guest_port():
    own = find_target(LISTING, IPv4Address("10.9.8.2"), 22)
    assert (own.name, str(own.address), own.port) == ("blog", "10.9.8.2", 22)
    published = find_target(LISTING, IPv4Address("192.168.1.5"), 8080)
    assert (published.name, str(published.address), published.port) == ("blog", "10.9.8.2", 80)
    six = find_target(LISTING, IPv6Address("fd00:aa::1"), 8080)
    assert str(six.address) == "fd00:1:2:3::2"
    mapped = find_target(LISTING, IPv6Address("::ffff:10.9.8.2"), 80)
    assert mapped.name == "blog" and str(mapped.address) == "10.9.8.2"


def test_nothing_is_woken_that_does_not_sleep():
    assert find_target(LISTING, IPv4Address("10.9.8.3"), 80) is None  # not idle
    assert find_target(LISTING, IPv4Address("192.168.1.5"), 9090) is None
    assert find_target(LISTING, IPv4Address("192.168.1.5"), 5353) is None  # UDP
    assert find_target(LISTING, IPv4Address("192.168.1.5"), 7079) is None


def test_idle_clock_counts_from_the_last_open_connection():
    blog = IdleInstance("blog", 5.0, frozenset({IPv4Address("10.9.8.2")}), True)
    clock = IdleClock()
    assert clock.due(100.0, [blog], set()) == []  # first seen: a full idle time ahead
    assert clock.due(104.0, [blog], set()) == []
    assert clock.due(104.5, [blog], {"blog"}) == []  # a connection open
    assert clock.due(109.0, [blog], set()) == []
    assert clock.due(109.5, [blog], set()) == ["blog"]
    assert clock.due(200.0, [], set()) == [] and clock.last_busy == {}  # asleep: forgotten


def test_idle_instances_are_read_from_the_listing():
    found = idle_instances(LISTING)
    assert [(i.name, i.running, i.idle) for i in found] == [("blog", False, 600.0)]
    assert IPv6Address("fd00:1:2:3::2") in found[0].addresses
