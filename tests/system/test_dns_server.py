"""homecloud's DNS server as it runs (``python -m homecloud.dns``), on loopback high ports:
real queries with dig and dnslib, a tree of servers delegating to each other, forwarding, and
packets no server should choke on."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord
from dnsrun import DnsProcess, dig, dns_server, free_port, query

pytestmark = pytest.mark.system

WEB4, WEB6 = "10.1.2.2", "fd00:1:2:3::abcd"


def zone(host: str, domain: str = "home.arpa", serial: int = 1, **extra: Any) -> dict[str, Any]:
    return {"host": host, "domain": domain, "serial": serial, **extra}


def config(zone_: dict[str, Any], listen: list[str], port: int,
           upstreams: list[str] | None = None, timeout: float = 1.5) -> dict[str, Any]:
    return {"listen": listen, "port": port, "upstreams": upstreams or [],
            "forward_timeout": timeout, "zone": zone_}


def alpha_zone(beta_port: int, serial: int = 1, **extra: Any) -> dict[str, Any]:
    return zone("alpha", serial=serial,
                addresses=["10.1.2.1", "fd00:1:2:3::1"],
                subnets=["10.1.2.0/24", "fd00:1:2:3::/64"],
                instances=[{"name": "web", "ipv4": WEB4, "ipv6": WEB6,
                            "services": [{"protocol": "tcp", "host_port": 8080,
                                          "guest_port": 80, "service": "http"}]},
                           {"name": "v4only", "ipv4": "10.1.2.3"}],
                children=[{"name": "beta", "addresses": ["127.0.0.2"], "port": beta_port}],
                **extra)


class Tree:
    """alpha (127.0.0.1 and ::1) delegates beta.alpha.home.arpa to beta (127.0.0.2), which
    delegates gamma.beta.alpha.home.arpa to gamma (127.0.0.4); alpha forwards other names to
    an upstream (127.0.0.3) that owns up.test."""

    def __init__(self, alpha: DnsProcess, upstream_port: int, beta_port: int) -> None:
        self.alpha = alpha
        self.port = alpha.port
        self.upstream_port = upstream_port
        self.beta_port = beta_port


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    directory = tmp_path_factory.mktemp("dns")
    ports = {name: free_port() for name in ("alpha", "beta", "gamma", "upstream")}
    gamma = zone("gamma", "beta.alpha.home.arpa", addresses=["127.0.0.4"],
                 instances=[{"name": "deep", "ipv4": "10.3.0.7"}])
    beta = zone("beta", "alpha.home.arpa", addresses=["127.0.0.2"],
                instances=[{"name": "db", "ipv4": "10.2.0.5", "ipv6": "fd00:2::5"}],
                children=[{"name": "gamma", "addresses": ["127.0.0.4"],
                           "port": ports["gamma"]}])
    upstream = zone("up", "test", instances=[{"name": "www", "ipv4": "192.0.2.80"}])
    with dns_server(directory, config(upstream, ["127.0.0.3"], ports["upstream"]),
                    address="127.0.0.3", port=ports["upstream"]), \
            dns_server(directory, config(gamma, ["127.0.0.4"], ports["gamma"]),
                       address="127.0.0.4", port=ports["gamma"]), \
            dns_server(directory, config(beta, ["127.0.0.2"], ports["beta"]),
                       address="127.0.0.2", port=ports["beta"]), \
            dns_server(directory, config(alpha_zone(ports["beta"]), ["127.0.0.1", "::1"],
                                         ports["alpha"], [f"127.0.0.3:{ports['upstream']}"]),
                       port=ports["alpha"]) as alpha:
        yield Tree(alpha, ports["upstream"], ports["beta"])


@pytest.fixture(scope="module", autouse=True)
def _dig() -> None:
    if shutil.which("dig") is None:
        pytest.skip("needs dig (apt-get install dnsutils)")


def short(server: str, port: int, *args: str) -> list[str]:
    return dig(server, port, "+short", *args).split()


@pytest.mark.parametrize("server", ["127.0.0.1", "::1"])
def test_records_answer_with_dig(tree: Tree, server: str) -> None:
    port = tree.port
    assert short(server, port, "web.alpha.home.arpa", "A") == [WEB4]
    assert short(server, port, "WEB.Alpha.Home.Arpa", "AAAA") == [WEB6]
    assert short(server, port, "-x", WEB4) == ["web.alpha.home.arpa."]
    assert short(server, port, "-x", WEB6) == ["web.alpha.home.arpa."]
    assert short(server, port, "-x", "10.1.2.1") == ["alpha.home.arpa."]
    assert short(server, port, "_http._tcp.web.alpha.home.arpa", "SRV") == \
        ["0", "0", "8080", "alpha.home.arpa."]
    assert short(server, port, "alpha.home.arpa", "NS") == ["alpha.home.arpa."]
    soa = short(server, port, "alpha.home.arpa", "SOA")
    assert soa[:3] == ["alpha.home.arpa.", "hostmaster.alpha.home.arpa.", "1"]
    full = dig(server, port, "web.alpha.home.arpa", "A")
    assert "flags: qr aa rd ra;" in full and "status: NOERROR" in full


@pytest.mark.parametrize("name,qtype,status", [
    ("nope.alpha.home.arpa", "A", "NXDOMAIN"),
    ("99.2.1.10.in-addr.arpa", "PTR", "NXDOMAIN"),
    ("v4only.alpha.home.arpa", "AAAA", "NOERROR"),
    ("web.alpha.home.arpa", "TXT", "NOERROR"),
])
def test_negative_answers_carry_the_soa(tree: Tree, name: str, qtype: str, status: str) -> None:
    out = dig("127.0.0.1", tree.port, name, qtype)
    assert f"status: {status}" in out and "ANSWER: 0, AUTHORITY: 1" in out
    authority = out.split(";; AUTHORITY SECTION:")[1].split("\n\n")[0]
    assert "IN\tSOA\talpha.home.arpa. hostmaster.alpha.home.arpa." in authority


def test_edns0(tree: Tree) -> None:
    out = dig("127.0.0.1", tree.port, "+bufsize=4096", "web.alpha.home.arpa")
    assert "; EDNS: version: 0, flags:; udp: 1232" in out
    assert "OPT PSEUDOSECTION" not in dig("127.0.0.1", tree.port, "+noedns",
                                          "web.alpha.home.arpa")
    assert "status: BADVERS" in dig("127.0.0.1", tree.port, "+edns=1", "+noednsneg",
                                    "web.alpha.home.arpa")


def test_tcp(tree: Tree) -> None:
    assert short("127.0.0.1", tree.port, "+tcp", "web.alpha.home.arpa") == [WEB4]
    assert short("::1", tree.port, "+tcp", "-x", WEB6) == ["web.alpha.home.arpa."]
    reply = query("db.beta.alpha.home.arpa", port=tree.port, tcp=True)
    assert [str(rr.rdata) for rr in reply.rr] == ["10.2.0.5"]


def test_big_answers_are_truncated_over_udp_and_whole_over_tcp(tmp_path: Path) -> None:
    port = free_port()
    many = [f"10.9.{n // 250}.{n % 250 + 1}" for n in range(100)]
    with dns_server(tmp_path, config(zone("wide", addresses=many), ["127.0.0.1"], port),
                    port=port):
        udp = query("wide.home.arpa", port=port)
        assert udp.header.tc and udp.rr == []
        assert query("wide.home.arpa", port=port, edns=1232).header.tc  # 1.6 KB > 1232
        tcp = query("wide.home.arpa", port=port, tcp=True)
        assert not tcp.header.tc and len(tcp.rr) == 100
        out = dig("127.0.0.1", port, "wide.home.arpa")  # dig retries over TCP by itself
        assert "Truncated, retrying in TCP mode" in out and "ANSWER: 100" in out


def test_delegation_referral_then_the_child(tree: Tree) -> None:
    # An iterative resolver's view: alpha refers, the glue says where beta is.
    referral = query("db.beta.alpha.home.arpa", port=tree.port, rd=False)
    assert not referral.header.aa and referral.header.rcode == RCODE.NOERROR
    assert referral.rr == []
    assert [(str(rr.rname), rr.rtype, str(rr.rdata)) for rr in referral.auth] == \
        [("beta.alpha.home.arpa.", QTYPE.NS, "beta.alpha.home.arpa.")]
    glue = [str(rr.rdata) for rr in referral.ar if rr.rtype == QTYPE.A]
    assert glue == ["127.0.0.2"]
    child = query("db.beta.alpha.home.arpa", "AAAA", server=glue[0], port=tree.beta_port,
                  rd=False)
    assert child.header.aa and [str(rr.rdata) for rr in child.rr] == ["fd00:2::5"]


def test_names_anywhere_in_the_tree_resolve_through_the_parents(tree: Tree) -> None:
    # A stub resolver's view (an instance asking its bridge): one question, one answer.
    assert short("127.0.0.1", tree.port, "db.beta.alpha.home.arpa") == ["10.2.0.5"]
    assert short("::1", tree.port, "deep.gamma.beta.alpha.home.arpa") == ["10.3.0.7"]
    out = dig("127.0.0.1", tree.port, "nope.gamma.beta.alpha.home.arpa")
    assert "status: NXDOMAIN" in out and "flags: qr rd ra;" in out  # relayed, not ours
    assert "gamma.beta.alpha.home.arpa. hostmaster" in out


def test_other_names_are_forwarded_upstream(tree: Tree) -> None:
    assert short("127.0.0.1", tree.port, "www.up.test") == ["192.0.2.80"]
    assert short("::1", tree.port, "+tcp", "www.up.test") == ["192.0.2.80"]
    assert "status: NXDOMAIN" in dig("127.0.0.1", tree.port, "nope.up.test")
    assert "status: REFUSED" in dig("127.0.0.1", tree.port, "+norecurse", "www.up.test")


def silent_udp(address: str) -> socket.socket:
    """A socket that receives and never answers: a dead upstream."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 0))
    return sock


