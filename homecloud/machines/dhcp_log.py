"""The MACs dnsmasq refused to boot, read from its log lines (``log-dhcp``). Pure.

dnsmasq answers only MACs homecloud knows (``dhcp-ignore=tag:!known``) and logs each request it
ignores; `hc provision status` lists those MACs so the user can add the machine that asked.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

# Full DHCP: "DHCPDISCOVER(hc0) 52:54:00:12:34:56 ignored"; proxyDHCP: "PXE(hc0) MAC
# proxy-ignored". A DHCPREQUEST names the address asked for before the MAC.
_IGNORED_RE = re.compile(r"\b(?:DHCPDISCOVER|DHCPREQUEST|PXE)\(\S+\) (?:\S+ )?"
                         r"((?:[0-9a-f]{2}:){5}[0-9a-f]{2}) (?:proxy-)?ignored\b")


def ignored_macs(lines: Iterable[str]) -> Counter[str]:
    """How many requests of each MAC the lines say dnsmasq ignored."""
    found: Counter[str] = Counter()
    for line in lines:
        match = _IGNORED_RE.search(line)
        if match:
            found[match.group(1)] += 1
    return found
