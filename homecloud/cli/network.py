"""`hc network ls`, `hc dns ls`: the instance network and the names homecloud serves."""

from __future__ import annotations

import argparse

from homecloud.cli.lazy import api, print_json, print_table
from homecloud.cli.parsers import listing_command

# `typing` costs `hc` milliseconds at start-up; only the type checker reads it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any) -> None:
    for area, help, listing, run in (
            ("network", "the instance network",
             "bridge, subnets, gateways and each instance's addresses and ports", list_network),
            ("dns", "the names homecloud's DNS serves",
             "every record served (forward and reverse zones)", list_records)):
        parser = commands.add_parser(area, help=help)
        actions = parser.add_subparsers(dest="action", metavar="ACTION")
        actions.required = True
        listing_command(actions, "ls", run, help=listing)


def list_network(args: argparse.Namespace) -> int:
    data = api().call("GET", "/v1/network")
    if args.json:
        print_json(data)
        return 0
    if data.get("error"):
        print(f"bridge {data['bridge']}: not set up: {data['error']}")
        return 0
    print(f"bridge {data['bridge']}  gateway {data['gateway4']} {data['gateway6']}  "
          f"subnets {data['subnet4']} {data['subnet6']}  names *.{data['zone']}")
    for peer in data.get("peers", ()):
        print(f"peer {peer['name']} ({peer['role']})  zone {peer['zone']}  dns "
              f"{' '.join(peer['dns']) or '-'}  subnets {' '.join(peer['subnets']) or '-'}  "
              f"via {' '.join(peer['via']) or '-'}")
    if data.get("routes_error"):
        print(f"routes to peers: {data['routes_error']}")
    rows = [[i["name"], i["ipv4"], i["ipv6"], ", ".join(i["ports"]) or "-"]
            for i in data["instances"]]
    print_table(rows, ["NAME", "IPV4", "IPV6", "PORTS"])
    return 0


def list_records(args: argparse.Namespace) -> int:
    records = api().call("GET", "/v1/dns")
    if args.json:
        print_json(records)
        return 0
    print_table([[r["name"], str(r["ttl"]), r["type"], r["data"]] for r in records],
                ["NAME", "TTL", "TYPE", "DATA"])
    return 0
