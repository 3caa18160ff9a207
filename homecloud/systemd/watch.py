"""Waking a wait when systemd reports a change of one unit.

A wait for a unit (its start job done, its command ended) used to poll a property every few
milliseconds: each poll is a round trip through dbus-daemon and systemd that costs CPU the
starting guest needs, and the change is seen up to a poll interval late. A watch is a bus
connection of the wait's own, subscribed to the unit's PropertiesChanged signals: the waiter
sleeps in select() until one arrives. The state itself is still read with a property call, so
a signal missed costs at most the wait's longest pause, never a wrong answer.
"""

from __future__ import annotations

import select
from typing import Any

from homecloud.systemd.bus import MANAGER_IFACE, MANAGER_PATH, SYSTEMD

PROPERTIES_IFACE = b"org.freedesktop.DBus.Properties"
# Messages dispatched at most per drain: a wait sees a handful (NameAcquired, the unit's
# signals); the bound only keeps a flood from starving the state check.
MAX_DRAIN = 64


class UnitWatch:
    """Signals about the unit at ``path`` on the bus at ``address`` (None: the system bus).
    Open it before the last state check, so no change falls between the check and the wait."""

    def __init__(self, address: str | None, path: bytes) -> None:
        from pystemd.dbuslib import DBus, DBusAddress

        self.signals = 0

        def on_signal(message: Any, error: Any = None, userdata: Any = None) -> None:
            self.signals += 1

        # pystemd keeps only a C pointer to the callback: hold the reference here.
        self._on_signal = on_signal
        bus = DBusAddress(address.encode()) if address else DBus()
        bus.open()
        try:
            bus.match_signal(SYSTEMD, path, PROPERTIES_IFACE, b"PropertiesChanged", on_signal)
            # systemd signals unit changes on the system bus only while a client subscribes.
            bus.call_method(SYSTEMD, MANAGER_PATH, MANAGER_IFACE, b"Subscribe", [])
        except BaseException:
            bus.close()
            raise
        self._bus = bus

    def wait(self, seconds: float) -> None:
        """Return once a signal about the unit arrives (or had arrived unread), or after
        ``seconds``."""
        if self._drain():
            return
        readable, _, _ = select.select([self._bus.get_fd()], [], [], seconds)
        if readable:
            self._drain()

    def _drain(self) -> bool:
        """Dispatch what the connection has received; True if a signal about the unit was in
        it. A signal the callback handled and "nothing to do" look alike to pystemd, so the
        count tells them apart."""
        before = self.signals
        for _ in range(MAX_DRAIN):
            counted = self.signals
            message = self._bus.process()
            if message.is_empty() and self.signals == counted:
                break
        return self.signals != before

    def close(self) -> None:
        self._bus.close()
