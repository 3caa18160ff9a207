"""The network's share of the state database: each bridge's subnets, the instances' IPv4 leases
and published ports. Every change runs in one ``BEGIN IMMEDIATE`` transaction of the store:
the host-level lock that keeps two creations from taking the same address or port.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network

from homecloud.network.leases import LEASES_DDL, LeaseTable
from homecloud.network.plan import InstanceAddresses, NetworkPlan
from homecloud.network.ports import PortMapping
from homecloud.network.published import PORTS_DDL, PortTable
from homecloud.network.subnets import NETWORKS_DDL, NetworkTable, Subnets
from homecloud.state.store import Schema, Store

# The subnets chosen for each bridge (so they survive a restart), the IPv4 address each
# instance holds and the host ports it publishes (the primary key keeps a host port to one
# instance).
SCHEMA = Schema("network", (NETWORKS_DDL + LEASES_DDL + PORTS_DDL,))


@dataclass(frozen=True)
class Member:
    """An instance on the network: its addresses and published ports."""

    name: str
    addresses: InstanceAddresses
    ports: tuple[PortMapping, ...] = ()


class NetworkRecords:
    def __init__(self, store: Store) -> None:
        store.require(SCHEMA)
        self.store = store

    def stored_subnets(self, bridge: str) -> Subnets | None:
        with self.store.transaction() as db:
            return NetworkTable(db).get(bridge)

    def save_subnets(self, bridge: str, subnets: Subnets) -> None:
        with self.store.transaction() as db:
            NetworkTable(db).put(bridge, subnets)

    def leases_in(self, subnet: IPv4Network) -> int:
        return len(self.store.query("SELECT 1 FROM leases WHERE subnet = ?", (str(subnet),)))

    def allocate(self, plan: NetworkPlan, instance: str,
                 ports: Iterable[PortMapping] = ()) -> InstanceAddresses:
        """Lease the instance an IPv4 address (the one it has, if any) and record its ports;
        Conflict, with nothing recorded, for a host port another instance publishes."""
        with self.store.transaction() as db:
            PortTable(db).publish(instance, ports)
            ipv4 = LeaseTable(db).allocate(plan.subnet4, instance)
        return plan.addresses(instance, ipv4)

    def release(self, instance: str) -> int:
        """Drop the instance's lease and ports; returns how many of those it held."""
        with self.store.transaction() as db:
            return LeaseTable(db).release(instance) + PortTable(db).withdraw(instance)

    def addresses(self, plan: NetworkPlan, instance: str) -> InstanceAddresses | None:
        with self.store.transaction() as db:
            ipv4 = LeaseTable(db).get(plan.subnet4, instance)
        return plan.addresses(instance, ipv4) if ipv4 is not None else None

    def published(self) -> dict[str, tuple[PortMapping, ...]]:
        with self.store.transaction() as db:
            return PortTable(db).published()

    def members(self, plan: NetworkPlan) -> list[Member]:
        """Every instance holding an address on ``plan``'s bridge, by name."""
        with self.store.transaction() as db:
            leases = LeaseTable(db).leases(plan.subnet4)
            ports = PortTable(db).published()
        return [Member(name, plan.addresses(name, ipv4), ports.get(name, ()))
                for name, ipv4 in sorted(leases.items())]

    def holders(self) -> set[str]:
        """Every instance holding a lease or a port, on any bridge."""
        rows = self.store.query("SELECT instance FROM leases UNION SELECT instance FROM ports")
        return {row[0] for row in rows}
