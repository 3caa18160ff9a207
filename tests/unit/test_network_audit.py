"""Finding other firewalls that drop forwarded traffic, from `nft -j list ruleset`."""

from __future__ import annotations

from typing import Any

from homecloud.network.audit import ForwardBlocker, forward_blockers


def chain(family: str, table: str, name: str, hook: str = "forward",
          policy: str = "drop") -> dict[str, Any]:
    return {"chain": {"family": family, "table": table, "name": name, "hook": hook,
                      "policy": policy, "type": "filter", "prio": 0}}


def accept(family: str, table: str, name: str, key: str, bridge: str = "hc0") -> dict[str, Any]:
    return {"rule": {"family": family, "table": table, "chain": name, "expr": [
        {"match": {"op": "==", "left": {"meta": {"key": key}}, "right": bridge}},
        {"accept": None}]}}


def test_dockers_forward_policy_is_found() -> None:
    ruleset = [{"metainfo": {}}, chain("ip", "filter", "FORWARD"),
               chain("inet", "homecloud", "forward", policy="accept"),
               chain("ip", "filter", "INPUT", hook="input")]
    assert forward_blockers(ruleset, "hc0") == [ForwardBlocker("ip", "filter", "FORWARD")]
    fix = ForwardBlocker("ip", "filter", "FORWARD").fix("hc0")
    assert "nft insert rule ip filter FORWARD iifname hc0 accept" in fix
    assert "iptables -I DOCKER-USER -o hc0 -j ACCEPT" in fix


def test_a_drop_chain_that_lets_the_bridge_through_both_ways_is_fine() -> None:
    base = [chain("ip", "filter", "FORWARD"), accept("ip", "filter", "FORWARD", "iifname")]
    assert forward_blockers(base, "hc0")  # only one way
    both = [*base, accept("ip", "filter", "FORWARD", "oifname")]
    assert forward_blockers(both, "hc0") == []
    assert forward_blockers(both, "br-other") == [ForwardBlocker("ip", "filter", "FORWARD")]


def test_our_own_table_and_accepting_chains_are_not_blockers() -> None:
    ruleset = [chain("inet", "homecloud", "forward"), chain("ip6", "x", "fw", policy="accept")]
    assert forward_blockers(ruleset, "hc0") == []
