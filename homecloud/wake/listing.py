"""The agent's instance list as hc-wake sees it: kept from the last answer, so a burst of first
connections to a sleeping instance costs one API call, not one each. A connection the kept list
cannot place asks again (once, shared by every connection asking at the same time); the idle
check refreshes it every tick, so an address that changed (a reboot) is not kept for long."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from homecloud.wake.targets import Target, find_target

Listing = list[dict[str, Any]]
MAX_AGE = 5.0  # seconds a kept list is trusted for a hit without the idle check refreshing it


class InstanceListing:
    def __init__(self, fetch: Callable[[], Listing], *, max_age: float = MAX_AGE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._max_age = max_age
        self._clock = clock
        self._kept: Listing | None = None
        self._kept_at = 0.0
        self._asking: asyncio.Future[Listing] | None = None
        self.calls = 0  # API calls made, for the record

    def remember(self, listing: Iterable[Mapping[str, Any]]) -> None:
        """A fresh answer obtained elsewhere (the idle check's)."""
        self._kept = [dict(item) for item in listing]
        self._kept_at = self._clock()

    async def find(self, address: IPv4Address | IPv6Address, port: int) -> Target | None:
        """The target of a connection to ``address``:``port``, from the kept list when it
        knows it, else from a fresh one."""
        fresh = self._kept is not None and self._clock() - self._kept_at <= self._max_age
        if fresh and self._kept is not None:
            target = find_target(self._kept, address, port)
            if target is not None:
                return target
        return find_target(await self.refresh(), address, port)

    async def refresh(self) -> Listing:
        """Ask the agent; callers arriving while a call is under way share its answer."""
        if self._asking is None or self._asking.done():
            self._asking = asyncio.ensure_future(self._ask())
        return await asyncio.shield(self._asking)

    async def _ask(self) -> Listing:
        self.calls += 1
        listing = await asyncio.get_running_loop().run_in_executor(None, self._fetch)
        self.remember(listing)
        return listing
