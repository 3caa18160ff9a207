import pytest

from homecloud.errors import UserError
from homecloud.network.ifnames import (
    MAX_IFNAME,
    tap_name,
    validate_bridge_name,
    veth_host_name,
    veth_peer_name,
)

DERIVERS = (veth_host_name, veth_peer_name, tap_name)


def names_of_every_length():
    # Valid instance names are DNS labels of 1 to 63 characters.
    return ["a" * n for n in range(1, 64)] + ["a-" * 31 + "b", "0", "9x9", "web-1"]


@pytest.mark.parametrize("derive", DERIVERS)
def test_link_names_fit_ifnamsiz_for_any_instance_name(derive):
    for name in names_of_every_length():
        link = derive(name)
        assert 0 < len(link) <= MAX_IFNAME
        assert link.isascii() and link.isalnum() and link == link.lower()
        assert derive(name) == link


def test_kinds_have_distinct_prefixes():
    assert {veth_host_name("web")[:3], veth_peer_name("web")[:3], tap_name("web")[:3]} == \
        {"hcv", "hcp", "hct"}


def test_names_sharing_a_long_prefix_do_not_collide():
    # Truncation would map all of these to one name.
    base = "x" * 60
    names = {veth_host_name(base + suffix) for suffix in ("a", "b", "c", "aa", "ab")}
    assert len(names) == 5


def test_no_collisions_among_many_instance_names():
    count = 200_000
    links = {veth_host_name(f"instance-{n}") for n in range(count)}
    assert len(links) == count


@pytest.mark.parametrize("name", ["hc0", "br-home", "hc.lan", "a", "x" * 15, "Br_1"])
def test_good_bridge_names(name):
    assert validate_bridge_name(name) == name


@pytest.mark.parametrize("name,message", [
    ("", "must not be empty"),
    ("x" * 16, "too long"),
    ("has space", "is invalid"),
    ("a/b", "is invalid"),
    ("a:b", "is invalid"),
    ("0eth", "is invalid"),
    ("tab\t", "is invalid"),
    ("all", "reserved"),
    ("default", "reserved"),
    ("lo", "reserved"),
    ("hcvabc", "looks like the names homecloud gives"),
    ("hct", "looks like the names homecloud gives"),
])
def test_bad_bridge_names(name, message):
    with pytest.raises(UserError, match=message):
        validate_bridge_name(name)


def test_unprintable_bridge_names_are_shown_escaped():
    with pytest.raises(UserError) as info:
        validate_bridge_name("a\x1bb")
    assert "\x1b" not in info.value.message
