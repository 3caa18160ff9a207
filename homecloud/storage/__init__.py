"""Copy-on-write storage pools: one driver interface, one module per driver."""

from homecloud.storage.base import (
    Capabilities,
    Dataset,
    PoolUsage,
    Snapshot,
    StorageDriver,
    Volume,
)

__all__ = ["Capabilities", "Dataset", "PoolUsage", "Snapshot", "StorageDriver", "Volume"]
