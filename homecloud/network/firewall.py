"""homecloud's firewall: one nftables table, ``inet homecloud``, rendered whole from a plain
description of the bridge and its instances and applied in one atomic transaction.

What the table does:
- published ports: DNAT of HOST_PORT on any local address to the instance, for TCP and UDP, IPv4
  and IPv6, from other machines (prerouting) and from the host itself (output; IPv4 127.0.0.1
  too, with route_localnet on the bridge, see sysctl.py); maps keep that one lookup however
  many ports there are;
- egress: masquerade of instance traffic leaving by another interface (IPv6 too, except towards
  ULA space, where other homecloud hosts route to us directly) and forwarding out of the bridge
  (only to the uplink when one is set);
- sleeping instances (``--idle``): new TCP connections to their addresses and published ports
  go to homecloud's wake listener (hc-wake.socket, on WAKE_PORT of the bridge's addresses),
  which boots the instance and hands the connection on; nothing reaches that port otherwise;
- isolation: nothing reaches an instance uninvited (only replies, published ports and peer
  homecloud hosts' subnets), and instances reach the host only for DNS and ICMP (the gateway),
  unless the instance is allowed (``allow_host``).

The transaction adds the table, deletes it and adds it again with everything in it: nft applies
a batch atomically, so the old table is replaced in one step and no other table is touched.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from homecloud.errors import HostError
from homecloud.network.addresses import gateway4, gateway6
from homecloud.network.ports import PortMapping, check_not_published, check_unique
from homecloud.tools import ToolResult, run_tool

FAMILY = "inet"
TABLE = "homecloud"
NFT = "nft"
LOOPBACK4 = IPv4Network("127.0.0.0/8")
ULA_SPACE = IPv6Network("fc00::/7")
DNS_PORT = 53
# Where hc-wake.socket listens (units/hc-wake.socket); reached only through our DNAT.
WAKE_PORT = 7079

Json = dict[str, Any]


@dataclass(frozen=True)
class InstanceFirewall:
    """One instance as the firewall sees it."""

    name: str
    ipv4: IPv4Address | None = None
    ipv6: IPv6Address | None = None
    ports: tuple[PortMapping, ...] = ()
    allow_host: bool = False  # may reach every service on the host, not only DNS
    sleeping: bool = False  # its TCP connections go to the wake listener


@dataclass(frozen=True)
class FirewallConfig:
    bridge: str
    subnet4: IPv4Network | None = None
    subnet6: IPv6Network | None = None
    uplink: str | None = None  # None: instances may leave by any interface
    instances: tuple[InstanceFirewall, ...] = ()
    # Instance subnets of other homecloud hosts routed to this one: they may open connections
    # to our instances, and our instances reach them unmasqueraded.
    peers: tuple[IPv4Network | IPv6Network, ...] = field(default_factory=tuple)
    # Host services instances on the bridge may reach besides DNS, as (protocol, port): network
    # boot's DHCP, TFTP and HTTP while it serves on the bridge.
    host_services: tuple[tuple[str, int], ...] = ()

    @property
    def sleeping(self) -> bool:
        """Whether any instance sleeps: only then is there anything to wake (and a table
        with no sleeper is the same as before --idle existed)."""
        return any(i.sleeping for i in self.instances)

    def validate(self) -> FirewallConfig:
        """Refuse a host port given twice or published by two instances, naming them."""
        published: dict[str, tuple[PortMapping, ...]] = {}
        for instance in self.instances:
            check_unique(instance.ports)
            check_not_published(instance.name, instance.ports, published)
            published[instance.name] = instance.ports
        return self


# -- expression builders (nftables JSON schema, libnftables-json(5)) ---------------------------

def _meta(key: str) -> Json:
    return {"meta": {"key": key}}


def _payload(protocol: str, name: str) -> Json:
    return {"payload": {"protocol": protocol, "field": name}}


def _prefix(network: IPv4Network | IPv6Network) -> Json:
    return {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}


def _match(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _iif(name: str, op: str = "==") -> Json:
    return _match(_meta("iifname"), name, op)


def _oif(name: str, op: str = "==") -> Json:
    return _match(_meta("oifname"), name, op)


def _ct(key: str, values: Sequence[str]) -> Json:
    return _match({"ct": {"key": key}}, list(values) if len(values) > 1 else values[0], "in")


def _nfproto(version: int) -> Json:
    return _match(_meta("nfproto"), "ipv4" if version == 4 else "ipv6")


_LOCAL_DADDR = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
_ACCEPT: Json = {"accept": None}
_DROP: Json = {"drop": None}
_MASQUERADE: Json = {"masquerade": None}


def _ip(version: int) -> str:
    return "ip" if version == 4 else "ip6"


def _addr_type(version: int) -> str:
    return "ipv4_addr" if version == 4 else "ipv6_addr"


# -- table contents -----------------------------------------------------------------------------

class _Batch:
    """The commands of one transaction, all on our table."""

    def __init__(self) -> None:
        self.commands: list[Json] = []

    def add(self, kind: str, **spec: Any) -> None:
        self.commands.append({"add": {kind: {"family": FAMILY, "table": TABLE, **spec}}})

    def chain(self, name: str, hook: str | None = None, kind: str = "filter",
              priority: int = 0) -> None:
        spec: Json = {"name": name}
        if hook:
            spec.update(type=kind, hook=hook, prio=priority, policy="accept")
        self.add("chain", **spec)

    def rule(self, chain: str, *expr: Json) -> None:
        self.add("rule", chain=chain, expr=list(expr))

    def address_set(self, name: str, version: int, members: Iterable[Any],
                    interval: bool = False) -> None:
        spec: Json = {"name": name, "type": _addr_type(version)}
        if interval:
            spec["flags"] = ["interval"]
            spec["auto-merge"] = True
        elements = list(members)
        if elements:
            spec["elem"] = elements
        self.add("set", **spec)


def _add_port_maps(batch: _Batch, config: FirewallConfig) -> list[int]:
    """Maps from (protocol, host port) to the instance's address (``dnat4_addr``) and to its
    port (``dnat4_port``), and the same for IPv6. (One map to address . port would do, but
    nft 1.0.6 cannot read such a map type back from JSON.) Returns the IP versions that
    publish anything."""
    versions = []
    for version in (4, 6):
        addresses: list[list[Any]] = []
        ports: list[list[Any]] = []
        for instance in config.instances:
            address = instance.ipv4 if version == 4 else instance.ipv6
            for mapping in instance.ports if address is not None else ():
                key = {"concat": [mapping.protocol, mapping.host_port]}
                addresses.append([key, str(address)])
                ports.append([key, mapping.guest_port])
        for suffix, data_type, elements in (("addr", _addr_type(version), addresses),
                                            ("port", "inet_service", ports)):
            spec: Json = {"name": f"dnat{version}_{suffix}",
                          "type": ["inet_proto", "inet_service"], "map": data_type}
            if elements:
                spec["elem"] = elements
            batch.add("map", **spec)
        if addresses:
            versions.append(version)
    return versions


def _dnat(version: int) -> Json:
    key = {"concat": [_meta("l4proto"), _payload("th", "dport")]}
    return {"dnat": {"family": _ip(version),
                     "addr": {"map": {"key": key, "data": f"@dnat{version}_addr"}},
                     "port": {"map": {"key": key, "data": f"@dnat{version}_port"}}}}


def _add_wake_sets(batch: _Batch, config: FirewallConfig) -> None:
    """The addresses and TCP host ports of sleeping instances."""
    sleeping = [i for i in config.instances if i.sleeping]
    batch.address_set("sleeping4", 4, (str(i.ipv4) for i in sleeping if i.ipv4))
    batch.address_set("sleeping6", 6, (str(i.ipv6) for i in sleeping if i.ipv6))
    ports = sorted({m.host_port for i in sleeping for m in i.ports if m.protocol == "tcp"})
    spec: Json = {"name": "wake_ports", "type": "inet_service"}
    if ports:
        spec["elem"] = ports
    batch.add("set", **spec)


def _add_wake_nat(batch: _Batch, config: FirewallConfig, chain: str) -> None:
    """New TCP connections to a sleeping instance, by its address or a published port, go to
    the wake listener on the bridge's address of the same IP version. The listener reads the
    original destination back (SO_ORIGINAL_DST) to know whom to wake."""
    tcp = _match(_meta("l4proto"), "tcp")
    listeners = ((4, gateway4(config.subnet4) if config.subnet4 else None),
                 (6, gateway6(config.subnet6) if config.subnet6 else None))
    for version, listener in listeners:
        if listener is None:
            continue
        to_listener: Json = {"dnat": {"family": _ip(version), "addr": str(listener),
                                      "port": WAKE_PORT}}
        batch.rule(chain, tcp, _match(_payload(_ip(version), "daddr"), f"@sleeping{version}"),
                   to_listener)
        loopback6 = ([_match(_payload("ip6", "daddr"), "::1", "!=")]
                     if version == 6 and chain == "output" else [])
        batch.rule(chain, _LOCAL_DADDR, _nfproto(version), *loopback6, tcp,
                   _match(_payload("tcp", "dport"), "@wake_ports"), to_listener)


def _add_nat(batch: _Batch, config: FirewallConfig, published: list[int]) -> None:
    bridge = config.bridge
    batch.chain("prerouting", "prerouting", "nat", -100)
    batch.chain("output", "output", "nat", -100)
    batch.chain("postrouting", "postrouting", "nat", 100)
    if config.sleeping:  # before the published ports: asleep, these win
        for chain in ("prerouting", "output"):
            _add_wake_nat(batch, config, chain)
    for version in published:
        batch.rule("prerouting", _LOCAL_DADDR, _nfproto(version), _dnat(version))
        # From the host itself; IPv6 ::1 cannot leave the loopback, so it is left alone.
        loopback6 = [] if version == 4 else [_match(_payload("ip6", "daddr"), "::1", "!=")]
        batch.rule("output", _LOCAL_DADDR, _nfproto(version), *loopback6, _dnat(version))
    if 4 in published:
        batch.rule("postrouting", _oif(bridge), _match(_payload("ip", "saddr"),
                                                       _prefix(LOOPBACK4)), _MASQUERADE)
    for version, subnet in ((4, config.subnet4), (6, config.subnet6)):
        if subnet is None:
            continue
        saddr = _match(_payload(_ip(version), "saddr"), _prefix(subnet))
        if version in published:
            # Hairpin: an instance reaching another through a published port on the host must
            # see the answer come back through the host.
            batch.rule("postrouting", _oif(bridge), saddr,
                       _match({"ct": {"key": "status"}}, "dnat", "in"), _MASQUERADE)
        leaving = [_oif(config.uplink)] if config.uplink else [_oif(bridge, "!=")]
        daddr = _payload(_ip(version), "daddr")
        exempt = (_match(daddr, f"@peers{version}", "!=") if version == 4
                  else _match(daddr, _prefix(ULA_SPACE), "!="))
        batch.rule("postrouting", saddr, *leaving, exempt, _MASQUERADE)


def _add_forward(batch: _Batch, config: FirewallConfig) -> None:
    bridge = config.bridge
    batch.chain("forward", "forward", "filter", 0)
    batch.rule("forward", _iif(bridge), _oif(bridge), _ACCEPT)
    batch.rule("forward", _oif(bridge), _ct("state", ["established", "related"]), _ACCEPT)
    batch.rule("forward", _oif(bridge), _match({"ct": {"key": "status"}}, "dnat", "in"), _ACCEPT)
    for version in (4, 6):
        batch.rule("forward", _oif(bridge),
                   _match(_payload(_ip(version), "saddr"), f"@peers{version}"), _ACCEPT)
    batch.rule("forward", _oif(bridge), _DROP)
    if config.uplink:
        batch.rule("forward", _iif(bridge), _oif(config.uplink), _ACCEPT)
        batch.rule("forward", _iif(bridge), _DROP)
    else:
        batch.rule("forward", _iif(bridge), _ACCEPT)


def _add_input(batch: _Batch, config: FirewallConfig) -> None:
    batch.chain("input", "input", "filter", 0)
    batch.chain("instance_to_host")
    if config.sleeping:  # the wake listener answers only connections our DNAT sent it
        wake = [_match(_meta("l4proto"), "tcp"), _match(_payload("tcp", "dport"), WAKE_PORT)]
        batch.rule("input", *wake, _match({"ct": {"key": "status"}}, "dnat", "in"), _ACCEPT)
        batch.rule("input", *wake, _DROP)
    batch.rule("input", _iif(config.bridge), {"jump": {"target": "instance_to_host"}})
    chain = "instance_to_host"
    batch.rule(chain, _ct("state", ["established", "related"]), _ACCEPT)
    batch.rule(chain, _match(_meta("l4proto"), {"set": ["tcp", "udp"]}),
               _match(_payload("th", "dport"), DNS_PORT), _ACCEPT)
    batch.rule(chain, _match(_meta("l4proto"), {"set": ["icmp", "ipv6-icmp"]}), _ACCEPT)
    for protocol, port in config.host_services:
        batch.rule(chain, _match(_meta("l4proto"), protocol),
                   _match(_payload("th", "dport"), port), _ACCEPT)
    for version in (4, 6):
        batch.rule(chain, _match(_payload(_ip(version), "saddr"), f"@host_allowed{version}"),
                   _ACCEPT)
    batch.rule(chain, _DROP)


def render_ruleset(config: FirewallConfig) -> Json:
    """The whole transaction as nftables JSON: replace ``inet homecloud`` with ``config``."""
    config.validate()
    batch = _Batch()
    batch.commands.extend(removal()["nftables"])
    batch.commands.append({"add": {"table": {"family": FAMILY, "name": TABLE}}})
    for version in (4, 6):
        batch.address_set(f"peers{version}", version,
                          (_prefix(p) for p in config.peers if p.version == version),
                          interval=True)
        allowed = (i.ipv4 if version == 4 else i.ipv6 for i in config.instances if i.allow_host)
        batch.address_set(f"host_allowed{version}", version, (str(a) for a in allowed if a))
    if config.sleeping:
        _add_wake_sets(batch, config)
    published = _add_port_maps(batch, config)
    _add_nat(batch, config, published)
    _add_forward(batch, config)
    _add_input(batch, config)
    return {"nftables": batch.commands}


def removal() -> Json:
    """The transaction that removes our table, whether or not it exists."""
    table = {"family": FAMILY, "name": TABLE}
    return {"nftables": [{"add": {"table": table}}, {"delete": {"table": table}}]}


# -- applying -----------------------------------------------------------------------------------

def _nft(args: Sequence[str], stdin: str | None = None, netns: str | None = None,
         check: bool = True) -> ToolResult:
    argv = [NFT, *args]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    result = run_tool(argv, input=stdin, package="nftables")
    if check and not result.ok:
        raise HostError(f"nftables refused homecloud's ruleset: {result.first_error_line()}")
    return result


def apply(document: Json, *, netns: str | None = None) -> None:
    """Run one nft transaction (a ``render_ruleset`` or ``removal`` document), atomically."""
    _nft(["-j", "-f", "-"], json.dumps(document), netns)


def apply_ruleset(config: FirewallConfig, *, netns: str | None = None) -> None:
    apply(render_ruleset(config), netns=netns)


def remove_ruleset(*, netns: str | None = None) -> None:
    apply(removal(), netns=netns)


def list_table(*, netns: str | None = None) -> list[Json] | None:
    """Our table as ``nft -j list table`` shows it, or None when there is none."""
    result = _nft(["-j", "list", "table", FAMILY, TABLE], netns=netns, check=False)
    if result.returncode != 0:
        if "No such file or directory" in result.stderr:
            return None
        raise HostError(f"cannot list nftables table {FAMILY} {TABLE}: "
                        f"{result.stderr.strip()}")
    return list(json.loads(result.stdout)["nftables"])
