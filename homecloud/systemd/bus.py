"""A connection to systemd's bus, shared by the agent's threads.

sd-bus connections are not thread-safe, so every call goes through one lock. Calls take well
under a millisecond; nothing holds the lock while waiting for a unit (waits poll between calls).
"""

from __future__ import annotations

import threading
from typing import Any

from homecloud.errors import HostError

SYSTEMD = b"org.freedesktop.systemd1"
MANAGER_PATH = b"/org/freedesktop/systemd1"
MANAGER_IFACE = b"org.freedesktop.systemd1.Manager"
UNIT_IFACE = b"org.freedesktop.systemd1.Unit"
SERVICE_IFACE = b"org.freedesktop.systemd1.Service"


class SystemBus:
    """The system bus (default) or the bus at ``address`` (tests reach a dev host from outside:
    ``unix:path=/proc/PID/root/run/dbus/system_bus_socket``)."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address
        self._lock = threading.Lock()
        self._bus: Any = None

    def _connect(self) -> Any:
        from pystemd.dbuslib import DBus, DBusAddress

        bus = DBusAddress(self.address.encode()) if self.address else DBus()
        try:
            bus.open()
        except Exception as exc:
            where = self.address or "the system bus"
            raise HostError(f"cannot reach systemd over D-Bus ({where}): {exc}; homecloud needs "
                            "a running systemd (see `hc doctor`)") from exc
        return bus

    def call(self, path: bytes, interface: bytes, method: bytes, args: list[Any], *,
             destination: bytes = SYSTEMD) -> Any:
        """Call a method of systemd's object ``path`` (or of another service on the bus:
        ``destination``); returns the reply body."""
        with self._lock:
            if self._bus is None:
                self._bus = self._connect()
            return self._bus.call_method(destination, path, interface, method, args).body

    def manager(self, method: bytes, args: list[Any]) -> Any:
        return self.call(MANAGER_PATH, MANAGER_IFACE, method, args)

    def get(self, path: bytes, interface: bytes, prop: bytes, signature: bytes) -> Any:
        with self._lock:
            if self._bus is None:
                self._bus = self._connect()
            return self._bus.get_property(SYSTEMD, path, interface, prop, signature)

    def get_all(self, path: bytes, interface: bytes, *,
                destination: bytes = SYSTEMD) -> dict[bytes, Any]:
        """All properties of one interface in one round trip."""
        from pystemd.dbuslib import apply_signature

        body = self.call(path, b"org.freedesktop.DBus.Properties", b"GetAll",
                         apply_signature(b"s", [interface]), destination=destination)
        return dict(body[0]) if isinstance(body, tuple) else dict(body)

    def close(self) -> None:
        with self._lock:
            if self._bus is not None:
                self._bus.close()
                self._bus = None


def unit_path(unit: str) -> bytes:
    from pystemd.dbuslib import path_encode

    return bytes(path_encode(b"/org/freedesktop/systemd1/unit", unit.encode()))
