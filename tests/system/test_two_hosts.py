"""Two homecloud hosts as one home cloud (issue 4): alpha delegates beta.alpha.home.arpa to
beta, each routes the other's instance subnets through its address on the shared LAN (the dev
hosts' bridge hcdev0), and a container on each resolves the other's containers by name, forward
and reverse, and opens TCP connections to them; no port is published, the peers' subnets are
let in by the firewall.

    alpha (private_devhost)  subnet 10.201.1.0/24, children: [beta]
    beta  (second_devhost)   subnet 10.201.2.0/24, domain alpha.home.arpa, parent: alpha
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cli_checks import agent_config, assert_nothing_left, copy_image, hc_fails
from guestweb import BUSYBOX_BIND, in_guest_tcp, serve_page
from netstate import unchanged_network

from homecloud.devhost import DevHost
from homecloud.network.addresses import ula_prefix
from homecloud.network.routing import ROUTE_PROTOCOL

pytestmark = pytest.mark.system

ALPHA_SUBNET = "10.201.1.0/24"
BETA_SUBNET = "10.201.2.0/24"
ALPHA_DNS = "10.201.1.1"
BETA_DNS = "10.201.2.1"


@dataclass(frozen=True)
class Instance:
    host: DevHost
    name: str
    fqdn: str
    ipv4: str
    ipv6: str
    page: str


@dataclass(frozen=True)
class Cloud:
    alpha: DevHost
    beta: DevHost
    web_a: Instance
    web_b: Instance


def alpha_config(beta: DevHost) -> str:
    return (f"network:\n  host_name: alpha\n  subnet4: {ALPHA_SUBNET}\n  children:\n"
            f"    - name: beta\n      via: [{beta.address}, '{beta.address6}']\n"
            f"      subnets: [{BETA_SUBNET}]\n")


def beta_config(alpha: DevHost, parent_subnet: str = ALPHA_SUBNET) -> str:
    return (f"network:\n  host_name: beta\n  domain: alpha.home.arpa\n"
            f"  subnet4: {BETA_SUBNET}\n  parent:\n"
            f"    via: [{alpha.address}, '{alpha.address6}']\n"
            f"    subnets: [{parent_subnet}]\n")


def start_web(host: DevHost, image: str, name: str, zone: str) -> Instance:
    host.hc("run", "-q", image, "--name", name, "--bind", BUSYBOX_BIND)
    info = host.hc("inspect", name, json=True)
    page = f"hello from {name}"
    serve_page(host, name, page, info["ipv4"])
    return Instance(host, name, f"{name}.{zone}", info["ipv4"], info["ipv6"], page)


@pytest.fixture(scope="module")
def cloud(private_devhost: DevHost, second_devhost: DevHost, devhost: DevHost,
          debian_image: str) -> Iterator[Cloud]:
    alpha, beta = private_devhost, second_devhost
    if None in (alpha.address, alpha.address6, beta.address, beta.address6):
        pytest.skip("these dev hosts share the machine's network; two hosts need dev hosts "
                    "with networks of their own")
    for host in (alpha, beta):
        copy_image(devhost, host, debian_image)
    with agent_config(alpha, alpha_config(beta)), agent_config(beta, beta_config(alpha)):
        for host in (alpha, beta):
            info = host.hc("network", "ls", json=True)
            assert info["error"] is None and info["routes_error"] is None, info
        web_a = start_web(alpha, debian_image, "web-a", "alpha.home.arpa")
        web_b = start_web(beta, debian_image, "web-b", "beta.alpha.home.arpa")
        try:
            yield Cloud(alpha, beta, web_a, web_b)
        finally:
            alpha.hc("rm", "-f", "web-a", check=False)
            beta.hc("rm", "-f", "web-b", check=False)


def our_routes(host: DevHost) -> list[str]:
    return [line.strip() for family in ("-4", "-6")
            for line in host.run("ip", family, "route", "show", "proto",
                                 str(ROUTE_PROTOCOL)).stdout.splitlines()]


def dig(host: DevHost, server: str, *args: str) -> str:
    return host.run("dig", f"@{server}", "+time=5", "+tries=1", *args).stdout


def short(host: DevHost, server: str, *args: str) -> str:
    return dig(host, server, "+short", *args).strip()


def test_each_host_routes_the_others_subnets(cloud: Cloud) -> None:
    alpha, beta = cloud.alpha, cloud.beta
    assert our_routes(alpha) == [
        f"{BETA_SUBNET} via {beta.address} dev host0",
        f"{ula_prefix('beta')} via {beta.address6} dev host0 metric 1024 pref medium"]
    assert our_routes(beta) == [
        f"{ALPHA_SUBNET} via {alpha.address} dev host0",
        f"{ula_prefix('alpha')} via {alpha.address6} dev host0 metric 1024 pref medium"]
    (child,) = alpha.hc("network", "ls", json=True)["peers"]
    assert (child["name"], child["role"], child["zone"], child["dns"]) == (
        "beta", "child", "beta.alpha.home.arpa", [BETA_DNS])
    (parent,) = beta.hc("network", "ls", json=True)["peers"]
    assert (parent["name"], parent["role"], parent["zone"], parent["subnets"]) == (
        "alpha", "parent", "alpha.home.arpa", [ALPHA_SUBNET, str(ula_prefix("alpha"))])
    peers = next(c for c in alpha.hc("doctor", json=True)["checks"] if c["name"] == "peers")
    assert (peers["status"], peers["detail"]) == (
        "ok", "beta (child): 2 subnet(s) routed, names asked there")
    assert (f"peer beta (child)  zone beta.alpha.home.arpa  dns {BETA_DNS}  subnets "
            f"{BETA_SUBNET} {ula_prefix('beta')}  via {beta.address} {beta.address6}"
            in alpha.hc("network", "ls").stdout.splitlines())


@pytest.mark.parametrize("direction", ["beta to alpha", "alpha to beta"])
def test_containers_resolve_each_other_and_connect(cloud: Cloud, direction: str) -> None:
    client, server = ((cloud.web_b, cloud.web_a) if direction == "beta to alpha"
                      else (cloud.web_a, cloud.web_b))
    run = client.host.hc
    assert run("exec", client.name, "--", "getent", "ahostsv4",
               server.fqdn).stdout.split()[0] == server.ipv4
    assert run("exec", client.name, "--", "getent", "ahostsv6",
               server.fqdn).stdout.split()[0] == server.ipv6
    assert in_guest_tcp(client.host, client.name, server.fqdn, 80) == server.page
    assert in_guest_tcp(client.host, client.name, server.ipv4, 80) == server.page
    assert in_guest_tcp(client.host, client.name, server.ipv6, 80) == server.page


def test_names_and_reverse_names_resolve_through_either_host(cloud: Cloud) -> None:
    alpha, a, b = cloud.alpha, cloud.web_a, cloud.web_b
    # Alpha recurses into its child's zone and into the child's reverse zones...
    assert short(alpha, ALPHA_DNS, b.fqdn, "A") == b.ipv4
    assert short(alpha, ALPHA_DNS, "-x", b.ipv4) == f"{b.fqdn}."
    assert short(alpha, ALPHA_DNS, "-x", b.ipv6) == f"{b.fqdn}."
    # ...and refers a client that wants no recursion to the child, with glue.
    referral = dig(alpha, ALPHA_DNS, "+norecurse", b.fqdn, "A")
    assert "status: NOERROR" in referral
    assert "beta.alpha.home.arpa.\t30\tIN\tNS\tbeta.alpha.home.arpa." in referral
    assert f"beta.alpha.home.arpa.\t30\tIN\tA\t{BETA_DNS}" in referral
    # Beta asks its parent for the names above its own zone and for the parent's reverse zones.
    beta = cloud.beta
    assert short(beta, BETA_DNS, a.fqdn, "AAAA") == a.ipv6
    assert short(beta, BETA_DNS, "-x", a.ipv4) == f"{a.fqdn}."
    assert "status: NXDOMAIN" in dig(beta, BETA_DNS, "nothing.alpha.home.arpa", "A")


def test_a_dead_child_costs_servfail_not_a_hang(cloud: Cloud) -> None:
    cloud.beta.run("systemctl", "stop", "hc-dns.service")
    try:
        answer = dig(cloud.alpha, ALPHA_DNS, cloud.web_b.fqdn, "A")
        assert "status: SERVFAIL" in answer
        assert "connection timed out" not in answer
        # Alpha's own names are unaffected.
        assert short(cloud.alpha, ALPHA_DNS, cloud.web_a.fqdn, "A") == cloud.web_a.ipv4
    finally:
        cloud.beta.run("systemctl", "start", "hc-dns.service")


def test_a_peer_subnet_overlapping_ours_is_one_line_and_leaves_no_route(cloud: Cloud) -> None:
    alpha, beta = cloud.alpha, cloud.beta
    bad = beta_config(alpha, parent_subnet="10.201.0.0/16")
    with agent_config(beta, bad):
        info = beta.hc("network", "ls", json=True)
        assert info["error"] == (f"network.parent: subnet 10.201.0.0/16 overlaps this host's "
                                 f"subnet {BETA_SUBNET}")
        assert our_routes(beta) == []
    # The good configuration put back: routed again.
    assert len(our_routes(beta)) == 2


def test_an_unreachable_next_hop_is_reported_and_routes_nothing(cloud: Cloud) -> None:
    alpha = cloud.alpha
    bad = alpha_config(cloud.beta).replace(f"via: [{cloud.beta.address}, ",
                                           "via: [203.0.113.9, ")
    with agent_config(alpha, bad):
        info = alpha.hc("network", "ls", json=True)
        assert info["error"] is None
        assert info["routes_error"].startswith(
            f"cannot route to peer hosts: {BETA_SUBNET} via 203.0.113.9 (beta): ")
        assert "\n" not in info["routes_error"]
        assert our_routes(alpha) == [
            f"{ula_prefix('beta')} via {cloud.beta.address6} dev host0 metric 1024 pref medium"]
        report = alpha.hc("doctor", json=True, check=False)
        failed = {c["name"]: c for c in report["checks"] if c["status"] == "fail"}
        assert "203.0.113.9" in failed["peers"]["detail"] and failed["peers"]["fix"]


def test_an_instance_named_like_a_child_host_is_refused(cloud: Cloud) -> None:
    alpha = cloud.alpha
    with unchanged_network(alpha):
        hc_fails(alpha, "run", "-q", "debian", "--name", "beta",
                 message="instance name 'beta' is taken by a child host (network.children): "
                 "beta.alpha.home.arpa is delegated to it; choose another name")
    assert_nothing_left(alpha, "beta")
    # The delegation still works.
    assert short(alpha, ALPHA_DNS, cloud.web_b.fqdn, "A") == cloud.web_b.ipv4
