"""The console proxy's process (hc-console.service).

    python -m homecloud.consoles serve [--socket PATH] [--database PATH] [--max-consoles N]

It listens on the socket systemd passes (hc-console.socket), or binds ``--socket``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from pathlib import Path

from homecloud.config import load_config
from homecloud.consoles.presence import OPEN_DIR
from homecloud.errors import exit_status
from homecloud.state.store import Store
from homecloud.systemd.activation import listener, notify


def _listener(path: str | None) -> socket.socket:
    """The socket systemd passed (hc-console.socket), or one bound at ``path``; non-blocking
    for asyncio."""
    from homecloud.consoles import PROXY_SOCKET

    sock = listener(path, PROXY_SOCKET, backlog=512)
    sock.setblocking(False)
    return sock


def serve(args: argparse.Namespace) -> None:
    from homecloud.consoles.presence import OpenConsoles
    from homecloud.consoles.proxy import ProxyLimits, serve
    from homecloud.consoles.tokens import ConsoleTokens
    from homecloud.consoles.waking import wake_through_agent

    database = Path(args.database) if args.database else load_config().database_path
    limits = ProxyLimits(max_consoles=args.max_consoles,
                         idle_exit=args.idle_exit if args.idle_exit > 0 else None)
    tokens = ConsoleTokens(Store(database))
    asyncio.run(serve(_listener(args.socket), tokens, limits, lambda: notify(ready=1),
                      wake=wake_through_agent, presence=OpenConsoles(args.open_dir)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m homecloud.consoles",
                                     description="homecloud's console proxy")
    commands = parser.add_subparsers(dest="command", required=True)
    serving = commands.add_parser("serve", help="the websocket proxy")
    serving.add_argument("--socket", help="listen here instead of on systemd's socket")
    serving.add_argument("--database", help="the state database (default: from config.yaml)")
    serving.add_argument("--max-consoles", type=int, default=64,
                         help="consoles open at once; more are refused (default 64)")
    serving.add_argument("--idle-exit", type=float, default=300.0,
                         help="exit after this many seconds with no console (0: never)")
    serving.add_argument("--open-dir", default=OPEN_DIR,
                         help=f"where open consoles are listed for hc-wake (default {OPEN_DIR})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s",
                        stream=sys.stderr)
    return exit_status("hc-console", lambda: serve(args))


if __name__ == "__main__":
    sys.exit(main())
