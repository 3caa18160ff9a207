"""The network state of a dev host as the system tests compare it: a failed or removed instance
(or one with `--network none`) must leave namespaces, links, leases, ports, firewall rules and
DNS records as they were."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from homecloud.devhost import DevHost

STATE_DB = "/var/lib/homecloud/state.db"


def sql(host: DevHost, query: str) -> list[list[Any]]:
    code = (f"import json, sqlite3; db = sqlite3.connect({STATE_DB!r}); "
            f"rows = db.execute({query!r}).fetchall(); db.commit(); print(json.dumps(rows))")
    return list(json.loads(host.run("python3", "-c", code).stdout))


@dataclass(frozen=True)
class NetworkState:
    """Everything of the network a failed command must leave as it was."""

    namespaces: frozenset[str]
    links: frozenset[str]
    leases: frozenset[tuple[Any, ...]]
    ports: frozenset[tuple[Any, ...]]
    rules: str
    records: str


def network_state(host: DevHost) -> NetworkState:
    links = json.loads(host.run("ip", "-j", "link", "show").stdout)
    table = json.loads(host.run("nft", "-j", "list", "table", "inet", "homecloud").stdout)
    rules = [item for item in table["nftables"] if "metainfo" not in item]
    for item in rules:  # handles change when the table is replaced; contents must not
        next(iter(item.values())).pop("handle", None)
    records = [{k: v for k, v in r.items() if k != "data" or r["type"] != "SOA"}
               for r in host.hc("dns", "ls", json=True)]
    return NetworkState(
        namespaces=frozenset(line.split()[0] for line in  # "hc-web (id: 1)"
                             host.run("ip", "netns", "list").stdout.splitlines() if line),
        links=frozenset(link["ifname"] for link in links),
        leases=frozenset(tuple(r) for r in sql(host, "SELECT subnet, address, instance "
                                                     "FROM leases")),
        ports=frozenset(tuple(r) for r in sql(host, "SELECT * FROM ports")),
        rules=json.dumps(rules, sort_keys=True),
        records=json.dumps(sorted(records, key=json.dumps), sort_keys=True))


@contextmanager
def unchanged_network(host: DevHost) -> Iterator[None]:
    before = network_state(host)
    yield
    assert network_state(host) == before
