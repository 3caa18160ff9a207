"""From a DNS query to what to do with it: answer from our zones, refer or recurse to a child
host, forward upstream or refuse; and the wire form of a reply (EDNS0 size, truncation).

Pure: no sockets. resolver.py turns ``Forward`` and ``Recurse`` into an ``Ask`` that server.py
performs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from dnslib import EDNS0, OPCODE, QTYPE, RCODE, RR, DNSHeader, DNSRecord

from homecloud.dns.zone import Delegation, Key, Zone, Zones, name_key

CLASS_IN = 1
CLASS_ANY = 255
PLAIN_UDP_LIMIT = 512  # a reply over UDP to a client without EDNS0
EDNS_PAYLOAD = 1232  # what we advertise and send at most over UDP (DNS flag day 2020)
TCP_LIMIT = 65535
RCODE_BADVERS = 16  # extended rcode: upper 8 bits in the OPT record, lower 4 in the header
DO_BIT = 0x8000  # in the OPT record's flags (its TTL field): the client wants DNSSEC records
_ZONE_TRANSFERS = (QTYPE.AXFR, QTYPE.IXFR)
_ADDRESS_TYPES = (QTYPE.A, QTYPE.AAAA)


@dataclass(frozen=True)
class Reply:
    """A finished reply: it depends only on the query and the zones, so it may be cached."""

    record: DNSRecord


@dataclass(frozen=True)
class Forward:
    """A name outside our zones, recursion wanted: ask the upstream resolvers."""

    query: DNSRecord


@dataclass(frozen=True)
class Recurse:
    """A name another homecloud host serves (delegated to a child, or forwarded), recursion
    wanted: ask that host's servers."""

    query: DNSRecord
    servers: tuple[tuple[str, int], ...]


Outcome = Reply | Forward | Recurse


def _opt(query: DNSRecord) -> list[RR]:
    return [rr for rr in query.ar if rr.rtype == QTYPE.OPT]


def _our_opt(query: DNSRecord, ext_rcode: int = 0) -> RR:
    """The OPT record of a reply: our payload size, and the query's DO bit copied (RFC 3225:
    we sign nothing, but the client learns we saw its OPT record)."""
    wants_dnssec = any(rr.ttl & DO_BIT for rr in _opt(query))
    return EDNS0(udp_len=EDNS_PAYLOAD, ext_rcode=ext_rcode, flags="do" if wants_dnssec else "")


def _reply(query: DNSRecord, rcode: int = RCODE.NOERROR, authoritative: bool = False) -> DNSRecord:
    """An empty reply to ``query``: same id, question and RD; EDNS0 if the client used it.
    Never authoritative for QCLASS ANY: the answer may not hold every class (RFC 1034)."""
    asked = query.header
    if query.questions and query.q.qclass == CLASS_ANY:
        authoritative = False
    header = DNSHeader(id=asked.id, qr=1, opcode=asked.opcode, aa=int(authoritative),
                       rd=asked.rd, ra=1, rcode=rcode)
    reply = DNSRecord(header, questions=list(query.questions))
    if _opt(query):
        reply.add_ar(_our_opt(query))
    return reply


def error(query: DNSRecord, rcode: int) -> DNSRecord:
    return _reply(query, rcode)


def servfail(query: DNSRecord) -> DNSRecord:
    return _reply(query, RCODE.SERVFAIL)


def _badvers(query: DNSRecord) -> DNSRecord:
    reply = _reply(query)
    reply.ar = [_our_opt(query, ext_rcode=RCODE_BADVERS >> 4)]
    reply.header.rcode = RCODE_BADVERS & 0xF
    return reply


def payload_limit(payload: int | None) -> int:
    """How big a UDP reply may be for a client advertising ``payload`` bytes in EDNS0 (None:
    no EDNS0): within 512..EDNS_PAYLOAD."""
    if payload is None:
        return PLAIN_UDP_LIMIT
    return max(PLAIN_UDP_LIMIT, min(payload, EDNS_PAYLOAD))


def udp_limit(query: DNSRecord) -> int:
    """How big a UDP reply to ``query`` may be."""
    opts = _opt(query)
    return payload_limit(opts[0].rclass if opts else None)


