"""hc-wake's main loop: the listener on the sockets systemd passes, and once a second the
idle check of awake idle instances. It exits when nothing is awake or being woken for a
while; systemd keeps listening and starts it again on the next connection."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from homecloud.client.api import ApiClient
from homecloud.consoles.presence import instances_with_open_consoles
from homecloud.errors import Conflict, HomecloudError
from homecloud.wake.conntrack import busy_addresses
from homecloud.wake.listener import WAKE_TIMEOUT, Waker
from homecloud.wake.listing import InstanceListing
from homecloud.wake.targets import IdleClock, idle_instances

log = logging.getLogger(__name__)
TICK = 1.0  # how often awake idle instances are checked
LINGER = 30.0  # seconds with nothing awake before the service exits


class AgentCalls:
    """What hc-wake asks the agent; its socket is activated on demand, so a killed or
    restarting agent only makes a call slower."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    def list(self) -> list[dict[str, Any]]:
        return list(self.client.call("GET", "/v1/instances"))

    def start(self, name: str) -> None:
        """Start ``name``; while another operation holds it (it is being put to sleep), try
        again."""
        deadline = time.monotonic() + WAKE_TIMEOUT
        while True:
            try:
                self.client.call("POST", f"/v1/instances/{name}/start")
                return
            except Conflict:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def sleep(self, name: str) -> None:
        self.client.call("POST", f"/v1/instances/{name}/stop", {"timeout": None})


async def serve(sockets: list[socket.socket], agent: AgentCalls, *, tick: float = TICK,
                linger: float = LINGER) -> None:
    loop = asyncio.get_running_loop()
    listing = InstanceListing(agent.list)
    waker = Waker(listing, agent.start)
    accepting = [asyncio.ensure_future(_accept(s, waker)) for s in sockets]
    clock = IdleClock()
    quiet_since = time.monotonic()
    try:
        while True:
            await asyncio.sleep(tick)
            try:
                awake = [i for i in idle_instances(await listing.refresh()) if i.running]
                watched = {a for i in awake for a in i.addresses}
                busy_at = await loop.run_in_executor(None, busy_addresses, watched)
                busy = ({i.name for i in awake if i.addresses & busy_at} | set(waker.holding)
                        | instances_with_open_consoles())
                for name in clock.due(time.monotonic(), awake, busy):
                    log.info("wake: %s has had no connection open for its idle time: "
                             "it sleeps", name)
                    await loop.run_in_executor(None, agent.sleep, name)
            except HomecloudError as exc:
                log.warning("wake: idle check: %s", exc.message)
                awake = []
            now = time.monotonic()
            if awake or waker.proxied:
                quiet_since = now
            elif now - max(quiet_since, waker.last_activity) > linger:
                return
    finally:
        for task in accepting:
            task.cancel()


async def _accept(listening: socket.socket, waker: Waker) -> None:
    loop = asyncio.get_running_loop()
    listening.setblocking(False)
    tasks: set[asyncio.Task[None]] = set()
    while True:
        client, _ = await loop.sock_accept(listening)
        client.setblocking(False)
        task = asyncio.ensure_future(waker.handle(client))
        tasks.add(task)  # kept referenced until done
        task.add_done_callback(tasks.discard)
