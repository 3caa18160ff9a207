"""The agent's parts wired together: config, state, pool and the services built on them."""

from __future__ import annotations

from dataclasses import dataclass, field

from homecloud.agent.busy import BusyNames
from homecloud.config import Config
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
    busy_images: BusyNames = field(default_factory=lambda: BusyNames("image"))
    busy_instances: BusyNames = field(default_factory=lambda: BusyNames("instance"))

    def __post_init__(self) -> None:
        self.images = ImageCatalog(self.store, self.pool)
        self.network = NetworkService(self.config.network, self.store, Systemd(self.bus))
        self.instances = InstanceManager(self.store, self.pool, self.images, self.bus,
                                         network=self.network,
                                         drivers=self.config.instances.drivers)
