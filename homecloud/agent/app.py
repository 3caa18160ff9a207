"""The agent's parts wired together: config, state, pool and the services built on them."""

from __future__ import annotations

from dataclasses import dataclass, field

from homecloud.agent.busy import BusyNames
from homecloud.config import Config
from homecloud.errors import HomecloudError, NotFound
from homecloud.frontdoor.service import FrontdoorService
from homecloud.images.catalog import ImageCatalog
from homecloud.instances.manager import InstanceManager
from homecloud.network.service import NetworkService
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
        self.instances = InstanceManager(self.store, self.pool, self.images, self.bus,
                                         network=self.network,
                                         drivers=self.config.instances.drivers)
        self.frontdoor = FrontdoorService(self.config, self.store, Systemd(self.bus),
                                          self._address_of, self._instance_exists)

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
