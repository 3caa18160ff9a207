"""`hc pool`: the storage pool."""

from __future__ import annotations

import argparse

from homecloud.cli.lazy import api, print_json, print_table
from homecloud.cli.parsers import listing_command

# `typing` costs `hc` milliseconds at start-up; only the type checker reads it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any) -> None:
    listing_command(commands, "pool", show_pool, help="show the storage pool",
                    description="Show the storage pool: driver, path, size, used and free "
                    "space.")


def show_pool(args: argparse.Namespace) -> int:
    from homecloud.sizes import format_size

    data = api().call("GET", "/v1/pool")
    if args.json:
        print_json(data)
        return 0
    print_table([[data["driver"], data["path"], format_size(data["size"]),
                  format_size(data["used"]), format_size(data["free"])]],
                ["DRIVER", "PATH", "SIZE", "USED", "FREE"])
    if not data.get("fast_fork", True):
        print("warning: this pool copies every file on fork; use btrfs for fast forks")
    return 0
