"""`hc run --network none`: an instance with loopback only, through the real `hc`, agent,
kernel, nftables and hc-dns of the session dev host. It gets no lease, no namespace or veth on
the bridge, no DNS name and no firewall rule, so the host's network state is the same with it
as without it; `hc rm` leaves nothing; `-p` with it is refused before anything is made.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cli_checks import assert_nothing_left, hc_fails
from netstate import NetworkState, network_state, sql, unchanged_network

from homecloud.devhost import DevHost

pytestmark = pytest.mark.system

NAME = "lab"


def links_inside(host: DevHost, name: str) -> list[str]:
    return sorted(host.hc("exec", name, "--", "ls", "/sys/class/net").stdout.split())


def state_rows(host: DevHost, name: str) -> list[list[object]]:
    return sql(host, f"SELECT name FROM instances WHERE name = '{name}'")


@pytest.fixture(scope="module")
def before(devhost: DevHost) -> NetworkState:
    """The dev host's network before any instance of this module exists."""
    if devhost.address is None:
        pytest.skip("this dev host shares the machine's network; --network none is only "
                    "meaningful where instances get a network")
    if devhost.hc("network", "ls", json=True)["error"] is not None:
        pytest.skip("the dev host's agent has no network set up")
    return network_state(devhost)


@pytest.fixture(scope="module")
def lab(devhost: DevHost, debian_image: str, before: NetworkState) -> Iterator[str]:
    """A booted Debian instance with `--network none`."""
    devhost.hc("run", "-q", debian_image, "--name", NAME, "--network", "none")
    yield NAME
    devhost.hc("rm", "-f", NAME, check=False)


def test_only_loopback_inside(devhost: DevHost, lab: str) -> None:
    assert links_inside(devhost, lab) == ["lo"]
    assert devhost.hc("exec", lab, "--", "cat", "/etc/hostname").stdout.strip() == lab


def test_no_address_name_or_rule(devhost: DevHost, lab: str, before: NetworkState) -> None:
    info = devhost.hc("inspect", lab, json=True)
    assert (info["network"], info["ipv4"], info["ipv6"], info["ports"]) == (
        "none", None, None, [])
    listed = {i["name"]: i for i in devhost.hc("ls", json=True)}[lab]
    assert (listed["network"], listed["ipv4"], listed["state"]) == ("none", None, "running")
    table = devhost.hc("ls").stdout.splitlines()
    column = table[0].index("IPV4")  # cells are aligned under their headers
    assert [line[column:].split()[0] for line in table if line.startswith(f"{lab} ")] == ["none"]
    assert lab not in {i["name"] for i in devhost.hc("network", "ls", json=True)["instances"]}
    assert not [r for r in devhost.hc("dns", "ls", json=True)
                if r["name"].split(".")[0] == lab]
    # No namespace, veth, lease, port, rule or record more than before it existed.
    assert network_state(devhost) == before
    assert f"hc-{lab}" not in devhost.run("ip", "netns", "list").stdout


def test_stop_and_start_keep_it_off_the_network(devhost: DevHost, lab: str,
                                                before: NetworkState) -> None:
    devhost.hc("stop", lab)
    devhost.hc("start", lab)
    assert devhost.hc("inspect", lab, json=True)["state"] == "running"
    assert links_inside(devhost, lab) == ["lo"]
    assert network_state(devhost) == before


def test_a_default_instance_beside_it_still_gets_a_network(devhost: DevHost, debian_image: str,
                                                           lab: str) -> None:
    """The option is per instance: the next `hc run` without it is on the bridge as before."""
    devhost.hc("run", "-q", debian_image, "--name", "wired")
    try:
        info = devhost.hc("inspect", "wired", json=True)
        assert info["network"] == "default" and info["ipv4"]
        assert "eth0" in links_inside(devhost, "wired")
    finally:
        devhost.hc("rm", "-f", "wired")


def test_command_mode_sees_loopback_only(devhost: DevHost, debian_image: str,
                                         before: NetworkState) -> None:
    result = devhost.hc("run", "--rm", "--network", "none", "--name", "once", debian_image,
                        "--", "ls", "/sys/class/net")
    assert result.stdout.split() == ["lo"]
    assert_nothing_left(devhost, "once")
    assert network_state(devhost) == before


def test_rm_leaves_nothing(devhost: DevHost, debian_image: str, before: NetworkState) -> None:
    with unchanged_network(devhost):
        devhost.hc("run", "-q", debian_image, "--name", "gone", "--network", "none")
        devhost.hc("rm", "-f", "gone")
    assert_nothing_left(devhost, "gone")
    assert state_rows(devhost, "gone") == []


# -- bad input ----------------------------------------------------------------------------------

def test_publish_without_a_network_is_refused(devhost: DevHost, debian_image: str,
                                              before: NetworkState) -> None:
    with unchanged_network(devhost):
        error = hc_fails(devhost, "run", debian_image, "--name", "bad", "--network", "none",
                         "-p", "8080:80",
                         message="hc: -p needs networking: an instance with --network none "
                         "has loopback only; drop -p or --network none")
    assert len(error.strip().splitlines()) == 1
    assert_nothing_left(devhost, "bad")
    assert state_rows(devhost, "bad") == []


def test_an_unknown_network_mode_is_a_usage_error(devhost: DevHost, debian_image: str,
                                                  before: NetworkState) -> None:
    with unchanged_network(devhost):
        hc_fails(devhost, "run", debian_image, "--name", "bad", "--network", "host",
                 message="argument --network: invalid choice: 'host'", code=2)
    assert_nothing_left(devhost, "bad")
    assert state_rows(devhost, "bad") == []
