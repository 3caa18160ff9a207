"""hcd: the homecloud agent.

Started by systemd (hcd.service, Type=notify) on the first connection to hcd.socket. It holds the
host lock, opens the state database and the pool, reconciles, then serves the API until stopped.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from types import FrameType

from homecloud import __version__
from homecloud.errors import exit_status
from homecloud.systemd.activation import inherited_sockets, notify, unix_listener

log = logging.getLogger("hcd")


def serve(config_path: Path | None) -> None:
    from homecloud.agent.api import build_router
    from homecloud.agent.app import Agent
    from homecloud.agent.lock import AgentLock
    from homecloud.agent.peercred import group_id
    from homecloud.agent.reconcile import reconcile
    from homecloud.agent.server import ApiServer, ServerPolicy
    from homecloud.config import CONFIG_PATH, load_config
    from homecloud.frontdoor import API_SOCKET_NAME
    from homecloud.frontdoor.door import door_user_id
    from homecloud.state.store import Store
    from homecloud.storage.embedded import ensure_embedded_pool
    from homecloud.storage.pool import open_pool

    config = load_config(config_path or CONFIG_PATH)
    lock = AgentLock(config.run_dir / "hcd.lock")
    lock.acquire()
    try:
        notify(status="opening state and pool")
        store = Store(config.database_path)
        ensure_embedded_pool(config.pool)
        pool = open_pool(config.pool)
        agent = Agent(config=config, store=store, pool=pool)
        notify(status="setting up the network")
        agent.network.start()  # on failure: logged, and shown by `hc doctor`
        notify(status="reconciling")
        reconcile(agent)
        gid = group_id(config.group)
        sockets = inherited_sockets()
        door_sock = next((s for name, s in sockets if name == API_SOCKET_NAME), None)
        sock = (next((s for name, s in sockets if name != API_SOCKET_NAME), None)
                or unix_listener(config.socket_path, mode=0o660, gid=gid))
        router = build_router(agent)
        policy = ServerPolicy(allowed_gid=gid, group_name=config.group,
                              max_body=config.max_request_body)
        server = ApiServer(sock, router, policy)
        servers = [server]
        if door_sock is not None:
            door_uid = door_user_id()
            if door_uid is None:
                log.warning("the front door's user is unknown: its API socket stays closed")
            else:
                servers.append(ApiServer(door_sock, router, replace(policy, door_uid=door_uid)))
                threading.Thread(target=servers[-1].serve_forever, args=(0.5,),
                                 name="hcd-door", daemon=True).start()

        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %d: stopping", signum)
            notify(stopping=1)
            # shutdown() waits for serve_forever to return, so it must not run on its thread.
            for each in servers:
                threading.Thread(target=each.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("hcd %s serving on %s (pool: %s at %s)", __version__, config.socket_path,
                 pool.name, pool.root)
        notify(ready=1, status=f"serving; pool {pool.name} at {pool.root}")
        server.serve_forever(poll_interval=0.5)
        for each in servers:
            each.server_close()
        store.close()
    finally:
        lock.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hcd", description="The homecloud agent. Normally "
                                     "started by systemd through hcd.socket; see `hc --help`.")
    parser.add_argument("--config", type=Path, help="config file (default "
                        "/etc/homecloud/config.yaml, or $HC_CONFIG)")
    parser.add_argument("--debug", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"hcd {__version__}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return exit_status("hcd", lambda: serve(args.config))


if __name__ == "__main__":
    sys.exit(main())