def timed_query(name: str, port: int, results: dict[str, Any]) -> None:
    start = time.monotonic()
    results["reply"] = query(name, port=port, timeout=10)
    results["seconds"] = time.monotonic() - start


def test_a_silent_upstream_or_child_costs_a_quick_servfail(tmp_path: Path) -> None:
    port = free_port()
    with silent_udp("127.0.0.5") as upstream, silent_udp("127.0.0.6") as child:
        child_port = child.getsockname()[1]
        zone_ = alpha_zone(child_port)
        zone_["children"] = [{"name": "dead", "addresses": ["127.0.0.6"], "port": child_port}]
        upstream_text = f"127.0.0.5:{upstream.getsockname()[1]}"
        with dns_server(tmp_path, config(zone_, ["127.0.0.1"], port, [upstream_text],
                                         timeout=1.5), port=port):
            for name in ("www.example.org", "x.dead.alpha.home.arpa"):
                results: dict[str, Any] = {}
                waiting = threading.Thread(target=timed_query, args=(name, port, results))
                waiting.start()
                time.sleep(0.2)
                # Meanwhile the server keeps answering.
                assert [str(rr.rdata) for rr in query("web.alpha.home.arpa", port=port).rr] \
                    == [WEB4]
                waiting.join(15)
                assert results["reply"].header.rcode == RCODE.SERVFAIL
                print(f"{name}: SERVFAIL after {results['seconds']:.2f} s (deadline 1.5 s)")
            out = dig("127.0.0.1", port, "www.example.org")
            assert "status: SERVFAIL" in out


