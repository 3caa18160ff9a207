from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, A, DNSRecord

from homecloud.dns.answer import (
    EDNS_PAYLOAD,
    Forward,
    Recurse,
    Reply,
    answer,
    bare_reply,
    pack,
    udp_limit,
)
from homecloud.dns.zone import (
    ChildHost,
    Forwarding,
    InstanceEntry,
    ServiceRecord,
    ZoneDescription,
    build_zones,
)

ZONES = build_zones(ZoneDescription(
    host="alpha",
    addresses=(ip_address("10.1.2.1"), ip_address("fd00:1:2:3::1")),
    subnets=(ip_network("10.1.2.0/24"), ip_network("fd00:1:2:3::/64")),
    instances=(InstanceEntry("web", IPv4Address("10.1.2.2"), IPv6Address("fd00:1:2:3::abcd"),
                             (ServiceRecord("tcp", 8080, 80, "http"),)),
               InstanceEntry("v4only", IPv4Address("10.1.2.3"))),
    children=(ChildHost("beta", (ip_address("127.0.0.2"),), 5300),),
    domain="home.arpa",
    forwards=(Forwarding("home.arpa", (ip_address("10.0.0.1"),)),
              Forwarding("0.0.10.in-addr.arpa", (ip_address("10.0.0.1"),), 5353)),
))


def ask(name, qtype="A", rd=True, edns=None, zones=ZONES):
    query = DNSRecord.question(name, qtype)
    query.header.rd = int(rd)
    if edns is not None:
        query.add_ar(edns)
    return query, answer(query, zones)


def reply_to(name, qtype="A", **kwargs):
    _, outcome = ask(name, qtype, **kwargs)
    assert isinstance(outcome, Reply)
    return outcome.record


def rdata(rrs):
    return sorted(str(rr.rdata) for rr in rrs)


@pytest.mark.parametrize("qtype,expected", [("A", ["10.1.2.2"]), ("AAAA", ["fd00:1:2:3::abcd"])])
def test_instance_addresses_are_authoritative(qtype, expected):
    reply = reply_to("web.alpha.home.arpa", qtype)
    assert reply.header.aa and reply.header.rcode == RCODE.NOERROR
    assert rdata(reply.rr) == expected


def test_the_name_keeps_the_case_it_was_asked_in():
    reply = reply_to("WeB.aLpHa.home.arpa")
    assert str(reply.q.qname) == "WeB.aLpHa.home.arpa."
    assert str(reply.rr[0].rname) == "WeB.aLpHa.home.arpa."


def test_ptr_v4_and_v6():
    assert rdata(reply_to("2.2.1.10.in-addr.arpa", "PTR").rr) == ["web.alpha.home.arpa."]
    name = ip_address("fd00:1:2:3::abcd").reverse_pointer
    assert rdata(reply_to(name, "PTR").rr) == ["web.alpha.home.arpa."]


def test_srv_with_the_target_addresses_in_additional():
    reply = reply_to("_http._tcp.web.alpha.home.arpa", "SRV")
    assert rdata(reply.rr) == ["0 0 8080 alpha.home.arpa."]
    assert rdata(reply.ar) == ["10.1.2.1", "fd00:1:2:3::1"]


def test_soa_and_ns_at_the_apex():
    assert "hostmaster.alpha.home.arpa." in str(reply_to("alpha.home.arpa", "SOA").rr[0].rdata)
    ns = reply_to("alpha.home.arpa", "NS")
    assert rdata(ns.rr) == ["alpha.home.arpa."] and len(ns.ar) == 2


def test_any_returns_every_record_of_the_name():
    assert len(reply_to("web.alpha.home.arpa", "ANY").rr) == 2


@pytest.mark.parametrize("name,qtype,rcode", [
    ("nope.alpha.home.arpa", "A", RCODE.NXDOMAIN),
    ("a.b.web.alpha.home.arpa", "A", RCODE.NXDOMAIN),
    ("99.2.1.10.in-addr.arpa", "PTR", RCODE.NXDOMAIN),
    ("v4only.alpha.home.arpa", "AAAA", RCODE.NOERROR),  # NODATA
    ("web.alpha.home.arpa", "MX", RCODE.NOERROR),
    ("_tcp.web.alpha.home.arpa", "SRV", RCODE.NOERROR),  # empty non-terminal
])
def test_negative_answers_carry_the_soa(name, qtype, rcode):
    reply = reply_to(name, qtype)
    assert reply.header.rcode == rcode and reply.header.aa
    assert reply.rr == []
    assert [rr.rtype for rr in reply.auth] == [QTYPE.SOA]
    assert reply.auth[0].ttl == 30


def test_delegated_names_get_a_referral_with_glue():
    reply = reply_to("db.beta.alpha.home.arpa", rd=False)
    assert not reply.header.aa and reply.header.rcode == RCODE.NOERROR
    assert reply.rr == []
    assert [(str(rr.rname), str(rr.rdata)) for rr in reply.auth] == \
        [("beta.alpha.home.arpa.", "beta.alpha.home.arpa.")]
    assert rdata(reply.ar) == ["127.0.0.2"]


