"""Two homecloud hosts that replicate: the receiver's front door opened to an admin's token,
the sender told of it with `hc peer add`, and what the receiver holds from a sender removed.

    door = open_door(beta)              # skips unless the dev hosts have addresses of their own
    add_peer(alpha, "beta", door)       # alpha sends to beta through beta's door
    forget_sender(door, sender_name(alpha))
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from cli_checks import POOL, wait_for

from homecloud.devhost import DevHost

ADMIN = "replicator"
PASSWORD = "replication password 1"
SNAPSHOTS = f"{POOL}/.snapshots"


@dataclass(frozen=True)
class Door:
    host: DevHost
    url: str
    token: str
    fingerprint: str


def open_door(host: DevHost) -> Door:
    """The host's front door with an admin account, as a peer's sender needs it."""
    if host.address is None:
        pytest.skip("these dev hosts share the machine's network; replication between hosts "
                    "needs dev hosts with addresses of their own")
    wait_for("the front door", lambda: host.run(
        "systemctl", "is-active", "hc-frontdoor.service", check=False).stdout.strip()
        == "active")
    if ADMIN not in host.hc("user", "ls").stdout:
        host.run(*host.hc_argv(), "user", "add", ADMIN, "--admin", input=PASSWORD + "\n")
    result = host.hc("user", "token", ADMIN)
    return Door(host, f"https://{host.address}", result.stdout.strip(),
                result.stderr.strip().rsplit(" ", 1)[-1])


def add_peer(sender: DevHost, name: str, door: Door, token: str | None = None,
             fingerprint: str | None = None) -> None:
    sender.hc("peer", "add", name, "--url", door.url, "--token", token or door.token,
              "--fingerprint", fingerprint or door.fingerprint)


def sender_name(host: DevHost) -> str:
    """The name under which receivers file what ``host`` sends (replicas/NAME/...)."""
    return host.run("hostname").stdout.strip().split(".")[0].lower()


def forget_sender(door: Door, sender: str) -> None:
    """Remove the door's admin account and every replica ``sender`` sent to its host."""
    door.host.hc("user", "rm", ADMIN, check=False)
    door.host.run("sh", "-c", f"btrfs subvolume delete -R {POOL}/replicas/{sender} "
                  f"{SNAPSHOTS}/replicas/{sender} >/dev/null 2>&1; rm -rf "
                  f"{POOL}/replicas/{sender} {SNAPSHOTS}/replicas/{sender}", check=False)


def received(host: DevHost) -> str:
    """Every replica dataset and snapshot, and any half-received tree, on ``host``."""
    return host.run("sh", "-c", f"cd {POOL} && find replicas .snapshots/replicas .work "
                    "-mindepth 1 -maxdepth 5 2>/dev/null | sort").stdout