def send_raw(port: int, packets: list[bytes]) -> list[bytes]:
    """Send each packet from one UDP socket; collect whatever comes back within a moment."""
    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for packet in packets:
            sock.sendto(packet, ("127.0.0.1", port))
        sock.settimeout(0.5)
        try:
            while True:
                replies.append(sock.recv(65535))
        except TimeoutError:
            pass
    return replies


def test_garbage_is_dropped_or_formerr_and_valid_queries_still_answered(tree: Tree) -> None:
    valid = bytes(DNSRecord.question("web.alpha.home.arpa").pack())
    rng = random.Random(4)
    truncated = valid[:-5]
    bad_pointer = valid[:12] + b"\xc0\x0c"  # a name pointing at itself
    response = bytes(DNSRecord.question("x").reply().pack())
    parsed = [DNSRecord.parse(r) for r in send_raw(tree.port, [truncated, bad_pointer])]
    assert [p.header.rcode for p in parsed] == [RCODE.FORMERR, RCODE.FORMERR]
    assert all(p.header.id == DNSRecord.parse(valid).header.id for p in parsed)
    # Too short for a header, too big for a query, or a response (never reflected): silence.
    assert send_raw(tree.port, [b"", b"\x00", b"\xff" * 11, os.urandom(10_000), response]) == []
    # Random garbage with a plausible header may get FORMERR too; nothing else ever comes back.
    junk = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600)))
            for _ in range(500)]
    for reply in send_raw(tree.port, junk):
        assert DNSRecord.parse(reply).header.qr == 1
    assert query("web.alpha.home.arpa", port=tree.port).rr
    # TCP: a frame bigger than any query, a short frame, garbage: the connection is closed,
    # the next one is served.
    for payload in (struct.pack("!H", 65535) + b"x" * 100, struct.pack("!H", 5) + b"abcde",
                    struct.pack("!H", 40) + b"\x00" * 10):
        with socket.create_connection(("127.0.0.1", tree.port), timeout=5) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(4096):
                pass
    assert query("web.alpha.home.arpa", port=tree.port, tcp=True).rr
    assert tree.alpha.alive()


