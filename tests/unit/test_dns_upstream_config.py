import asyncio
import json
from ipaddress import IPv4Address

import pytest
from dnslib import RCODE, DNSRecord

from homecloud.dns.config import DnsConfig, load_config, write_config
from homecloud.dns.server import MAX_QUERY, Resolver
from homecloud.dns.upstream import parse_resolv_conf, parse_server, system_upstreams
from homecloud.dns.zone import InstanceEntry, ZoneDescription, build_zones
from homecloud.errors import UserError


@pytest.mark.parametrize("text,server", [
    ("1.2.3.4", ("1.2.3.4", 53)),
    ("1.2.3.4:5353", ("1.2.3.4", 5353)),
    ("::1", ("::1", 53)),
    ("[::1]:5300", ("::1", 5300)),
    ("fe80::1%eth0", ("fe80::1%eth0", 53)),
])
def test_server_addresses(text, server):
    assert parse_server(text) == server


@pytest.mark.parametrize("text", ["dns.google", "1.2.3.4:x", "[::1]x", "1.2.3.4:0",
                                  "1.2.3.4:70000"])
def test_bad_server_addresses(text):
    with pytest.raises(UserError):
        parse_server(text)


def test_resolv_conf_nameservers_in_order(tmp_path):
    text = ("# generated\nsearch lan\nnameserver 192.168.1.1\nnameserver ::1 # local\n"
            "nameserver bogus\noptions edns0\n  nameserver 127.0.0.53\n")
    assert parse_resolv_conf(text) == [("192.168.1.1", 53), ("::1", 53), ("127.0.0.53", 53)]
    path = tmp_path / "resolv.conf"
    path.write_text(text)
    assert system_upstreams(exclude=[("::1", 53)], path=path) == \
        [("192.168.1.1", 53), ("127.0.0.53", 53)]
    assert system_upstreams(path=tmp_path / "missing") == []


CONFIG = DnsConfig(zone=ZoneDescription(host="alpha", instances=(InstanceEntry("web"),)),
                   listen=("127.0.0.1", "::1"), port=5353, upstreams=(("::1", 5300),))


def test_config_round_trips_through_its_file(tmp_path):
    path = tmp_path / "dns.json"
    assert write_config(CONFIG, path)
    assert not write_config(CONFIG, path)  # unchanged: no reload needed
    assert load_config(path) == CONFIG
    assert CONFIG.endpoints == (("127.0.0.1", 5353), ("::1", 5353))


@pytest.mark.parametrize("content,message", [
    ("{", "is not valid JSON"),
    ("[]", "must hold a JSON object"),
    ('{"listen": []}', "KeyError"),
    ('{"zone": {"host": "a"}, "port": 0}', "port 0 is out of range"),
    ('{"zone": {"host": "a"}, "listen": ["nope"]}', "invalid DNS configuration"),
    ('{"zone": {"host": "a"}, "forward_timeout": 99}', "forward_timeout"),
])
def test_bad_config_files(tmp_path, content, message):
    path = tmp_path / "dns.json"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_config(path)


def resolver(**kwargs):
    return Resolver(build_zones(ZoneDescription(host="alpha", instances=(
        InstanceEntry("web", ipv4=IPv4Address("10.0.0.2")),))), **kwargs)


def test_resolver_answers_and_caches_by_question():
    r = resolver()
    query = DNSRecord.question("web.alpha.home.arpa")
    first = r.resolve(bytes(query.pack()), tcp=False)
    assert str(DNSRecord.parse(first).rr[0].rdata) == "10.0.0.2"
    query.header.id = (query.header.id + 1) % 65536
    again = r.resolve(bytes(query.pack()), tcp=False)
    assert again[:2] == bytes(query.pack())[:2] and again[2:] == first[2:]
    assert len(r._cache) == 1
    r.set_zones(build_zones(ZoneDescription(host="alpha")))
    assert len(r._cache) == 0
    assert DNSRecord.parse(r.resolve(bytes(query.pack()), tcp=False)).header.rcode == \
        RCODE.NXDOMAIN


@pytest.mark.parametrize("data", [b"", b"\x00" * 11, b"\xff" * (MAX_QUERY + 1),
                                  bytes(DNSRecord.question("x").reply().pack())])
def test_resolver_ignores_what_is_not_a_query(data):
    assert resolver().resolve(data, tcp=False) is None


def test_resolver_answers_garbage_with_formerr():
    query = bytes(DNSRecord.question("web.alpha.home.arpa").pack())
    for data in (query[:-3], query[:12] + b"\xc0\x0c" * 20):
        reply = resolver().resolve(data, tcp=False)
        assert DNSRecord.parse(reply).header.rcode == RCODE.FORMERR


def test_forwarding_without_upstreams_is_servfail():
    pending = resolver().resolve(bytes(DNSRecord.question("example.com").pack()), tcp=False)
    reply = asyncio.run(pending)
    assert DNSRecord.parse(reply).header.rcode == RCODE.SERVFAIL
    json.dumps(CONFIG.to_json())
