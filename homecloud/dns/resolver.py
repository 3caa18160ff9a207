"""From query bytes to what the server does: send these reply bytes, stay silent, or ask other
servers (``Ask``) and relay what they say. No sockets and no clock: server.py performs the
decision, so every decision is testable without the network.

Answers from our zones are kept as bytes under ``wire.cache_key`` (what the answer depends on,
not the raw packet), so a repeated question costs a dict lookup; the cache is bounded in bytes
and dropped whenever the zones change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dnslib import RCODE, DNSRecord

from homecloud.dns import answer as answers
from homecloud.dns.upstream import Server
from homecloud.dns.wire import MalformedQuery, cache_key, parse_query
from homecloud.dns.zone import Zones

MAX_QUERY = 4096  # bigger than any sane query (one question, an OPT record): dropped
CACHE_BYTES = 4 << 20  # answers kept, keys and replies counted; emptied when full
CACHE_ENTRY_OVERHEAD = 150  # bytes a dict slot and two bytes objects cost beyond their data
_AA, _RA = 0x04, 0x80  # in the third and fourth bytes of a message


@dataclass(frozen=True)
class Ask:
    """Another server must answer: send ``query`` to ``servers`` in turn within ``timeout``
    seconds, and reply with ``relay(their reply)``, or ``failure`` when none answered.

    ``for_client`` is recursion on the client's behalf (a child host's names, zones other
    homecloud hosts serve): we answer as a resolver, not as the authority. Otherwise the query
    is forwarded upstream and the reply goes back as it is."""

    query: bytes
    servers: tuple[Server, ...]
    timeout: float
    failure: bytes
    for_client: bool = False

    def relay(self, reply: bytes) -> bytes:
        if not self.for_client or len(reply) < 4:
            return reply
        return reply[:2] + bytes([reply[2] & ~_AA & 0xFF, reply[3] | _RA]) + reply[4:]


Decision = bytes | Ask | None  # reply now, ask another server, or stay silent


@dataclass
class AnswerCache:
    """Replies (without their id) by cache key, at most ``limit`` bytes in all."""

    limit: int = CACHE_BYTES
    _entries: dict[bytes, bytes] = field(default_factory=dict)
    _size: int = 0

    def get(self, key: bytes) -> bytes | None:
        return self._entries.get(key)

    def put(self, key: bytes, reply: bytes) -> None:
        cost = len(key) + len(reply) + CACHE_ENTRY_OVERHEAD
        if cost > self.limit:
            return
        if self._size + cost > self.limit:
            self.clear()  # random names in a flood: starting over beats bookkeeping per entry
        self._entries[key] = reply
        self._size += cost

    def clear(self) -> None:
        self._entries.clear()
        self._size = 0

    @property
    def size(self) -> int:
        """Bytes held, as counted against the limit."""
        return self._size

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class Resolver:
    """Decides what to do with each query; holds the zones, the upstreams and the cache."""

    zones: Zones
    upstreams: Sequence[Server] = ()
    forward_timeout: float = 1.5
    _cache: AnswerCache = field(default_factory=AnswerCache)

    def set_zones(self, zones: Zones) -> None:
        self.zones = zones
        self._cache.clear()

    def resolve(self, data: bytes, tcp: bool) -> Decision:
        """What to do with ``data``, received over TCP or UDP."""
        if len(data) < 12 or len(data) > MAX_QUERY or data[2] & 0x80:
            return None  # not a query (a reply, or noise): never answer, never reflect
        key = cache_key(data, tcp)
        if key is not None:
            cached = self._cache.get(key)
            if cached is not None:
                return data[:2] + cached
        try:
            query = parse_query(data)
        except MalformedQuery:
            return answers.bare_reply(data, RCODE.FORMERR)
        outcome = answers.answer(query, self.zones)
        if isinstance(outcome, answers.Reply):
            reply = self._pack(outcome.record, query, tcp)
            if key is not None:
                self._cache.put(key, reply[2:])
            return reply
        servers = tuple(self.upstreams) if isinstance(outcome, answers.Forward) \
            else outcome.servers
        failure = self._pack(answers.servfail(query), query, tcp)
        if not servers:
            return failure
        return Ask(data, servers, self.forward_timeout, failure,
                   for_client=isinstance(outcome, answers.Recurse))

    def _pack(self, record: DNSRecord, query: DNSRecord, tcp: bool) -> bytes:
        return answers.pack(record, answers.TCP_LIMIT if tcp else answers.udp_limit(query))
