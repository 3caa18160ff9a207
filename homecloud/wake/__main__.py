"""``python -m homecloud.wake``: hc-wake.service (started by hc-wake.socket or the agent)."""

from __future__ import annotations

import asyncio
import logging
import sys

from homecloud.client.api import ApiClient
from homecloud.systemd.activation import inherited_sockets
from homecloud.wake.service import AgentCalls, serve


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    listeners = [sock for _, sock in inherited_sockets()]
    asyncio.run(serve(listeners, AgentCalls(ApiClient(timeout=300))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
