"""`hc doctor`: check what homecloud needs from the host; exit 3 when something is missing.

The agent runs the checks as root. When it does not answer, the checks that need no agent run
here instead (homecloud/host/doctor.py), and the agent itself is the first failed check.
"""

from __future__ import annotations

import argparse

from homecloud.cli.lazy import api, print_json, print_table
from homecloud.cli.parsers import listing_command
from homecloud.errors import EXIT_HOST, HomecloudError, PermissionDenied

# `typing` costs `hc` milliseconds at start-up; only the type checker reads it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# A hung agent must not hang its own diagnosis; a starting one may take a while to answer.
AGENT_TIMEOUT = 60.0
AGENT_FIX = ("`systemctl start hcd.socket`; if it stops again, `systemctl status hcd.socket "
             "hcd.service` and `journalctl -u hcd` say why")
GROUP_FIX = ("run as root, or join the homecloud group (`usermod -aG homecloud USER`, then log "
             "in again)")


def register(commands: Any) -> None:
    listing_command(commands, "doctor", run_doctor,
                    help="check the host: agent, systemd, limits, pool, bridge, DNS, firewalls",
                    description="Check what homecloud needs from this host. Each failed check "
                    "says how to fix it; the exit status is 3 when something is missing. When "
                    "the agent does not answer, the checks that need no agent run as you.")


def _agent_check(error: Exception | None, socket_path: str) -> dict[str, Any]:
    if error is None:
        return {"name": "agent", "status": "ok", "detail": f"hcd answers on {socket_path}",
                "fix": None}
    if isinstance(error, HomecloudError):
        detail = error.message
    else:  # TimeoutError
        detail = f"the agent did not answer on {socket_path} within {AGENT_TIMEOUT:g} s"
    fix = GROUP_FIX if isinstance(error, PermissionDenied) else AGENT_FIX
    return {"name": "agent", "status": "fail", "detail": detail, "fix": fix}


def _report() -> dict[str, Any]:
    client = api(timeout=AGENT_TIMEOUT)
    try:
        report = client.call("GET", "/v1/doctor")
    except (HomecloudError, TimeoutError) as exc:
        from dataclasses import asdict

        from homecloud.host.doctor import without_agent

        agent = _agent_check(exc, client.socket_path)
        checks = [agent, *(asdict(c) for c in without_agent())]
        return {"ok": False, "checks": checks}
    return {"ok": report["ok"],
            "checks": [_agent_check(None, client.socket_path), *report["checks"]]}


def run_doctor(args: argparse.Namespace) -> int:
    report = _report()
    if args.json:
        print_json(report)
    else:
        print_table([[c["name"], c["status"], c["detail"]] for c in report["checks"]],
                    ["CHECK", "STATUS", "DETAIL"])
        for check in report["checks"]:
            if check["status"] == "fail" and check.get("fix"):
                print(f"fix {check['name']}: {check['fix']}")
    return 0 if report["ok"] else EXIT_HOST
