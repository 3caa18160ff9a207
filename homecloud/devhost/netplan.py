"""The dev hosts' address plan: which addresses they get and the commands that configure them.

Every dev host has its own network namespace with one link, ``host0``, whose other end is on a
bridge on the machine. The ranges are test-only, so they cannot collide with a real network the
machine or an instance is on:

- IPv4 198.18.0.0/16, part of RFC 2544's benchmarking range 198.18.0.0/15: the bridge is
  198.18.0.1, a dev host 198.18.0.0 + N for a number N from 2 up.
- IPv6 fd68:6364:6576::/64, a ULA whose global ID spells "hcdev": the bridge is ::1, a dev host
  ::N (N in hex), the same N as its IPv4 address.

N is derived from the dev host's name (probing onward on a collision), so a name keeps its
address across `down` and `up`. Egress is IPv4 only, masqueraded by the machine: the machine has
no IPv6 default route to forward to.

Pure data and pure functions: nothing here touches the system.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from homecloud.errors import HostError

GUEST_LINK = "host0"  # what systemd-nspawn calls the guest's end of the veth pair


@dataclass(frozen=True)
class DevHostAddress:
    """One dev host's addresses; ``number`` is its N in both ranges."""

    number: int
    ipv4: IPv4Address
    ipv6: IPv6Address


@dataclass(frozen=True)
class NetworkPlan:
    """The machine side of dev host networking: one bridge, two ranges, one nftables table."""

    bridge: str = "hcdev0"
    table: str = "hc-devhost"  # `table ip hc-devhost`, ours alone
    ipv4: IPv4Network = field(default_factory=lambda: IPv4Network("198.18.0.0/16"))
    ipv6: IPv6Network = field(default_factory=lambda: IPv6Network("fd68:6364:6576::/64"))
    # Fixed, locally administered: a bridge otherwise takes the lowest MAC among its ports, so
    # its MAC (and every guest's ARP entry for the gateway) would change as dev hosts come and go.
    mac: str = "02:68:63:64:65:76"

    @property
    def gateway(self) -> IPv4Address:
        return self.ipv4.network_address + 1

    @property
    def gateway6(self) -> IPv6Address:
        return self.ipv6.network_address + 1

    @property
    def first_number(self) -> int:
        return 2  # 0 is the network, 1 the bridge

    @property
    def last_number(self) -> int:
        return self.ipv4.num_addresses - 2  # the last address is the broadcast address

    def address(self, number: int) -> DevHostAddress:
        if not self.first_number <= number <= self.last_number:
            raise ValueError(f"dev host number {number} is outside {self.ipv4}")
        return DevHostAddress(number, self.ipv4.network_address + number,
                              self.ipv6.network_address + number)

    def number_of(self, ipv4: IPv4Address) -> int:
        return int(ipv4) - int(self.ipv4.network_address)

    def allocate(self, name: str, taken: Collection[int]) -> DevHostAddress:
        """The address for ``name``: the number its name hashes to, or the next free one."""
        count = self.last_number - self.first_number + 1
        digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
        start = digest % count
        for step in range(count):
            number = self.first_number + (start + step) % count
            if number not in taken:
                return self.address(number)
        raise HostError(f"no free dev host address left in {self.ipv4}: remove a dev host "
                        "(`hc-devhost ls`)")

    def firewall(self) -> str:
        """The nftables script that (re)creates our table in one transaction: masquerade what
        leaves the range. Matching on the destination rather than the uplink's name keeps the
        rule right whatever the uplink is, and leaves traffic between dev hosts untouched (with
        br_netfilter, bridged packets pass the same hooks)."""
        table = f"ip {self.table}"
        return "\n".join([
            f"table {table} {{}}",  # so the delete below cannot fail
            f"delete table {table}",
            f"table {table} {{",
            "    chain postrouting {",
            "        type nat hook postrouting priority srcnat; policy accept;",
            f"        ip saddr {self.ipv4} ip daddr != {self.ipv4} masquerade",
            "    }",
            "}",
            "",
        ])

    def bridge_commands(self) -> str:
        """`ip -batch` lines that give an existing bridge its addresses and bring it up; each is
        idempotent."""
        return "\n".join([
            f"address replace {self.gateway}/{self.ipv4.prefixlen} dev {self.bridge}",
            f"address replace {self.gateway6}/{self.ipv6.prefixlen} dev {self.bridge} nodad",
            f"link set {self.bridge} up",
            "",
        ])

    def guest_commands(self, address: DevHostAddress) -> str:
        """`ip -batch` lines run in a dev host's network namespace: address ``host0`` and route
        through the bridge. No DAD: the address is ours alone and must work at once."""
        return "\n".join([
            "link set lo up",
            f"address replace {address.ipv4}/{self.ipv4.prefixlen} dev {GUEST_LINK}",
            f"address replace {address.ipv6}/{self.ipv6.prefixlen} dev {GUEST_LINK} nodad",
            f"link set {GUEST_LINK} up",
            f"route replace default via {self.gateway} dev {GUEST_LINK}",
            "",
        ])


DEVHOST_NETWORK = NetworkPlan()
