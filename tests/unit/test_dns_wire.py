"""Reading queries off the wire (wire.py): names as octets, the limits of RFC 1035, and the
cache key: what an answer depends on, not the raw packet."""

import struct

import pytest

from homecloud.dns.wire import MalformedQuery, cache_key, parse_query, read_name


def name(*labels):
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


def packet(qname, opt=b"", extra=b"", qdcount=1, flags=0x0100):
    return struct.pack("!HHHHHH", 7, flags, qdcount, 0, 0, 1 if opt else 0) + qname + \
        struct.pack("!HH", 1, 1) + opt + extra


def opt(payload=1232, version=0, do=False, options=b""):
    return b"\0" + struct.pack("!HHBBHH", 41, payload, 0, version, 0x8000 if do else 0,
                               len(options)) + options


def test_names_are_read_as_octets_within_the_limits():
    assert read_name(name(b"\xff", b"a.b") + b"rest", 0) == ((b"\xff", b"a.b"), 7)
    for bad, message in ((name(b"x" * 64), "longer than 63"),
                         (name(*[b"x" * 63] * 4), "longer than 255"),
                         (b"\xc0\x00", "pointer"),
                         (b"\x05abc", "past the end"),
                         (b"\x01a", "past the end")):
        with pytest.raises(MalformedQuery, match=message):
            read_name(bad, 0)


def test_parse_query_keeps_odd_octets_and_refuses_trailing_bytes():
    query = parse_query(packet(name(b"\x80\x81", b"home", b"arpa"), opt=opt()))
    assert query.q.qname.label == (b"\x80\x81", b"home", b"arpa") and len(query.ar) == 1
    for bad in (packet(name(b"a"), extra=b"\0"), packet(name(b"a"))[:-1], b"\0" * 11):
        with pytest.raises(MalformedQuery):
            parse_query(bad)


def test_the_cache_key_leaves_out_the_id_and_the_options():
    base = packet(name(b"web", b"home", b"arpa"), opt=opt())
    padded = packet(name(b"web", b"home", b"arpa"),
                    opt=opt(options=struct.pack("!HH", 12, 400) + bytes(400)))
    assert cache_key(base, tcp=False) == cache_key(padded, tcp=False)
    assert cache_key(b"\xff\xff" + base[2:], tcp=False) == cache_key(base, tcp=False)
    assert len(cache_key(padded, tcp=False)) < 40


def test_the_cache_key_holds_what_the_answer_depends_on():
    qname = name(b"web", b"home", b"arpa")
    keys = {cache_key(packet(qname, opt=o), tcp=tcp)
            for o in (b"", opt(), opt(do=True), opt(version=1), opt(payload=512))
            for tcp in (False, True)}
    # UDP: five different keys; TCP: the limit is the same, the OPT still differs but the
    # payload size does not matter (opt() and opt(payload=512) share one).
    assert len(keys) == 9
    assert cache_key(packet(qname), False) != cache_key(packet(name(b"WEB", b"home",
                                                                   b"arpa")), False)
    assert cache_key(packet(qname, flags=0), False) != cache_key(packet(qname), False)


@pytest.mark.parametrize("data", [
    packet(name(b"a"), extra=b"\0"),  # bytes after the question
    packet(name(b"a"), qdcount=2),
    packet(name(b"a" * 64)),
    packet(name(b"a"), opt=opt()[:-2] + b"\0\x05"),  # OPT length past the end
    packet(name(b"a"), opt=opt(options=b"\0\x0c\0\x09ab")),  # option longer than its OPT
    b"\0" * 5,
])
def test_anything_unusual_has_no_cache_key(data):
    assert cache_key(data, tcp=False) is None
