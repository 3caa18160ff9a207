"""Reading a query off the wire, strictly, and the key its answer is cached under.

A name is octets (RFC 2181 §11): any byte may appear in a label, so a name that is not UTF-8 is
answered like any other. What makes a query malformed is its form: a label longer than 63
octets, a name longer than 255 (which also bounds it to 127 labels), a compression pointer in
the question (nothing before it to point at), or bytes that do not add up. Those raise
``MalformedQuery``, answered with FORMERR.

Pure: no sockets.
"""

from __future__ import annotations

import struct

from dnslib import QTYPE, RR, DNSBuffer, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

from homecloud.dns.answer import DO_BIT, TCP_LIMIT, payload_limit

MAX_LABEL = 63
MAX_NAME = 255  # octets on the wire, length bytes and the root's included
HEADER = 12


class MalformedQuery(ValueError):
    """The packet has a query's header but not a query's form."""


def read_name(data: bytes, offset: int) -> tuple[tuple[bytes, ...], int]:
    """The labels of the uncompressed name at ``offset`` and the offset after it."""
    labels: list[bytes] = []
    size = 1  # the root's zero byte
    while True:
        if offset >= len(data):
            raise MalformedQuery("the name runs past the end of the packet")
        length = data[offset]
        offset += 1
        if length == 0:
            return tuple(labels), offset
        if length > MAX_LABEL:  # 0xC0 and up: a pointer; 0x40-0xBF: no such label type
            raise MalformedQuery("a label longer than 63 octets, or a pointer in the question")
        size += length + 1
        if size > MAX_NAME:
            raise MalformedQuery("a name longer than 255 octets")
        if offset + length > len(data):
            raise MalformedQuery("a label runs past the end of the packet")
        labels.append(data[offset:offset + length])
        offset += length


def parse_query(data: bytes) -> DNSRecord:
    """``data`` as a DNSRecord: its questions read here (any octets), the other sections by
    dnslib. Raises MalformedQuery."""
    if len(data) < HEADER:
        raise MalformedQuery("shorter than a header")
    buffer = DNSBuffer(data)
    try:
        header = DNSHeader.parse(buffer)
        questions = []
        for _ in range(header.q):
            labels, buffer.offset = read_name(data, buffer.offset)
            qtype, qclass = buffer.unpack("!HH")
            questions.append(DNSQuestion(DNSLabel(labels), qtype, qclass))
        sections: list[list[RR]] = [[], [], []]
        for section, count in zip(sections, (header.a, header.auth, header.ar), strict=True):
            section.extend(RR.parse(buffer) for _ in range(count))
    except MalformedQuery:
        raise
    except Exception as exc:  # dnslib raises several kinds on garbage
        raise MalformedQuery(str(exc)) from None
    if buffer.offset != len(data):
        raise MalformedQuery("bytes after the last record")
    answers, authority, additional = sections
    return DNSRecord(header, questions, answers, auth=authority, ar=additional)


def cache_key(data: bytes, tcp: bool) -> bytes | None:
    """What a query's answer from our zones depends on, read without parsing the packet: the
    header flags, the question exactly as sent (the reply repeats its case), the EDNS version
    and DO bit, and how big the reply may be. EDNS options (padding, cookies) are left out: no
    answer depends on them, so a flood of padded queries cannot grow the cache. None for
    anything but one question and at most an OPT record, well formed: those are answered
    without the cache."""
    if len(data) < HEADER:
        return None
    qdcount, ancount, nscount, arcount = struct.unpack_from("!HHHH", data, 4)
    if qdcount != 1 or ancount or nscount or arcount > 1:
        return None
    try:
        _, end = read_name(data, HEADER)
    except MalformedQuery:
        return None
    end += 4  # qtype, qclass
    payload: int | None = None
    edns = b"-"
    if arcount == 0:
        if end != len(data):
            return None
    else:
        fields = _opt_fields(data, end)
        if fields is None:
            return None
        payload, version, flags = fields
        edns = bytes([version, 1 if flags & DO_BIT else 0])
    limit = TCP_LIMIT if tcp else payload_limit(payload)
    return data[2:4] + struct.pack("!H", limit) + edns + data[HEADER:end]


def _opt_fields(data: bytes, offset: int) -> tuple[int, int, int] | None:
    """(payload size, version, flags) of the OPT record at ``offset``, if it is one, well
    formed, and the last thing in the packet."""
    if offset + 11 > len(data) or data[offset] != 0:
        return None
    rtype, payload, _, version, flags, rdlength = struct.unpack_from("!HHBBHH", data, offset + 1)
    offset += 11
    if rtype != QTYPE.OPT or offset + rdlength != len(data):
        return None
    while offset < len(data):  # options: code, length, value
        if offset + 4 > len(data):
            return None
        (length,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + length
    if offset != len(data):
        return None
    return payload, version, flags
