"""The front door's processes.

    python -m homecloud.frontdoor serve     the auth endpoint (hc-frontdoor-auth.service), on the
                                            socket systemd passes (or --socket PATH)
    python -m homecloud.frontdoor render    write the nginx configuration if there is none yet
                                            (hc-frontdoor.service runs it before nginx starts)
"""

from __future__ import annotations

import argparse
import logging
import sys

from homecloud.config import load_config
from homecloud.errors import exit_status
from homecloud.frontdoor import AUTH_SOCKET
from homecloud.state.store import Store
from homecloud.systemd.activation import listener, notify


def serve(socket_path: str | None) -> None:
    from homecloud.frontdoor.authserver import AuthServer
    from homecloud.frontdoor.bans import BanPolicy
    from homecloud.frontdoor.credentials import StoredAccounts
    from homecloud.frontdoor.records import FrontdoorRecords

    config = load_config()
    store = Store(config.database_path)
    accounts = StoredAccounts(FrontdoorRecords(store), BanPolicy.from_config(config.frontdoor))
    server = AuthServer(listener(socket_path, AUTH_SOCKET), accounts, config.frontdoor.session)
    notify(ready=1)
    server.serve_forever()


def render() -> None:
    from homecloud.frontdoor.door import ensure_config
    from homecloud.frontdoor.records import FrontdoorRecords

    config = load_config()
    ensure_config(config, FrontdoorRecords(Store(config.database_path)).routes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m homecloud.frontdoor",
                                     description="homecloud's front door")
    commands = parser.add_subparsers(dest="command", required=True)
    serving = commands.add_parser("serve", help="the auth endpoint")
    serving.add_argument("--socket", help="listen here instead of on systemd's socket")
    commands.add_parser("render", help="write the nginx configuration if missing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s",
                        stream=sys.stderr)
    if args.command == "serve":
        return exit_status("hc-frontdoor-auth", lambda: serve(args.socket))
    return exit_status("hc-frontdoor", render)


if __name__ == "__main__":
    sys.exit(main())