def test_delegated_names_are_recursed_when_recursion_is_wanted():
    _, outcome = ask("db.beta.alpha.home.arpa", rd=True)
    assert isinstance(outcome, Recurse)
    assert outcome.servers == (("127.0.0.2", 5300),)


def test_ds_at_the_cut_is_ours_to_answer():
    reply = reply_to("beta.alpha.home.arpa", "DS")
    assert reply.header.aa and reply.rr == [] and reply.auth[0].rtype == QTYPE.SOA


def test_outside_names_are_forwarded_or_refused():
    _, outcome = ask("example.com", rd=True)
    assert isinstance(outcome, Forward)
    assert reply_to("example.com", rd=False).header.rcode == RCODE.REFUSED
    assert reply_to("home.arpa", rd=False).header.rcode == RCODE.REFUSED


@pytest.mark.parametrize("name,qtype,servers", [
    ("web.gamma.home.arpa", "A", (("10.0.0.1", 53),)),
    ("home.arpa", "SOA", (("10.0.0.1", 53),)),
    ("5.0.0.10.in-addr.arpa", "PTR", (("10.0.0.1", 5353),)),
])
def test_zones_of_other_hosts_are_asked_there(name, qtype, servers):
    """Forwarded zones (the parent's, other hosts' reverse zones) go to those hosts' servers;
    our own zone, inside the parent's, stays ours."""
    _, outcome = ask(name, qtype, rd=True)
    assert isinstance(outcome, Recurse) and outcome.servers == servers
    assert reply_to(name, qtype, rd=False).header.rcode == RCODE.REFUSED
    assert rdata(reply_to("web.alpha.home.arpa").rr) == ["10.1.2.2"]


def test_zone_transfers_and_other_classes_are_refused():
    assert reply_to("alpha.home.arpa", "AXFR").header.rcode == RCODE.REFUSED
    query = DNSRecord.question("alpha.home.arpa", "TXT", qclass="CH")
    outcome = answer(query, ZONES)
    assert outcome.record.header.rcode == RCODE.REFUSED


def test_other_opcodes_are_not_implemented():
    query = DNSRecord.question("alpha.home.arpa")
    query.header.opcode = 4  # NOTIFY
    assert answer(query, ZONES).record.header.rcode == RCODE.NOTIMP


def test_two_questions_are_a_format_error():
    query = DNSRecord.question("alpha.home.arpa")
    query.add_question(*DNSRecord.question("web.alpha.home.arpa").questions)
    assert answer(query, ZONES).record.header.rcode == RCODE.FORMERR


def test_edns0_is_answered_with_our_payload_size():
    reply = reply_to("web.alpha.home.arpa", edns=EDNS0(udp_len=4096))
    opts = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    assert len(opts) == 1 and opts[0].rclass == EDNS_PAYLOAD
    assert not [rr for rr in reply_to("web.alpha.home.arpa").ar if rr.rtype == QTYPE.OPT]


def test_unknown_edns_version_is_badvers():
    reply = reply_to("web.alpha.home.arpa", edns=EDNS0(udp_len=4096, version=1))
    opt = reply.ar[0]
    assert reply.header.rcode == 0 and opt.ttl >> 24 == 1  # BADVERS = 16 = 1 << 4 | 0


def test_udp_limit_follows_the_client_within_bounds():
    plain, _ = ask("x.alpha.home.arpa")
    assert udp_limit(plain) == 512
    for size, limit in ((4096, EDNS_PAYLOAD), (1000, 1000), (100, 512)):
        query, _ = ask("x.alpha.home.arpa", edns=EDNS0(udp_len=size))
        assert udp_limit(query) == limit


def big_reply(query):
    reply = query.reply()
    for n in range(60):
        reply.add_answer(RR("big.alpha.home.arpa", QTYPE.A, rdata=A(f"10.0.0.{n}"), ttl=30))
    return reply


def test_a_reply_too_big_for_udp_is_truncated():
    query = DNSRecord.question("big.alpha.home.arpa")
    reply = big_reply(query)
    full = pack(reply, 65535)
    assert len(full) > 512
    cut = DNSRecord.parse(pack(reply, 512))
    assert cut.header.tc and cut.rr == [] and str(cut.q.qname) == "big.alpha.home.arpa."
    assert DNSRecord.parse(full).header.tc == 0


def test_extra_addresses_are_dropped_before_truncating():
    query = DNSRecord.question("_http._tcp.web.alpha.home.arpa", "SRV")
    reply = answer(query, ZONES).record
    limit = len(pack(reply, 65535)) - 1
    trimmed = DNSRecord.parse(pack(reply, limit))
    assert not trimmed.header.tc and len(trimmed.rr) == 1 and trimmed.ar == []


def test_bare_replies_answer_only_queries():
    query = DNSRecord.question("x").pack()
    formerr = bare_reply(bytes(query), RCODE.FORMERR)
    parsed = DNSRecord.parse(formerr)
    assert parsed.header.id == DNSRecord.parse(query).header.id
    assert parsed.header.qr == 1 and parsed.header.rcode == RCODE.FORMERR
    assert bare_reply(b"short", RCODE.FORMERR) is None
    response = bytes(DNSRecord.question("x").reply().pack())
    assert bare_reply(response, RCODE.FORMERR) is None  # never answer a response