def test_a_flood_does_not_stop_valid_answers(tree: Tree) -> None:
    count = 5_000
    rng = random.Random(5)
    names = [f"n{rng.randrange(10**9)}.alpha.home.arpa" for _ in range(count)]
    answered: list[int] = []
    stop = threading.Event()

    def flood() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            got = 0
            for name in names:
                sock.sendto(bytes(DNSRecord.question(name).pack()), ("127.0.0.1", tree.port))
                try:
                    while True:
                        sock.recv(4096)
                        got += 1
                except BlockingIOError:
                    pass
            sock.settimeout(1.0)
            try:
                while True:
                    sock.recv(4096)
                    got += 1
            except TimeoutError:
                pass
            answered.append(got)
        stop.set()

    flooder = threading.Thread(target=flood)
    start = time.monotonic()
    flooder.start()
    valid_answers = 0
    while not stop.is_set():
        for _ in range(5):  # a client retries, as resolvers do
            try:
                reply = query("web.alpha.home.arpa", port=tree.port, timeout=1)
            except OSError:
                continue
            assert [str(rr.rdata) for rr in reply.rr] == [WEB4]
            valid_answers += 1
            break
        else:
            pytest.fail("a valid query went unanswered five times during the flood")
        time.sleep(0.05)
    flooder.join()
    print(f"flood: {count} queries in {time.monotonic() - start:.1f} s, {answered[0]} answered; "
          f"{valid_answers} valid queries answered meanwhile")
    assert valid_answers >= 1 and tree.alpha.alive()


def test_reload_on_sighup_and_a_bad_file_keeps_the_old_zone(tmp_path: Path) -> None:
    port = free_port()
    first = config(alpha_zone(1), ["127.0.0.1"], port)
    with dns_server(tmp_path, first, port=port) as server:
        assert short("127.0.0.1", port, "new.alpha.home.arpa") == []
        second = config(alpha_zone(1, serial=2), ["127.0.0.1"], port)
        second["zone"]["instances"].append({"name": "new", "ipv4": "10.1.2.9"})
        server.reload(second)
        assert short("127.0.0.1", port, "new.alpha.home.arpa") == ["10.1.2.9"]
        assert short("127.0.0.1", port, "-x", "10.1.2.9") == ["new.alpha.home.arpa."]
        # Removed again: the name and its PTR are gone.
        server.reload(config(alpha_zone(1, serial=3), ["127.0.0.1"], port))
        assert "status: NXDOMAIN" in dig("127.0.0.1", port, "new.alpha.home.arpa")
        assert "status: NXDOMAIN" in dig("127.0.0.1", port, "-x", "10.1.2.9")
        server.config_path.write_text("{ not json")
        server.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert server.soa_serial(second["zone"]) == 3 and server.alive()
        assert "not reloaded, still serving the previous configuration" in \
            server.log.read_text()
        # New listen addresses are taken on reload too.
        other = free_port("127.0.0.7")
        moved = config(alpha_zone(1, serial=4), ["127.0.0.7"], other)
        server.write(moved)
        server.process.send_signal(signal.SIGHUP)
        moved_server = DnsProcess(server.config_path, server.log, server.process, "127.0.0.7",
                                  other)
        moved_server.wait_serving(moved["zone"], 4)
        with pytest.raises(OSError):
            query("web.alpha.home.arpa", port=port, timeout=0.5)


def test_without_a_file_it_waits_for_one(tmp_path: Path) -> None:
    port = free_port()
    with dns_server(tmp_path, None, port=port) as server:
        time.sleep(0.5)
        assert server.alive()
        assert "does not exist yet" in server.log.read_text()
        server.reload(config(alpha_zone(1), ["127.0.0.1"], port))
        assert short("127.0.0.1", port, "web.alpha.home.arpa") == [WEB4]
        assert ip_address(WEB4)
