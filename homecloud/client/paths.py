"""Names in URLs, percent-encoded without urllib.parse: importing it (and with it ipaddress)
costs every `hc` command a few milliseconds for what is, for names, one pass over a string."""

from __future__ import annotations

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def quoted(text: str) -> str:
    """``text`` as one part of a URL (a path segment, a query value): what
    ``urllib.parse.quote(text, safe="")`` gives."""
    data = text.encode()
    if all(byte in _UNRESERVED for byte in data):
        return text
    return "".join(chr(byte) if byte in _UNRESERVED else f"%{byte:02X}" for byte in data)
