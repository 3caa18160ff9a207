"""Bridges, veth pairs, routes and sysctls, against the real kernel, in namespaces of our own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from ipaddress import IPv4Interface, IPv6Interface, ip_network

import pytest
from netns import (
    PREFIX,
    ip,
    link_pair,
    namespaces,
    probe,
    probe_server,
    python_in,
    require_netns,
    run_in,
)

from homecloud.errors import HostError
from homecloud.network.addresses import bridge_mac, choose_subnet4, overlapping_route
from homecloud.network.ifnames import veth_host_name, veth_peer_name
from homecloud.network.links import (
    configure_link,
    delete_link,
    ensure_bridge,
    ensure_veth,
    link_exists,
)
from homecloud.network.namespaces import (
    PROC_SYS,
    create_netns,
    delete_netns,
    in_netns,
    list_netns,
    netns_exists,
)
from homecloud.network.routes import read_routes

pytestmark = pytest.mark.system

BRIDGE_ADDRESSES = [IPv4Interface("10.77.0.1/24"), IPv6Interface("fd77::1/64")]


@pytest.fixture(autouse=True)
def _netns_support() -> None:
    require_netns()


def link_info(ns: str, name: str) -> dict:
    return json.loads(ip("-n", ns, "-d", "-j", "addr", "show", "dev", name))[0]


def global_addresses(info: dict) -> set[str]:
    return {f"{a['local']}/{a['prefixlen']}" for a in info["addr_info"]
            if a.get("scope") == "global"}


def link_names(ns: str) -> set[str]:
    return {link["ifname"] for link in json.loads(ip("-n", ns, "-j", "link", "show"))}


def test_bridge_is_made_addressed_up_and_idempotent() -> None:
    with namespaces("host") as (host,):
        index = ensure_bridge("hc0", BRIDGE_ADDRESSES, netns=host)
        assert ensure_bridge("hc0", BRIDGE_ADDRESSES, netns=host) == index
        info = link_info(host, "hc0")
        assert info["linkinfo"]["info_kind"] == "bridge"
        assert info["linkinfo"]["info_data"]["stp_state"] == 0
        assert info["linkinfo"]["info_data"]["forward_delay"] == 0
        assert "UP" in info["flags"]
        assert global_addresses(info) == {"10.77.0.1/24", "fd77::1/64"}
        # One MAC and one link-local whatever ports come and go; no DAD to wait for.
        assert info["address"] == bridge_mac("hc0")
        assert [(a["local"], a.get("nodad")) for a in info["addr_info"]
                if a["scope"] == "link"] == [("fe80::1", True)]
        # IPv6 usable at once: no duplicate address detection pending.
        assert not any(a.get("tentative") for a in info["addr_info"] if a["scope"] == "global")
        # A new subnet replaces the old addresses.
        ensure_bridge("hc0", [IPv4Interface("10.78.0.1/24")], netns=host)
        assert global_addresses(link_info(host, "hc0")) == {"10.78.0.1/24"}


def test_an_existing_bridge_is_adopted() -> None:
    with namespaces("host") as (host,):
        ip("-n", host, "link", "add", "hc0", "type", "bridge")
        ip("-n", host, "addr", "add", "192.168.5.1/24", "dev", "hc0")
        ensure_bridge("hc0", BRIDGE_ADDRESSES, netns=host)
        info = link_info(host, "hc0")
        assert info["address"] == bridge_mac("hc0") and "UP" in info["flags"]
        assert global_addresses(info) == {"10.77.0.1/24", "fd77::1/64"}


def test_a_link_in_the_way_of_the_bridge_is_refused() -> None:
    with namespaces("host") as (host,):
        ip("-n", host, "link", "add", "hc0", "type", "veth", "peer", "name", "other")
        before = link_names(host)
        with pytest.raises(HostError, match="a link named hc0 exists and is not a bridge"):
            ensure_bridge("hc0", BRIDGE_ADDRESSES, netns=host)
        assert link_names(host) == before
        assert global_addresses(link_info(host, "hc0")) == set()


def test_veth_is_plugged_into_the_bridge_and_the_instance() -> None:
    host_end, peer = veth_host_name("web"), veth_peer_name("web")
    with namespaces("host", "inst") as (host, inst):
        ensure_bridge("hc0", BRIDGE_ADDRESSES, netns=host)
        index = ensure_veth(host_end, peer, bridge="hc0", target=inst, target_name="eth0",
                            netns=host)
        assert ensure_veth(host_end, peer, bridge="hc0", target=inst, target_name="eth0",
                           netns=host) == index
        info = link_info(host, host_end)
        assert info["master"] == "hc0" and "UP" in info["flags"]
        assert info["linkinfo"]["info_slave_data"]["hairpin"] is True
        assert peer not in link_names(host)
        assert "eth0" in link_names(inst)
        # Traffic flows: instance -> bridge address.
        configure_link("eth0", [IPv4Interface("10.77.0.2/24"), IPv6Interface("fd77::2/64")],
                       netns=inst)
        with probe_server(host, "tcp", "10.77.0.1", 7001):
            assert probe(inst, "tcp", "10.77.0.1", 7001) == "10.77.0.2"
        with probe_server(host, "tcp", "fd77::1", 7001):
            assert probe(inst, "tcp", "fd77::1", 7001) == "fd77::2"
        assert delete_link(host_end, netns=host)
        assert not delete_link(host_end, netns=host)
        assert host_end not in link_names(host) and "eth0" not in link_names(inst)


def test_deleting_a_link_our_namespace_lacks_says_so() -> None:
    # Looked up with one ioctl here, without a netlink socket; removals mostly find nothing.
    assert not delete_link("hct-no-such-link")


def test_veth_into_a_process_network_namespace() -> None:
    with namespaces("host", "inst") as (host, inst):
        sleeper = subprocess.Popen(["ip", "netns", "exec", inst, "sleep", "60"])
        try:
            ensure_bridge("hc0", BRIDGE_ADDRESSES, netns=host)
            ensure_veth("hcvpid", "hcppid", bridge="hc0", target=sleeper.pid,
                        target_name="host0", netns=host)
            assert "host0" in link_names(inst)
            assert link_exists("hcvpid", netns=host) and not link_exists("hcppid", netns=host)
        finally:
            sleeper.kill()
            sleeper.wait()


@pytest.mark.parametrize("target", ["hcnet-test-no-such-ns", 999_999_999])
def test_veth_into_a_missing_instance_leaves_nothing(target: object) -> None:
    with namespaces("host") as (host,):
        ensure_bridge("hc0", BRIDGE_ADDRESSES, netns=host)
        before = link_names(host)
        with pytest.raises(HostError, match="cannot set up veth hcvx/hcpx into"):
            ensure_veth("hcvx", "hcpx", bridge="hc0", target=target, netns=host)  # type: ignore[arg-type]
        assert link_names(host) == before


def test_veth_onto_a_missing_bridge_leaves_nothing() -> None:
    with namespaces("host") as (host,):
        before = link_names(host)
        with pytest.raises(HostError, match="bridge hc9 does not exist"):
            ensure_veth("hcvx", "hcpx", bridge="hc9", netns=host)
        assert link_names(host) == before


def test_an_interrupted_veth_is_completed() -> None:
    with namespaces("host", "inst") as (host, inst):
        ensure_bridge("hc0", BRIDGE_ADDRESSES, netns=host)
        ip("-n", host, "link", "add", "hcvx", "type", "veth", "peer", "name", "hcpx")
        ensure_veth("hcvx", "hcpx", bridge="hc0", target=inst, target_name="eth0", netns=host)
        assert link_info(host, "hcvx")["master"] == "hc0"
        assert "eth0" in link_names(inst)


def test_routes_are_read_from_every_table_and_avoided() -> None:
    with namespaces("host", "peer") as (host, peer):
        link_pair(host, "up0", peer, "up1", ["10.0.0.5/24", "fd12::1/64"])
        ip("-n", host, "route", "add", "172.20.0.0/16", "dev", "up0", "table", "100")
        ip("-n", host, "route", "add", "blackhole", "192.168.50.0/24")
        ip("-n", host, "route", "add", "default", "via", "10.0.0.1")
        routes = read_routes(host)
        found = {str(r) for r in routes}
        assert {"10.0.0.0/24 dev up0", "172.20.0.0/16 dev up0 table 100",
                "blackhole 192.168.50.0/24", "0.0.0.0/0 dev up0", "fd12::/64 dev up0"} <= found
        clash = overlapping_route(ip_network("172.20.5.0/24"), routes)
        assert clash is not None and clash.table == 100
        chosen = choose_subnet4(routes, "alpha")
        assert overlapping_route(chosen, routes) is None


def test_sysctls_apply_to_the_namespace_they_run_in() -> None:
    with namespaces("host") as (host,):
        ensure_bridge("hc0", BRIDGE_ADDRESSES, netns=host)
        python_in(host, "from homecloud.network.sysctl import enable_forwarding, "
                        "enable_route_localnet; enable_forwarding(); "
                        "enable_route_localnet('hc0')")
        for key in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding",
                    "net.ipv4.conf.hc0.route_localnet"):
            value = subprocess.run(["ip", "netns", "exec", host, "sysctl", "-n", key],
                                   capture_output=True, text=True, check=True).stdout.strip()
            assert value == "1", key


def test_named_namespaces_are_made_joined_and_removed() -> None:
    name = f"{PREFIX}{os.getpid()}-named"
    sysctl = "net/ipv4/ip_unprivileged_port_start"
    ours = (PROC_SYS / sysctl).read_text()
    try:
        assert create_netns(name, sysctls={sysctl: "0"})
        assert not create_netns(name)  # there already
        assert netns_exists(name) and name in list_netns(PREFIX)
        assert name in ip("netns", "list")
        # Set in the new namespace only; what runs in it sees it.
        assert in_netns(name, lambda: (PROC_SYS / sysctl).read_text().strip()) == "0"
        assert (PROC_SYS / sysctl).read_text() == ours
        assert ip("-n", name, "-br", "link").split()[0] == "lo"
    finally:
        assert delete_netns(name)
    assert not netns_exists(name) and not delete_netns(name)
    assert name not in ip("netns", "list")


PLUMB_CODE = """
import json, os, subprocess
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from homecloud.network.guest import plumb_instance, unplumb_instance
from homecloud.network.ifnames import veth_host_name
from homecloud.network.links import ensure_bridge, link_names
from homecloud.network.plan import Names, NetworkPlan
plan = NetworkPlan("hc0", IPv4Network("10.77.0.0/24"), IPv6Network("fd77::/64"),
                   Names("alpha", "home.arpa"))
