"""Instance networking end to end (issue 4): addresses, names, published ports and firewall
rules, through the real `hc`, agent, hc-dns, kernel and nftables of a dev host that has a
network namespace of its own (on the machine's bridge hcdev0), so the machine can reach it from
outside as another host on the LAN would.

Every bad input is checked for its message and for leaving nothing behind: no instance, and no
namespace, link, lease, port, firewall rule or DNS name more than before.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cli_checks import agent_config, assert_nothing_left, copy_image, hc_fails, wait_for
from guestweb import BUSYBOX, BUSYBOX_BIND, fetch, in_guest_tcp, serve_page, url
from netstate import network_state, sql, unchanged_network

from homecloud.devhost import DevHost

pytestmark = pytest.mark.system

PAGE = "hello from web"


@dataclass(frozen=True)
class Net:
    host: DevHost
    image: str
    bridge: str
    gateway4: str
    gateway6: str
    subnet4: str
    subnet6: str
    zone: str  # <host>.home.arpa


@pytest.fixture(scope="module")
def net(private_devhost: DevHost, devhost: DevHost, debian_image: str) -> Net:
    if private_devhost.address is None:
        pytest.skip("this dev host shares the machine's network; networking tests need dev "
                    "hosts with a network of their own")
    copy_image(devhost, private_devhost, debian_image)
    info = private_devhost.hc("network", "ls", json=True)
    assert info["error"] is None, info
    return Net(private_devhost, debian_image, info["bridge"], info["gateway4"],
               info["gateway6"], info["subnet4"], info["subnet6"], info["zone"])


# -- helpers ------------------------------------------------------------------------------------

def ping(host: DevHost, address: str) -> int:
    return host.run(BUSYBOX, "ping", "-c", "1", "-W", "2", address, check=False).returncode


def fetch_from_machine(address: str, port: int, timeout: float = 3.0) -> str | None:
    """GET / over a plain socket from this machine (no proxy settings apply)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:
        return None
    return data.decode(errors="replace").split("\r\n\r\n", 1)[-1].strip()


def dig(host: DevHost, server: str, *args: str) -> str:
    return host.run("dig", f"@{server}", "+time=2", "+tries=1", "+short", *args).stdout.strip()


# -- one instance, reachable --------------------------------------------------------------------

@dataclass(frozen=True)
class Web:
    ipv4: str
    ipv6: str
    info: dict[str, Any]
    pings_right_after_run: tuple[int, int]  # exit statuses, IPv4 then IPv6


@pytest.fixture(scope="module")
def web(net: Net) -> Iterator[Web]:
    """`hc run debian --name web -p 8080:80`, pinged the moment `hc run` returns, then serving
    a page on port 80 (busybox httpd, started by the guest's own systemd)."""
    host = net.host
    host.hc("run", "-q", net.image, "--name", "web", "-p", "8080:80", "-p", "5353:53/udp",
            "--bind", BUSYBOX_BIND)
    info = host.hc("inspect", "web", json=True)
    pings = (ping(host, info["ipv4"]), ping(host, info["ipv6"]))
    serve_page(host, "web", PAGE, info["ipv4"])
    yield Web(info["ipv4"], info["ipv6"], info, pings)
    host.hc("rm", "-f", "web", check=False)


def test_run_gives_addresses_on_the_bridge(net: Net, web: Web) -> None:
    from ipaddress import ip_address, ip_network

    assert ip_address(web.ipv4) in ip_network(net.subnet4)
    assert ip_address(web.ipv6) in ip_network(net.subnet6)
    assert web.info["ports"] == ["8080:80/tcp", "5353:53/udp"]
    listed = {i["name"]: i for i in net.host.hc("ls", json=True)}["web"]
    assert (listed["ipv4"], listed["ipv6"], listed["ports"]) == (
        web.ipv4, web.ipv6, ["8080:80/tcp", "5353:53/udp"])
    table = net.host.hc("ls").stdout.splitlines()
    column = table[0].index("IPV4")  # cells are aligned under their headers
    assert [line[column:].split()[0] for line in table if line.startswith("web ")] == [web.ipv4]
    # Inside: eth0 holds both addresses, default routes go to the bridge, DNS is the bridge.
    addresses = net.host.hc("exec", "web", "--", "ip", "-j", "addr", "show", "eth0").stdout
    held = {a["local"] for a in json.loads(addresses)[0]["addr_info"]}
    assert {web.ipv4, web.ipv6} <= held
    routes = net.host.hc("exec", "web", "--", "ip", "route", "show", "default").stdout
    assert f"via {net.gateway4}" in routes
    resolv = net.host.hc("exec", "web", "--", "cat", "/etc/resolv.conf").stdout
    assert f"nameserver {net.gateway4}" in resolv and f"nameserver {net.gateway6}" in resolv
    assert f"search {net.zone}" in resolv
    hosts = net.host.hc("exec", "web", "--", "cat", "/etc/hosts").stdout
    assert f"{web.ipv4}\tweb.{net.zone}\tweb" in hosts
    # The guest's root cannot change what the host configured.
    denied = net.host.hc("exec", "web", "--", "ip", "link", "set", "eth0", "down", check=False)
    assert denied.returncode != 0


