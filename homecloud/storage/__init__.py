"""Copy-on-write storage pools: one driver interface, one module per driver."""

from homecloud.storage.base import Dataset, PoolUsage, Snapshot, StorageDriver

__all__ = ["Dataset", "PoolUsage", "Snapshot", "StorageDriver"]
