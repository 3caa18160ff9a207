"""hc-dns: homecloud's DNS server, its own service so it answers while the agent restarts.

    python -m homecloud.dns [--config /var/lib/homecloud/dns.json]

Reads the configuration (config.py) at start and again on SIGHUP; a bad file on reload is
logged and the previous configuration keeps serving. Without a file it waits for one (the
agent writes it, then sends SIGHUP). Tells systemd when it is ready (Type=notify).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from homecloud.dns.config import CONFIG_PATH, DnsConfig, load_config
from homecloud.dns.resolver import Resolver
from homecloud.dns.server import DnsServer
from homecloud.dns.upstream import system_upstreams
from homecloud.dns.zone import ZoneDescription, build_zones
from homecloud.errors import HomecloudError, exit_status
from homecloud.systemd.activation import notify

log = logging.getLogger("homecloud.dns")


class Service:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.resolver = Resolver(build_zones(ZoneDescription(host="localhost")))
        self.server = DnsServer(self.resolver)

    def read(self) -> DnsConfig | None:
        try:
            return load_config(self.path)
        except FileNotFoundError:
            log.warning("%s does not exist yet: not serving until it does (then SIGHUP)",
                        self.path)
            return None

    async def apply(self, config: DnsConfig) -> None:
        upstreams = config.upstreams
        if upstreams is None:
            upstreams = tuple(system_upstreams(exclude=config.endpoints))
        self.resolver.upstreams = upstreams
        self.resolver.forward_timeout = config.forward_timeout
        self.resolver.set_zones(build_zones(config.zone))
        await self.server.listen(config.endpoints)
        log.info("serving %s (serial %d, %d instances) on %d endpoints, forwarding to %s",
                 config.zone.origin, config.zone.serial, len(config.zone.instances),
                 len(self.server.endpoints),
                 ", ".join(f"{a}:{p}" for a, p in upstreams) or "nobody")

    async def reload(self) -> None:
        notify(reloading=1)
        try:
            config = self.read()
            if config is not None:
                await self.apply(config)
        except HomecloudError as exc:
            log.error("not reloaded, still serving the previous configuration: %s",
                      exc.message)
        finally:
            notify(ready=1)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        config = self.read()
        if config is not None:
            await self.apply(config)
        notify(ready=1, status=f"serving on {len(self.server.endpoints)} endpoints")
        await stop.wait()
        notify(stopping=1)
        await self.server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hc-dns", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG_PATH,
                        help=f"configuration file (default {CONFIG_PATH})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(levelname)s %(message)s", stream=sys.stderr)
    return exit_status("hc-dns", lambda: asyncio.run(Service(args.config).run()))


if __name__ == "__main__":
    sys.exit(main())
