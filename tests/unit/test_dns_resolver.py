"""What hc-dns does with each packet (resolver.py): no sockets, so every decision is checked
here: answers and their cache, silence, FORMERR, asking other servers and relaying their reply."""

import struct
from ipaddress import IPv4Address

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from homecloud.dns.resolver import MAX_QUERY, AnswerCache, Ask, Resolver
from homecloud.dns.wire import parse_query
from homecloud.dns.zone import ChildHost, InstanceEntry, ZoneDescription, build_zones


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
    reply = resolver().resolve(bytes(DNSRecord.question("example.com").pack()), tcp=False)
    assert DNSRecord.parse(reply).header.rcode == RCODE.SERVFAIL


# -- hostile and unusual queries ----------------------------------------------------------------

def wire_query(labels, qtype=1, qclass=1, flags=0x0100, opt=b"", qid=0x1234):
    name = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
    return struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 1 if opt else 0) + name + \
        struct.pack("!HH", qtype, qclass) + opt


def opt_record(payload=1232, do=False, options=b""):
    return b"\0" + struct.pack("!HHBBHH", 41, payload, 0, 0, 0x8000 if do else 0,
                               len(options)) + options


ZONE = (b"alpha", b"home", b"arpa")


@pytest.mark.parametrize("labels", [
    (b"a" * 64, *ZONE),  # a label longer than 63 octets
    (b"a" * 63,) * 4 + ZONE,  # a name longer than 255 octets
    (b"a",) * 128 + ZONE,  # more than 127 labels
], ids=["label", "name", "labels"])
def test_malformed_names_are_formerr(labels):
    reply = DNSRecord.parse(resolver().resolve(wire_query(labels), tcp=False))
    assert reply.header.rcode == RCODE.FORMERR and reply.header.id == 0x1234


def test_a_name_of_exactly_255_octets_is_answered():
    labels = (b"a" * 63, b"b" * 63, b"c" * 63, b"d" * 45) + ZONE  # 64*3 + 46 + 16 + 1 octets
    assert sum(len(label) + 1 for label in labels) + 1 == 255
    reply = DNSRecord.parse(resolver().resolve(wire_query(labels), tcp=False))
    assert reply.header.rcode == RCODE.NXDOMAIN and reply.header.aa


def test_names_are_octets_not_text():
    r = resolver()
    reply = parse_query(r.resolve(wire_query((b"\xff\xfe", *ZONE)), tcp=False))
    assert reply.header.rcode == RCODE.NXDOMAIN and reply.q.qname.label[0] == b"\xff\xfe"
    dotted = DNSRecord.parse(r.resolve(wire_query((b"web.x", *ZONE)), tcp=False))
    assert dotted.header.rcode == RCODE.NXDOMAIN  # a dot inside a label is not a separator


def test_the_do_bit_is_copied_into_the_reply():
    r = resolver()
    name = (b"web", *ZONE)
    for do in (True, False):
        for _ in range(2):  # computed, then from the cache
            reply = DNSRecord.parse(r.resolve(wire_query(name, opt=opt_record(do=do)), False))
            (opt,) = reply.ar
            assert bool(opt.ttl & 0x8000) is do and str(reply.rr[0].rdata) == "10.0.0.2"


def test_ds_at_a_delegation_point_is_nodata():
    r = Resolver(build_zones(ZoneDescription(host="alpha", children=(
        ChildHost("kid", (IPv4Address("10.0.0.9"),)),))))
    reply = DNSRecord.parse(r.resolve(wire_query((b"kid", *ZONE), qtype=43), tcp=False))
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa and reply.rr == []
    assert [rr.rtype for rr in reply.auth] == [QTYPE.SOA]


def test_qclass_any_is_not_authoritative():
    r = resolver()
    found = DNSRecord.parse(r.resolve(wire_query((b"web", *ZONE), qclass=255), tcp=False))
    assert found.header.rcode == RCODE.NOERROR and not found.header.aa and found.rr
    missing = DNSRecord.parse(r.resolve(wire_query((b"nope", *ZONE), qclass=255), tcp=False))
    assert missing.header.rcode == RCODE.NXDOMAIN and not missing.header.aa
    assert DNSRecord.parse(r.resolve(wire_query((b"web", *ZONE)), tcp=False)).header.aa


def test_padded_queries_share_one_cache_entry():
    r = resolver()
    for size in range(0, 3000, 100):
        padding = struct.pack("!HH", 12, size) + bytes(size)  # EDNS padding (RFC 7830)
        reply = r.resolve(wire_query((b"web", *ZONE), opt=opt_record(options=padding)), False)
        assert str(DNSRecord.parse(reply).rr[0].rdata) == "10.0.0.2"
    assert len(r._cache) == 1 and r._cache.size < 300


def test_the_cache_is_bounded_in_bytes():
    r = resolver()
    r._cache.limit = 20_000
    for n in range(1000):
        r.resolve(wire_query((f"n{n}".encode(), *ZONE)), tcp=False)
        assert r._cache.size <= 20_000
    assert 0 < len(r._cache) < 1000


def test_over_tcp_and_udp_the_answer_differs_by_its_limit():
    r = Resolver(build_zones(ZoneDescription(host="wide", addresses=tuple(
        IPv4Address(f"10.9.0.{n}") for n in range(1, 101)))))
    query = wire_query((b"wide", b"home", b"arpa"))
    assert DNSRecord.parse(r.resolve(query, tcp=False)).header.tc
    assert len(DNSRecord.parse(r.resolve(query, tcp=True)).rr) == 100
    assert DNSRecord.parse(r.resolve(query, tcp=False)).header.tc


def test_outside_names_ask_the_upstreams_and_relay_their_reply_unchanged():
    r = resolver(upstreams=(("192.0.2.53", 53),), forward_timeout=0.7)
    data = bytes(DNSRecord.question("example.com").pack())
    ask = r.resolve(data, tcp=False)
    assert isinstance(ask, Ask) and not ask.for_client
    assert (ask.query, ask.servers, ask.timeout) == (data, (("192.0.2.53", 53),), 0.7)
    assert DNSRecord.parse(ask.failure).header.rcode == RCODE.SERVFAIL
    upstream = DNSRecord.parse(data).reply()
    upstream.header.aa = 1
    assert ask.relay(bytes(upstream.pack())) == bytes(upstream.pack())


def test_delegated_names_are_asked_for_the_client_not_authoritatively():
    r = Resolver(build_zones(ZoneDescription(host="alpha", children=(
        ChildHost("kid", (IPv4Address("10.0.0.9"),), 5300),))))
    ask = r.resolve(bytes(DNSRecord.question("db.kid.alpha.home.arpa").pack()), tcp=True)
    assert isinstance(ask, Ask) and ask.for_client and ask.servers == (("10.0.0.9", 5300),)
    child = DNSRecord.question("db.kid.alpha.home.arpa").reply(ra=0, aa=1)
    relayed = DNSRecord.parse(ask.relay(bytes(child.pack())))
    assert not relayed.header.aa and relayed.header.ra


def test_answer_cache_refuses_what_cannot_fit():
    cache = AnswerCache(limit=1000)
    cache.put(b"k", bytes(2000))
    assert len(cache) == 0 and cache.get(b"k") is None
    cache.put(b"a", bytes(400))
    cache.put(b"b", bytes(400))  # over the limit: the cache starts over with this one
    assert cache.get(b"a") is None and cache.get(b"b") == bytes(400)
