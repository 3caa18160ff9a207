"""The agent's parts wired together: config, state, pool and the services built on them."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from functools import cached_property

from homecloud.agent.busy import BusyNames
from homecloud.config import Config
from homecloud.errors import HomecloudError, NotFound
from homecloud.frontdoor.service import FrontdoorService
from homecloud.images.catalog import ImageCatalog
from homecloud.instances.manager import InstanceManager
from homecloud.machines.installer.build import ensure_installer
from homecloud.network.service import NetworkService
from homecloud.provision.dhcp_probe import other_dhcp_server
from homecloud.provision.service import MachineService
from homecloud.snapshots.policies import PolicyService, policy_service
from homecloud.snapshots.records import SnapshotRecords
from homecloud.snapshots.replication import Replicator
from homecloud.snapshots.service import SnapshotService
from homecloud.state.store import Store
from homecloud.storage.base import StorageDriver
from homecloud.systemd.bus import SystemBus
from homecloud.systemd.transient import Systemd


@dataclass
class Agent:
    config: Config
    store: Store
    pool: StorageDriver
    bus: SystemBus = field(default_factory=SystemBus)
    images: ImageCatalog = field(init=False)
    instances: InstanceManager = field(init=False)
    network: NetworkService = field(init=False)
    frontdoor: FrontdoorService = field(init=False)
    busy_images: BusyNames = field(default_factory=lambda: BusyNames("image"))
    busy_instances: BusyNames = field(default_factory=lambda: BusyNames("instance"))

    def __post_init__(self) -> None:
        self.images = ImageCatalog(self.store, self.pool)
        self.network = NetworkService(self.config.network, self.store, Systemd(self.bus))
        # The door first: a lambda instance's driver adds its route there.
        self.frontdoor = FrontdoorService(self.config, self.store, Systemd(self.bus),
                                          self._address_of, self._instance_exists)
        self.instances = InstanceManager(self.store, self.pool, self.images, self.bus,
                                         network=self.network,
                                         drivers=self.config.instances.drivers,
                                         frontdoor=self.frontdoor)

    # Bare-metal machines: made by reconcile at start (it opens the bridge's firewall for
    # network boot while that serves).
    @cached_property
    def machines(self) -> MachineService:
        return MachineService(self.instances, Systemd(self.bus), other_dhcp_server,
                              ensure_installer)

    # Snapshots, their policies and replication: made on first use (routes are built before).
    @cached_property
    def snapshot_records(self) -> SnapshotRecords:
        return SnapshotRecords(self.store)

    @cached_property
    def snapshots(self) -> SnapshotService:
        return SnapshotService(self.pool, self.instances, self.snapshot_records)

    @cached_property
    def replicator(self) -> Replicator:
        host = self.config.network.host_name or socket.gethostname()
        return Replicator(self.snapshots, self.snapshot_records, host.split(".")[0].lower())

    @cached_property
    def policies(self) -> PolicyService:
        return policy_service(self.snapshots, self.store, Systemd(self.bus), self.replicator.send,
                              self.config.snapshots)

    def _address_of(self, instance: str) -> str | None:
        try:
            addresses = self.network.addresses(instance)
        except HomecloudError:  # no network set up: the route answers 502 until there is
            return None
        return str(addresses.ipv4) if addresses is not None else None

    def _instance_exists(self, instance: str) -> bool:
        try:
            self.instances.get(instance)
        except NotFound:
            return False
        return True
