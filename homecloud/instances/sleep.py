"""Sleeping instances (``--idle``): which ones sleep, putting one to sleep, and keeping the
wake service watching the awake ones.

An idle instance sleeps while its unit is not running: the firewall then sends new TCP
connections to it to hc-wake (homecloud/wake/), which wakes it through the agent's API and stops
it again after its idle time with no connection open. Sleeping is no state of its own: it
follows from the record (``idle``) and systemd (the unit is down), so a reboot or an agent
restart keeps every sleeping instance asleep with nothing to restore.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from homecloud.errors import HomecloudError
from homecloud.instances.records import InstanceRecords
from homecloud.ownunits import WAKE_UNIT
from homecloud.systemd.transient import Systemd

if TYPE_CHECKING:
    from homecloud.network.service import NetworkService

log = logging.getLogger(__name__)
AWAKE_STATES = ("active", "activating", "reloading")


class Sleepers:
    def __init__(self, records: InstanceRecords, systemd: Systemd,
                 network: NetworkService | None) -> None:
        self.records = records
        self.systemd = systemd
        self.network = network
        self._dozing: set[str] = set()  # being put to sleep: asleep for the firewall already
        self._lock = threading.Lock()

    def sleeping(self) -> set[str]:
        """The idle instances whose unit is down, and those being put to sleep."""
        idle = [i for i in self.records.all() if i.spec.idle is not None and i.phase == "ready"]
        with self._lock:
            dozing = set(self._dozing)
        if not idle:
            return dozing
        units = self.systemd.list_units([i.unit for i in idle])
        awake = {name for name, unit in units.items() if unit.active_state in AWAKE_STATES}
        return {i.name for i in idle if i.unit not in awake} | dozing

    @contextmanager
    def falling_asleep(self, name: str) -> Iterator[None]:
        """Send new connections to the wake listener first, then (in the block) stop the
        unit: a connection arriving meanwhile waits for the next wake instead of being
        refused by a guest shutting down."""
        with self._lock:
            self._dozing.add(name)
        try:
            self.refresh()
            yield
        finally:
            with self._lock:
                self._dozing.discard(name)
            self.refresh()  # a stop that failed leaves it awake

    def refresh(self) -> None:
        if self.network is not None and self.network.error is None:
            self.network.refresh_firewall()

    def woke(self) -> None:
        """An idle instance runs: connections go straight to it; hc-wake watches for idleness."""
        self.refresh()
        try:
            self.systemd.start_unit(WAKE_UNIT)
        except HomecloudError as exc:  # it sleeps never, but it works: say so, once per start
            log.warning("instances: cannot start %s (idle instances will not sleep): %s",
                        WAKE_UNIT, exc.message)