def answer(query: DNSRecord, zones: Zones) -> Outcome:
    """What to do with ``query`` (already parsed)."""
    header = query.header
    if header.opcode != OPCODE.QUERY:
        return Reply(error(query, RCODE.NOTIMP))
    opts = _opt(query)
    if len(query.questions) != 1 or len(opts) > 1:
        return Reply(error(query, RCODE.FORMERR))
    if opts and (opts[0].ttl >> 16) & 0xFF != 0:  # EDNS version: we speak 0
        return Reply(_badvers(query))
    question = query.q
    if question.qclass not in (CLASS_IN, CLASS_ANY) or question.qtype in _ZONE_TRANSFERS:
        return Reply(error(query, RCODE.REFUSED))
    key = name_key(question.qname)
    zone = zones.find(key)
    if zone is None:
        if not header.rd:
            return Reply(error(query, RCODE.REFUSED))
        servers = zones.forward_for(key)
        return Forward(query) if servers is None else Recurse(query, servers)
    cut = zone.delegation_for(key)
    if cut is not None and not (question.qtype == QTYPE.DS and cut[0] == key):
        if header.rd:
            return Recurse(query, cut[1].servers)
        return Reply(_referral(query, cut[1]))
    return Reply(_authoritative(query, zone, key, zones))


def _owned(rr: RR, query: DNSRecord) -> RR:
    """``rr`` under the name exactly as the client spelt it (0x20-randomising resolvers)."""
    clone = copy.copy(rr)
    clone.rname = query.q.qname
    return clone


def _authoritative(query: DNSRecord, zone: Zone, key: Key, zones: Zones) -> DNSRecord:
    qtype = query.q.qtype
    node = zone.records.get(key)
    if node is None:
        # A cut (asked for its DS) and the names above one exist, with no records of ours.
        exists = key in zone.empty_nonterminals or key in zone.delegations
        rcode = RCODE.NOERROR if exists else RCODE.NXDOMAIN
        return _negative(query, zone, rcode)
    found = [rr for rrs in node.values() for rr in rrs] if qtype == QTYPE.ANY \
        else node.get(qtype, [])
    if not found:
        return _negative(query, zone, RCODE.NOERROR)  # NODATA
    reply = _reply(query, authoritative=True)
    for rr in found:
        reply.add_answer(_owned(rr, query))
    for rr in found:
        target = _target(rr)
        if target is not None:
            for extra in zones.addresses_of(target):
                reply.add_ar(extra)
    return reply


def _target(rr: RR) -> Key | None:
    """A name whose addresses help the client: an SRV target, a name server."""
    if rr.rtype == QTYPE.SRV:
        return name_key(rr.rdata.target)
    if rr.rtype == QTYPE.NS:
        return name_key(rr.rdata.label)
    return None


def _negative(query: DNSRecord, zone: Zone, rcode: int) -> DNSRecord:
    """NXDOMAIN or NODATA: the zone's SOA in the authority section, for negative caching."""
    reply = _reply(query, rcode, authoritative=True)
    soa = copy.copy(zone.soa)
    soa.ttl = zone.negative_ttl
    reply.add_auth(soa)
    return reply


def _referral(query: DNSRecord, delegation: Delegation) -> DNSRecord:
    reply = _reply(query)
    for rr in delegation.ns:
        reply.add_auth(rr)
    for rr in delegation.glue:
        reply.add_ar(rr)
    return reply


def _is_referral(reply: DNSRecord) -> bool:
    return not reply.rr and any(rr.rtype == QTYPE.NS for rr in reply.auth)


def _copy(reply: DNSRecord) -> DNSRecord:
    """A copy whose sections and header can change (pack() writes the counts into the header)."""
    clone = copy.copy(reply)
    clone.header = copy.copy(reply.header)
    return clone


def pack(reply: DNSRecord, limit: int) -> bytes:
    """The reply on the wire, at most ``limit`` bytes: first without the additional section
    (extra addresses are optional; a referral's glue is not, RFC 9471), then truncated (TC, no
    records) so the client retries over TCP."""
    data = bytes(reply.pack())
    if len(data) <= limit:
        return data
    opts = _opt(reply)
    if not _is_referral(reply) and len(reply.ar) > len(opts):
        trimmed = _copy(reply)
        trimmed.ar = opts
        data = bytes(trimmed.pack())
        if len(data) <= limit:
            return data
    truncated = _copy(reply)
    truncated.header.tc = 1
    truncated.rr, truncated.auth, truncated.ar = [], [], opts
    return bytes(truncated.pack())


def bare_reply(data: bytes, rcode: int) -> bytes | None:
    """A reply with only a header (FORMERR for a query we cannot parse, SERVFAIL when answering
    failed), if ``data`` at least has a query's header; None means drop it."""
    if len(data) < 12 or data[2] & 0x80:  # too short, or a response: never answer those
        return None
    flags = bytes([0x80 | (data[2] & 0x79), 0x80 | rcode])  # QR, opcode, RD; RA, rcode
    return data[:2] + flags + bytes(8)
