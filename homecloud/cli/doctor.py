"""`hc doctor`: check what homecloud needs from the host; exit 3 when something is missing."""

from __future__ import annotations

import argparse
from typing import Any

from homecloud.cli.lazy import api, print_json, print_table
from homecloud.cli.parsers import listing_command
from homecloud.errors import EXIT_HOST


def register(commands: Any) -> None:
    listing_command(commands, "doctor", run_doctor,
                    help="check the host: systemd, pool, bridge, DNS, forwarding, firewalls",
                    description="Check what homecloud needs from this host. Each failed check "
                    "says how to fix it; the exit status is 3 when something is missing.")


def run_doctor(args: argparse.Namespace) -> int:
    report = api().call("GET", "/v1/doctor")
    if args.json:
        print_json(report)
    else:
        print_table([[c["name"], c["status"], c["detail"]] for c in report["checks"]],
                    ["CHECK", "STATUS", "DETAIL"])
        for check in report["checks"]:
            if check["status"] == "fail" and check.get("fix"):
                print(f"fix {check['name']}: {check['fix']}")
    return 0 if report["ok"] else EXIT_HOST
