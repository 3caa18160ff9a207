"""Other firewalls that stop instance traffic.

nftables runs every base chain on a hook: a packet our table accepts is still dropped by
another table's forward chain whose policy is drop, which is what Docker (and `iptables -P
FORWARD DROP` through iptables-nft) sets up. ``forward_blockers`` finds such chains in
``nft -j list ruleset``, unless they already let the bridge through both ways.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from homecloud.errors import HostError
from homecloud.network.firewall import FAMILY, NFT, TABLE
from homecloud.tools import run_tool

Json = dict[str, Any]


@dataclass(frozen=True)
class ForwardBlocker:
    family: str
    table: str
    chain: str

    def __str__(self) -> str:
        return f"table {self.family} {self.table} chain {self.chain}"

    def fix(self, bridge: str) -> str:
        where = f"{self.family} {self.table} {self.chain}"
        nft = (f"`nft insert rule {where} iifname {bridge} accept` and "
               f"`nft insert rule {where} oifname {bridge} accept`")
        if self.table == "filter" and self.chain == "FORWARD":
            return (f"{nft} (with Docker: `iptables -I DOCKER-USER -i {bridge} -j ACCEPT` and "
                    f"`iptables -I DOCKER-USER -o {bridge} -j ACCEPT`)")
        return nft


def _lets_through(rule: Json, key: str, bridge: str) -> bool:
    """Whether ``rule`` accepts packets whose ``key`` (iifname/oifname) is the bridge."""
    exprs = rule.get("expr", [])
    accepts = any("accept" in expr for expr in exprs)
    matches = any(expr.get("match", {}).get("left") == {"meta": {"key": key}}
                  and expr["match"].get("right") == bridge
                  and expr["match"].get("op", "==") in ("==", "in")
                  for expr in exprs)
    return accepts and matches


def forward_blockers(ruleset: Iterable[Json], bridge: str) -> list[ForwardBlocker]:
    """Forward chains of other tables with policy drop that do not accept the bridge both
    ways (``ruleset``: the items of ``nft -j list ruleset``)."""
    items = list(ruleset)
    chains: dict[tuple[str, str, str], ForwardBlocker] = {}
    for item in items:
        chain = item.get("chain")
        if not chain or chain.get("hook") != "forward" or chain.get("policy") != "drop":
            continue
        if (chain["family"], chain["table"]) == (FAMILY, TABLE):
            continue
        key = (chain["family"], chain["table"], chain["name"])
        chains[key] = ForwardBlocker(*key)
    opened: dict[tuple[str, str, str], set[str]] = {}
    for item in items:
        rule = item.get("rule")
        if not rule:
            continue
        key = (rule["family"], rule["table"], rule["chain"])
        if key in chains:
            for direction in ("iifname", "oifname"):
                if _lets_through(rule, direction, bridge):
                    opened.setdefault(key, set()).add(direction)
    return [blocker for key, blocker in chains.items()
            if opened.get(key) != {"iifname", "oifname"}]


def read_ruleset() -> list[Json]:
    """Every table, chain and rule nftables has, as JSON items."""
    result = run_tool([NFT, "-j", "list", "ruleset"], timeout=30, package="nftables")
    if not result.ok:
        raise HostError(f"cannot list the nftables ruleset: {result.stderr.strip()}")
    return list(json.loads(result.stdout or '{"nftables": []}')["nftables"])