def test_reachable_from_the_host_the_moment_run_returns(net: Net, web: Web) -> None:
    assert web.pings_right_after_run == (0, 0)
    assert fetch(net.host, url(web.ipv4)) == PAGE
    assert fetch(net.host, url(web.ipv6)) == PAGE


def test_published_port_from_the_host_itself_and_from_outside(net: Net, web: Web) -> None:
    host = net.host
    assert host.address is not None and host.address6 is not None
    assert fetch(host, url("127.0.0.1", 8080)) == PAGE
    assert fetch(host, url(host.address, 8080)) == PAGE
    assert fetch(host, url(host.address6, 8080)) == PAGE
    # From this machine: another host on the LAN, as far as the dev host can tell.
    assert fetch_from_machine(host.address, 8080) == PAGE
    assert fetch_from_machine(host.address6, 8080) == PAGE
    # Only what is published: the guest's port 80 is not the host's (that is homecloud's front
    # door, which has no route to the guest).
    assert fetch_from_machine(host.address, 80, timeout=1) != PAGE


@pytest.fixture(scope="module")
def db(net: Net, web: Web) -> Iterator[str]:
    net.host.hc("run", "-q", net.image, "--name", "db")
    yield "db"
    net.host.hc("rm", "-f", "db", check=False)


def test_instances_resolve_each_other_and_connect(net: Net, web: Web, db: str) -> None:
    host = net.host
    short = host.hc("exec", db, "--", "getent", "hosts", "web").stdout.split()
    assert short[0] in (web.ipv4, web.ipv6) and f"web.{net.zone}" in short
    full = host.hc("exec", db, "--", "getent", "ahostsv4", f"web.{net.zone}").stdout
    assert full.split()[0] == web.ipv4
    assert in_guest_tcp(host, db, "web", 80) == PAGE
    # Through the port published on the host (hairpin), by the host's address on the bridge.
    assert in_guest_tcp(host, db, net.gateway4, 8080) == PAGE
    # Names outside our zone are forwarded to the machine's resolvers.
    outside = "deb.debian.org"
    if host.run("getent", "hosts", outside, check=False).returncode == 0:
        assert host.hc("exec", db, "--", "getent", "hosts", outside).stdout.strip()


def test_the_hosts_dns_answers_for_instances(net: Net, web: Web) -> None:
    host = net.host
    name = f"web.{net.zone}"
    assert dig(host, net.gateway4, name, "AAAA") == web.ipv6
    assert dig(host, net.gateway6, name, "A") == web.ipv4
    assert dig(host, net.gateway4, "-x", web.ipv4) == f"{name}."
    assert dig(host, net.gateway4, "-x", web.ipv6) == f"{name}."
    assert dig(host, net.gateway4, f"_80._tcp.{name}", "SRV") == f"0 0 8080 {net.zone}."
    assert dig(host, net.gateway4, f"_53._udp.{name}", "SRV") == f"0 0 5353 {net.zone}."
    records = {(r["name"], r["type"], r["data"]) for r in host.hc("dns", "ls", json=True)}
    assert {(name, "A", web.ipv4), (name, "AAAA", web.ipv6)} <= records
    assert f"{name} " in host.hc("dns", "ls").stdout


