"""The agent's network service: sets the host side up at start and gives each instance its
addresses, namespace (a container) or tap (a VM), DNS name and firewall rules (the creation
steps in homecloud/instances/network_steps.py call it), and takes them back on removal.

The record (leases and ports, records.py) is the truth; the kernel's links and the firewall and
DNS zone are rebuilt from it. Rebuilds are whole (one nft transaction, one zone file) and
coalesced: instances created together share one rebuild.

When the configuration cannot be applied (a bad bridge name, a subnet overlapping a route) the
agent still starts: everything that needs the network fails with that one-line error, and
`hc doctor` shows it.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from homecloud.config import NetworkConfig
from homecloud.dns import DNS_UNIT
from homecloud.dns.config import CONFIG_PATH, DnsConfig
from homecloud.errors import HomecloudError, HostError, UserError
from homecloud.network import firewall
from homecloud.network.coalesce import Coalesced
from homecloud.network.dns_publish import ZoneFile, wait_served
from homecloud.network.dns_zone import dns_config, zone_records
from homecloud.network.guest import (
    plumb_instance,
    remove_stray_parts,
    stray_parts,
    unplumb_instance,
)
from homecloud.network.hostports import check_host_port_free
from homecloud.network.links import ensure_bridge, link_exists
from homecloud.network.peers import (
    PeerRoute,
    check_instance_names,
    check_overlaps,
    peer_routes,
)
from homecloud.network.plan import (
    InstanceAddresses,
    NetworkPlan,
    validate_bridge,
    validate_names,
)
from homecloud.network.ports import (
    PortMapping,
    check_not_published,
    check_unique,
)
from homecloud.network.records import Member, NetworkRecords
from homecloud.network.resolved import register_bridge
from homecloud.network.routes import Route, read_routes
from homecloud.network.routing import ROUTE_PROTOCOL, sync_routes
from homecloud.network.subnets import decide_subnets
from homecloud.network.sysctl import enable_forwarding, enable_route_localnet
from homecloud.network.taps import plumb_tap, stray_taps, unplumb_tap
from homecloud.state.store import Store
from homecloud.systemd.transient import Systemd

log = logging.getLogger(__name__)

SYS_NET = Path("/sys/class/net")
# How long a creation waits for hc-dns to serve its name; after a miss (hc-dns down), only a
# glance, so a broken DNS server costs `hc run` nothing noticeable (`hc doctor` reports it).
DNS_WAIT = 2.0
DNS_WAIT_AFTER_MISS = 0.05


class NetworkService:
    def __init__(self, config: NetworkConfig, store: Store, systemd: Systemd | None, *,
                 zone_path: Path = CONFIG_PATH,
                 host_name: Callable[[], str] = socket.gethostname) -> None:
        self.config = config
        self.records = NetworkRecords(store)
        self.systemd = systemd
        self.zone = ZoneFile(zone_path)
        self._host_name = host_name
        self._plan: NetworkPlan | None = None
        self.error: HomecloudError | None = HomecloudError("the network is not set up yet")
        self.dns_served = True  # whether hc-dns served the last zone written
        self.routes_error: str | None = None  # why routes to peer hosts are missing
        self._hidden: set[str] = set()  # being removed: no longer published
        self._applied: dict[str, Any] | None = None  # the last ruleset nft took
        self._lock = threading.Lock()
        self._bridge_lock = threading.Lock()
        self.refresh_firewall = Coalesced(self._apply_firewall)
        # Which instances sleep (--idle, stopped): their connections go to the wake listener.
        # The instance manager answers; until it is wired, none.
        self.sleeping: Callable[[], set[str]] = set
        # Host services instances may reach besides DNS ((protocol, port)): network boot
        # answers while it serves on the bridge; until it is wired, none.
        self.host_services: Callable[[], tuple[tuple[str, int], ...]] = tuple
        self.refresh_dns = Coalesced(self._publish_dns)

    # -- the host side --------------------------------------------------------------------------
    def start(self) -> NetworkPlan | None:
        """Set the host up (idempotent); on failure, remember the one-line error and return
        None: the agent runs on, without networking."""
        try:
            self._plan = self._decide()
            self._ensure_host(self._plan)
            self.refresh_firewall()
            self.error = None
        except HomecloudError as exc:
            self._plan, self.error = None, exc
            log.error("network: %s", exc.message)
            self._route_to_peers(())  # none of an earlier configuration's routes stay
            return None
        except Exception as exc:  # the kernel refused something (netlink, /proc/sys)
            log.exception("network: set-up failed")
            self._plan = None
            self.error = HostError(f"cannot set up the network: {type(exc).__name__}: {exc}")
            self._route_to_peers(())
            return None
        self._ensure_dns_server()
        self.refresh_dns_quietly()
        return self._plan

    def _ensure_dns_server(self) -> None:
        """hc-dns runs on its own (it keeps answering while the agent restarts); start it if
        someone stopped it. Without it, names do not resolve, but instances still work."""
        if self.systemd is None:
            return
        try:
            self.systemd.start_unit(DNS_UNIT)
        except HomecloudError as exc:
            log.warning("network: cannot start %s: %s", DNS_UNIT, exc.message)

    def _decide(self) -> NetworkPlan:
        bridge = validate_bridge(self.config)
        names = validate_names(self.config, self._host_name())
        # Our routes to peers are remade from the configuration below; when we choose a
        # subnet, the peers' subnets count as taken, routed yet or not.
        taken = [r for r in read_routes() if r.protocol != ROUTE_PROTOCOL]
        if self.config.subnet4 is None:
            taken += [Route(s) for s in names.peer_subnets]
        subnets = decide_subnets(bridge, names.host, self.config.subnet4,
                                 self.records.stored_subnets(bridge), taken,
                                 self.records.leases_in)
        check_overlaps(names.peers, (subnets.subnet4, subnets.subnet6.supernet(new_prefix=48)))
        check_instance_names(names.peers, self.records.holders())
        self.records.save_subnets(bridge, subnets)
        return NetworkPlan(bridge, subnets.subnet4, subnets.subnet6, names)

    def _ensure_host(self, plan: NetworkPlan) -> None:
        changed = enable_forwarding()
        if changed:
            log.info("network: enabled %s", ", ".join(changed))
        ensure_bridge(plan.bridge, plan.bridge_interfaces)
        # Connections from the host to 127.0.0.1:PORT reach published ports.
        enable_route_localnet(plan.bridge)
        register_bridge(plan, None if self.systemd is None else self.systemd.bus)
        self._route_to_peers(peer_routes(plan.names.peers))
        self._applied = None  # apply the firewall again, whatever was there

    def _route_to_peers(self, routes: Sequence[PeerRoute]) -> None:
        """Make our routes to peer hosts exactly ``routes``. A next hop not reachable yet (the
        uplink comes up later) is a warning, not a network down: `hc doctor` shows it, and
        the next instance creation tries again."""
        try:
            for change in sync_routes(routes):
                log.info("network: %s", change)
            self.routes_error = None
        except HomecloudError as exc:
            log.warning("network: %s", exc.message)
            self.routes_error = exc.message

    @property
    def plan(self) -> NetworkPlan:
        """The network as set up; the start error (one line) if it could not be."""
        if self._plan is None:
            assert self.error is not None
            raise self.error
        return self._plan

    def ensure_bridge(self) -> None:
        """Re-create the bridge if someone removed it, and plug every instance back in."""
        plan = self.plan
        if self.routes_error is not None:
            self._route_to_peers(peer_routes(plan.names.peers))
        if (SYS_NET / plan.bridge).exists():
            return
        with self._bridge_lock:
            if link_exists(plan.bridge):
                return
            log.warning("network: bridge %s is gone: making it again", plan.bridge)
            self._ensure_host(plan)
            for member in self.members():
                plumb_instance(plan, member.name, member.addresses)

    # -- instances ------------------------------------------------------------------------------
    def check_ports(self, instance: str, ports: Sequence[PortMapping]) -> None:
        """Refuse, before anything is made, a name a child host has, and host ports given
        twice, published by another instance or in use on the host."""
        check_instance_names(self.plan.names.peers, [instance])  # no network: why, first
        check_unique(ports)
        check_not_published(instance, ports, self.records.published())
        for mapping in ports:
            check_host_port_free(mapping)

    def allocate(self, instance: str, ports: Sequence[PortMapping] = ()) -> InstanceAddresses:
        return self.records.allocate(self.plan, instance, ports)

    def release(self, instance: str) -> None:
        """Give the address and ports back, and make sure nothing publishes them any more (a
        rebuild for another instance may have, meanwhile). A rebuild that changes nothing
        (an instance with no port that did not sleep) runs no nft; an instance that held
        nothing (`--network none`, or released already) is in no rebuild, so none is made."""
        held = self.records.release(instance)
        with self._lock:
            self._hidden.discard(instance)
        if held and self._plan is not None:
            self.refresh_firewall()
            self.refresh_dns_quietly()

    def addresses(self, instance: str) -> InstanceAddresses | None:
        if self._plan is None:
            return None
        return self.records.addresses(self._plan, instance)

    def plumb(self, instance: str, addresses: InstanceAddresses) -> None:
        self.ensure_bridge()
        plumb_instance(self.plan, instance, addresses)

    def replumb(self, instance: str) -> bool:
        """Make the namespace of an instance that has an address again (after a reboot,
        before starting it); False if it has none."""
        addresses = self.records.addresses(self.plan, instance)
        if addresses is None:
            return False
        self.plumb(instance, addresses)
        return True

    def unplumb(self, instance: str) -> None:
        unplumb_instance(instance)

    def plumb_tap(self, instance: str, addresses: InstanceAddresses) -> str:
        """A VM's tap on the bridge; its name."""
        self.ensure_bridge()
        return plumb_tap(self.plan, instance, addresses)

    def replumb_tap(self, instance: str) -> bool:
        """Make the tap of a VM that has an address again (after a reboot, before starting
        it); False if it has none."""
        addresses = self.records.addresses(self.plan, instance)
        if addresses is None:
            return False
        self.plumb_tap(instance, addresses)
        return True

    def unplumb_tap(self, instance: str) -> None:
        unplumb_tap(instance)

    def hide(self, instance: str) -> None:
        """Leave ``instance`` out of the next rebuilds (its steps are being undone)."""
        with self._lock:
            self._hidden.add(instance)

    def detach(self, instance: str) -> None:
        """Everything of the instance's network gone: rules, DNS name, address, links."""
        self.hide(instance)
        self.release(instance)
        unplumb_instance(instance)
        unplumb_tap(instance)

    def members(self) -> list[Member]:
        if self._plan is None:
            return []
        with self._lock:
            hidden = set(self._hidden)
        return [m for m in self.records.members(self._plan) if m.name not in hidden]

    def cleanup(self, instances: set[str]) -> list[str]:
        """Remove what belongs to no instance in ``instances``: leases and ports, namespaces
        and links a crash left behind. Returns what was removed."""
        removed = []
        for name in sorted(self.records.holders() - instances):
            self.records.release(name)
            removed.append(f"address of {name}")
        namespaces, links = stray_parts(instances)
        links += stray_taps(instances)
        remove_stray_parts(namespaces, links)
        removed += [f"netns {n}" for n in namespaces] + [f"link {n}" for n in links]
        if removed and self._plan is not None:
            self.refresh_firewall()
            self.refresh_dns_quietly()
        return removed

    # -- rebuilds -------------------------------------------------------------------------------
    def firewall_config(self) -> firewall.FirewallConfig:
        plan = self.plan
        sleeping = self.sleeping()
        return firewall.FirewallConfig(
            bridge=plan.bridge, subnet4=plan.subnet4, subnet6=plan.subnet6,
            peers=plan.names.peer_subnets, host_services=self.host_services(),
            instances=tuple(firewall.InstanceFirewall(m.name, m.addresses.ipv4,
                                                      m.addresses.ipv6, m.ports,
                                                      sleeping=m.name in sleeping)
                            for m in self.members()))

    def _apply_firewall(self) -> None:
        """Replace our table, unless it would not change: an instance that publishes no port
        adds nothing to it (its rules are the subnet's), so most creations and removals cost
        no nft run. The first rebuild after the agent starts always applies."""
        document = firewall.render_ruleset(self.firewall_config())
        if document == self._applied:
            return
        firewall.apply(document)
        self._applied = document

    def dns_config(self) -> DnsConfig:
        return dns_config(self.plan, self.members())

    def _publish_dns(self) -> None:
        written = self.zone.write(self.dns_config())
        if written is None or self.systemd is None:
            return
        if not self.systemd.signal_unit(DNS_UNIT, signal.SIGHUP):
            self.systemd.start_unit(DNS_UNIT)  # it reads the file as it starts
        served = wait_served(written, DNS_WAIT if self.dns_served else DNS_WAIT_AFTER_MISS)
        if not served and self.dns_served:
            log.warning("network: %s does not serve zone serial %d; see `hc doctor`",
                        DNS_UNIT, written.zone.serial)
        self.dns_served = served

    def refresh_dns_quietly(self) -> None:
        """A name that cannot be published is reported, not fatal: the instance works."""
        try:
            self.refresh_dns()
        except HomecloudError as exc:
            log.warning("network: DNS not updated: %s", exc.message)

    # -- what `hc network ls` and `hc dns ls` show ----------------------------------------------
    def describe(self) -> dict[str, Any]:
        if self._plan is None:
            return {"bridge": self.config.bridge, "error": self.error.message if self.error
                    else None, "instances": []}
        plan = self._plan
        return {
            "bridge": plan.bridge, "subnet4": str(plan.subnet4), "subnet6": str(plan.subnet6),
            "gateway4": str(plan.gateway4), "gateway6": str(plan.gateway6),
            "host": plan.names.host, "domain": plan.names.domain, "zone": plan.names.origin,
            "error": None,
            "peers": [{"name": p.name, "role": p.role, "zone": p.zone,
                       "dns": [str(a) for a in p.servers], "via": [str(a) for a in p.via],
                       "subnets": [str(n) for n in p.subnets]} for p in plan.names.peers],
            "routes_error": self.routes_error,
            "instances": [{"name": m.name, "ipv4": str(m.addresses.ipv4),
                           "ipv6": str(m.addresses.ipv6), "fqdn": plan.fqdn(m.name),
                           "ports": [str(p) for p in m.ports]} for m in self.members()],
        }

    def dns_records(self) -> list[dict[str, Any]]:
        current = self.zone.current()
        if current is None:
            raise UserError("no DNS zone is published yet: see `hc doctor`")
        return zone_records(current.zone)
