"""Instance drivers, found by kind.

homecloud's own kinds are listed in kinds.py as ``module:Class`` and imported on first use (a
host that never runs a VM never imports the VM driver). A host adds kinds in its config
(``instances.drivers``), each with its service set in /etc/homecloud/service-sets.
"""

from __future__ import annotations

from collections.abc import Iterable

from homecloud.classpath import load_class
from homecloud.errors import UserError
from homecloud.instances.drivers.base import DriverHost, InstanceDriver
from homecloud.instances.kinds import BUILTIN_KINDS


class DriverRegistry:
    def __init__(self, host: DriverHost, extra: Iterable[tuple[str, str]] = ()) -> None:
        self.host = host
        self._paths = {**BUILTIN_KINDS, **dict(extra)}
        self._loaded: dict[str, InstanceDriver] = {}

    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self._paths))

    def get(self, kind: str) -> InstanceDriver:
        driver = self._loaded.get(kind)
        if driver is not None:
            return driver
        path = self._paths.get(kind)
        if path is None:
            raise UserError(f"instance kind {kind!r} is not supported (use: "
                            f"{', '.join(self.kinds())})")
        cls = load_class(path, InstanceDriver, f"the {kind} instance driver {path}",
                         "an instance driver")
        driver = self._loaded[kind] = cls(self.host)
        return driver