def test_network_ls(net: Net, web: Web) -> None:
    info = net.host.hc("network", "ls", json=True)
    assert (info["bridge"], info["gateway4"], info["subnet6"]) == (
        net.bridge, net.gateway4, net.subnet6)
    mine = {i["name"]: i for i in info["instances"]}["web"]
    assert (mine["ipv4"], mine["ipv6"], mine["ports"]) == (
        web.ipv4, web.ipv6, ["8080:80/tcp", "5353:53/udp"])
    table = net.host.hc("network", "ls").stdout
    assert f"bridge {net.bridge}" in table
    assert ["web", web.ipv4, web.ipv6, "8080:80/tcp,", "5353:53/udp"] in [
        line.split() for line in table.splitlines()]


def test_dns_answers_while_the_agent_is_down(net: Net, web: Web) -> None:
    net.host.run("systemctl", "stop", "hcd.service")
    try:
        assert dig(net.host, net.gateway4, f"web.{net.zone}", "A") == web.ipv4
    finally:
        net.host.hc("ls")  # socket activation starts the agent again
    assert fetch(net.host, url(web.ipv4)) == PAGE


def test_stop_and_start_keep_the_addresses(net: Net, web: Web, db: str) -> None:
    host = net.host
    before = host.hc("inspect", db, json=True)
    host.hc("stop", db)
    assert host.hc("inspect", db, json=True)["ipv4"] == before["ipv4"]
    host.hc("start", db)
    after = host.hc("inspect", db, json=True)
    assert (after["ipv4"], after["ipv6"]) == (before["ipv4"], before["ipv6"])
    assert ping(host, after["ipv4"]) == 0
    assert in_guest_tcp(host, db, "web", 80) == PAGE


# -- bad input ----------------------------------------------------------------------------------

@pytest.fixture
def listener(net: Net) -> Iterator[int]:
    """Something listening on the dev host's TCP port 9090."""
    net.host.run("systemd-run", "--unit=listener-9090", "python3", "-m", "http.server", "9090")
    wait_for("the listener", lambda: ":9090 " in net.host.run("ss", "-ltn").stdout)
    yield 9090
    net.host.run("systemctl", "stop", "listener-9090", check=False)


@pytest.mark.parametrize("port,message", [
    ("8080", "-p '8080' is invalid: use HOST:GUEST or HOST:GUEST/udp, like 8080:80"),
    ("80:http", "-p '80:http' is invalid: use HOST:GUEST or HOST:GUEST/udp"),
    ("70000:80", "-p 70000:80: port 70000 is out of range (1-65535)"),
    ("8081:0", "-p 8081:0: port 0 is out of range (1-65535)"),
    ("8081:80/sctp", "-p '8081:80/sctp': protocol 'sctp' is not supported (use tcp or udp)"),
])
def test_malformed_ports_are_refused(net: Net, web: Web, port: str, message: str) -> None:
    with unchanged_network(net.host):
        hc_fails(net.host, "run", net.image, "--name", "bad", "-p", port, message=message)
    assert_nothing_left(net.host, "bad")


def test_a_port_given_twice_published_or_in_use_is_refused(net: Net, web: Web,
                                                           listener: int) -> None:
    cases = [
        (["-p", "8085:80", "-p", "8085:81"], "-p 8085:81/tcp: host port 8085/tcp is given twice"),
        (["-p", "8080:80"], "-p 8080:80/tcp: host port 8080/tcp is already published by "
                            "instance web; choose another host port"),
        (["-p", f"{listener}:80"], f"-p {listener}:80/tcp: host port {listener}/tcp is "
                                   "already in use on this host; choose another host port"),
    ]
    for args, message in cases:
        with unchanged_network(net.host):
            hc_fails(net.host, "run", net.image, "--name", "bad", *args, message=message)
        assert_nothing_left(net.host, "bad")
    # The same number over UDP is another port.
    net.host.hc("run", "-q", net.image, "--name", "udp", "-p", "8080:80/udp")
    net.host.hc("rm", "-f", "udp")


# -- a re-created instance ---------------------------------------------------------------------

AGAIN = "hello again"
# A neighbour entry still holding the old MAC makes the first connection wait ~10 s.
ANSWER_WITHIN = 3.0


def first_answer(what: str, attempt: Any) -> float:
    """Seconds until ``attempt()`` returned the page (retried: the server may take a moment to
    listen); AssertionError after ANSWER_WITHIN."""
    start = time.monotonic()
    while attempt() != AGAIN:
        if time.monotonic() - start > ANSWER_WITHIN:
            raise AssertionError(f"{what} did not answer within {ANSWER_WITHIN} s")
        time.sleep(0.05)
    return time.monotonic() - start