name = os.environ["INSTANCE"]
ensure_bridge("hc0", plan.bridge_interfaces)
addresses = plan.addresses(name, IPv4Address("10.77.0.9"))
plumb_instance(plan, name, addresses)
plumb_instance(plan, name, addresses)  # again: nothing changes
def ip(*argv):
    return json.loads(subprocess.run(["ip", "-j", *argv], check=True, capture_output=True,
                                     text=True).stdout)
eth0 = ip("-n", "hc-" + name, "addr", "show", "eth0")[0]
routes = ip("-n", "hc-" + name, "route", "show", "default")
routes6 = ip("-n", "hc-" + name, "-6", "route", "show", "default")
port = ip("-d", "link", "show", veth_host_name(name))[0]
unplumb_instance(name)
print(json.dumps({
    "addresses": sorted(a["local"] for a in eth0["addr_info"] if a["scope"] == "global"),
    "expected": sorted([str(addresses.ipv4), str(addresses.ipv6)]),
    "up": "UP" in eth0["flags"], "gateways": [r["gateway"] for r in routes + routes6],
    "master": port["master"], "hairpin": port["linkinfo"]["info_slave_data"]["hairpin"],
    "left": [n for n in link_names() if n.startswith(("hcv", "hcp"))],
    "netns": os.path.exists("/run/netns/hc-" + name),
}))
"""


def test_an_instance_is_plumbed_into_its_namespace_and_unplumbed() -> None:
    instance = f"plumb{os.getpid()}"
    with namespaces("host") as (host,):
        try:
            result = run_in(host, "env", f"INSTANCE={instance}", sys.executable, "-c",
                            PLUMB_CODE)
        finally:
            subprocess.run(["ip", "netns", "delete", f"hc-{instance}"], capture_output=True,
                           check=False)
    seen = json.loads(result.stdout)
    assert seen["addresses"] == seen["expected"] and seen["up"]
    assert seen["gateways"] == ["10.77.0.1", "fd77::1"]
    assert (seen["master"], seen["hairpin"]) == ("hc0", True)
    assert seen["left"] == [] and seen["netns"] is False