def test_a_recreated_instance_answers_at_once(net: Net, web: Web, db: str) -> None:
    """`hc rm -f` and the same `hc run`: the same addresses on a new veth with a new MAC.
    Neither the host nor another instance may keep sending to the old MAC."""
    host = net.host
    script = (f"mkdir -p /www && echo '{AGAIN}' > /www/index.html && "
              "exec /opt/busybox httpd -f -p 80 -h /www")
    run = ("run", "-d", net.image, "--name", "again", "-p", "18080:80", "--bind",
           BUSYBOX_BIND, "--", "sh", "-c", script)

    def targets(info: dict[str, Any]) -> dict[str, Any]:
        return {
            "host -> 127.0.0.1:18080": lambda: fetch(host, url("127.0.0.1", 18080)),
            "host -> IPv4": lambda: fetch(host, url(info["ipv4"])),
            "host -> IPv6": lambda: fetch(host, url(info["ipv6"])),
            "db -> IPv4": lambda: in_guest_tcp(host, db, info["ipv4"], 80),
            "db -> IPv6": lambda: in_guest_tcp(host, db, info["ipv6"], 80),
        }

    def mac() -> str:
        return host.hc("exec", "again", "--", "cat", "/sys/class/net/eth0/address").stdout

    try:
        host.hc(*run)
        first = host.hc("inspect", "again", json=True)
        for what, attempt in targets(first).items():  # every cache now holds the first MAC
            wait_for(what, lambda attempt=attempt: attempt() == AGAIN)
        old_mac = mac()
        host.hc("rm", "-f", "again")
        host.hc(*run)
        second = host.hc("inspect", "again", json=True)
        waited = {what: first_answer(what, attempt)
                  for what, attempt in targets(second).items()}
        assert (second["ipv4"], second["ipv6"]) == (first["ipv4"], first["ipv6"])
        assert mac() != old_mac
        assert max(waited.values()) < ANSWER_WITHIN, waited
    finally:
        host.hc("rm", "-f", "again", check=False)


# -- removal and leftovers ----------------------------------------------------------------------

def test_rm_leaves_nothing_of_the_network(net: Net, web: Web) -> None:
    host = net.host
    before = network_state(host)
    host.hc("run", "-q", net.image, "--name", "gone", "-p", "9191:91")
    info = host.hc("inspect", "gone", json=True)
    during = network_state(host)
    assert during.namespaces - before.namespaces == {"hc-gone"}
    assert len(during.links - before.links) == 1
    assert info["ipv4"] in during.rules and "9191" in during.rules
    assert dig(host, net.gateway4, f"gone.{net.zone}", "A") == info["ipv4"]
    host.hc("rm", "-f", "gone")
    assert network_state(host) == before
    table = host.run("nft", "list", "table", "inet", "homecloud").stdout
    assert info["ipv4"] not in table and info["ipv6"] not in table and "9191" not in table
    assert not [i for i in json.loads(host.run("ip", "-j", "link").stdout)
                if i["ifname"].startswith("hcv") and i["ifname"] not in before.links]
    assert sql(host, "SELECT * FROM leases WHERE instance = 'gone'") == []
    status = host.run("dig", f"@{net.gateway4}", f"gone.{net.zone}", "A").stdout
    assert "status: NXDOMAIN" in status
    assert_nothing_left(host, "gone")


def test_reconcile_removes_what_a_crash_left(net: Net, web: Web) -> None:
    host = net.host
    before = network_state(host)
    host.run("ip", "netns", "add", "hc-ghost")
    host.run("ip", "link", "add", "hcvghost", "type", "veth", "peer", "name", "hcpghost")
    subnet = net.subnet4
    spare = subnet.rsplit(".", 1)[0] + ".250"
    sql(host, f"INSERT INTO leases VALUES ('{subnet}', '{spare}', 'ghost', 0)")
    host.run("systemctl", "restart", "hcd.service")
    host.hc("ls")
    assert network_state(host) == before
    log = host.run("journalctl", "-u", "hcd", "-n", "20", "--no-pager").stdout
    assert "network leftovers" in log and "netns hc-ghost" in log


# -- configuration the agent cannot apply -------------------------------------------------------

def doctor_fails(host: DevHost, check: str, message: str) -> dict[str, Any]:
    result = host.hc("doctor", check=False)
    assert result.returncode == 3, result.stdout
    report = host.hc("doctor", json=True, check=False)
    failed = {c["name"]: c for c in report["checks"] if c["status"] == "fail"}
    assert message in failed[check]["detail"], report
    assert failed[check]["fix"]
    assert f"fix {check}: " in result.stdout
    return dict(failed[check])


def test_doctor_is_happy_on_a_good_host(net: Net, web: Web) -> None:
    result = net.host.hc("doctor")
    assert result.stdout.splitlines()[0].split() == ["CHECK", "STATUS", "DETAIL"]
    report = net.host.hc("doctor", json=True)
    assert report["ok"] is True
    assert {c["name"]: c["status"] for c in report["checks"]} == {
        "agent": "ok", "systemd": "ok", "inotify": "ok", "config": "ok", "pool": "ok",
        "network": "ok", "bridge": "ok", "forwarding": "ok", "dns": "ok",
        "resolved": "skipped", "peers": "skipped", "firewall": "ok",  # no resolved, no peers
        "other firewalls": "ok", "kvm": "ok", "checksums": "ok"}


def test_a_bad_bridge_name_is_one_line_at_start_and_in_doctor(net: Net, web: Web) -> None:
    host = net.host
    before = network_state(host)
    message = ("network.bridge: bridge name 'bad name!' is invalid: use letters, digits, '_', "
               "'.' and '-', starting with a letter")
    with agent_config(host, 'network:\n  bridge: "bad name!"\n'):
        hc_fails(host, "run", net.image, "--name", "bad", message=message)
        doctor_fails(host, "network", message)
        log = host.run("journalctl", "-u", "hcd", "-n", "20", "--no-pager").stdout
        assert f"network: {message}" in log
        assert_nothing_left(host, "bad")
    assert network_state(host) == before
    assert fetch(host, url(web.ipv4)) == PAGE  # it ran on meanwhile


def test_a_subnet_overlapping_a_route_is_refused(net: Net, web: Web) -> None:
    host = net.host
    before = network_state(host)
    bridge_before = host.run("ip", "-br", "addr", "show", net.bridge).stdout
    host.run("ip", "route", "add", "blackhole", "10.77.0.0/16")
    message = ("network.subnet4: subnet 10.77.1.0/24 overlaps the route blackhole 10.77.0.0/16 "
               "already on this host: choose another subnet, or leave it unset to pick a free "
               "one")
    try:
        with agent_config(host, "network:\n  subnet4: 10.77.1.0/24\n"):
            hc_fails(host, "run", net.image, "--name", "bad", message=message)
            doctor_fails(host, "network", message)
            assert host.run("ip", "-br", "addr", "show", net.bridge).stdout == bridge_before
            assert_nothing_left(host, "bad")
    finally:
        host.run("ip", "route", "del", "blackhole", "10.77.0.0/16")
    assert network_state(host) == before
    assert sql(host, "SELECT subnet4 FROM networks") == [[net.subnet4]]


def test_doctor_finds_a_firewall_dropping_forwarded_traffic(net: Net, web: Web) -> None:
    host = net.host
    assert host.address is not None
    # What Docker sets up (through iptables-nft): FORWARD's policy is drop.
    host.run("nft", "-f", "-", input="table ip filter {\n chain FORWARD {\n"
             "  type filter hook forward priority 0; policy drop;\n }\n}\n")
    try:
        failed = doctor_fails(host, "other firewalls", "table ip filter chain FORWARD drops "
                              "forwarded traffic (policy drop, as Docker sets)")
        assert f"nft insert rule ip filter FORWARD iifname {net.bridge} accept" in failed["fix"]
        # It is right: the published port no longer answers from outside.
        assert fetch_from_machine(host.address, 8080, timeout=1) is None
        for direction in ("iifname", "oifname"):
            host.run("nft", "insert", "rule", "ip", "filter", "FORWARD", direction, net.bridge,
                     "accept")
        assert host.hc("doctor", check=False).returncode == 0
        assert fetch_from_machine(host.address, 8080) == PAGE
    finally:
        host.run("nft", "delete", "table", "ip", "filter", check=False)
