"""`hc machine ...` and `hc provision ...`: bare-metal machines installed over the network."""

from __future__ import annotations

import argparse

from homecloud.cli.lazy import api, print_json, print_table
from homecloud.cli.parsers import listing_command, logs_command

# `typing` costs `hc` milliseconds at start-up; only the type checker reads it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FOLLOW_INTERVAL = 1.0  # seconds between looks for new log lines with -f


def register(commands: Any) -> None:
    machines = commands.add_parser("machine", help="bare-metal machines: add, ls, logs, "
                                   "reinstall, rm")
    actions = machines.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    add = actions.add_parser("add", help="add a machine: it installs IMAGE when it boots "
                             "from the network")
    add.add_argument("name")
    add.add_argument("--mac", required=True, help="its network card's MAC address")
    add.add_argument("--image", required=True, help="the image to install (or run diskless)")
    add.add_argument("--disk", help="the disk to install on (default: its first disk)")
    add.add_argument("--diskless", action="store_true", help="run from RAM; write no disk")
    add.add_argument("--ssh-key", action="append", default=[], metavar="FILE",
                     help="a public key file for root (repeat for more)")
    add.add_argument("--workflow", help="a workflow of your own: "
                     "/etc/homecloud/workflows/NAME.yaml")
    add.set_defaults(run=add_machine)
    listing_command(actions, "ls", list_machines,
                    help="machines: workflow state, current step, each step's state")
    logs_command(actions, show_logs, help="the installer's log lines", lines=200)
    reinstall = actions.add_parser("reinstall", help="install again at its next network boot")
    reinstall.add_argument("name")
    reinstall.set_defaults(run=reinstall_machine)
    remove = actions.add_parser("rm", help="remove a machine: record, lease, DNS name, "
                                "network boot entry")
    remove.add_argument("name")
    remove.set_defaults(run=remove_machine)

    provision = commands.add_parser("provision", help="network boot: enable, disable, status")
    verbs = provision.add_subparsers(dest="action", metavar="ACTION")
    verbs.required = True
    enable = verbs.add_parser("enable", help="serve network boot (proxyDHCP by default)")
    enable.add_argument("--interface", help="where machines boot (default: homecloud's bridge)")
    mode = enable.add_mutually_exclusive_group()
    mode.add_argument("--proxy-dhcp", action="store_true",
                      help="only add boot offers; the LAN's DHCP server gives addresses")
    mode.add_argument("--dhcp-range", metavar="A-B",
                      help="full DHCP: give addresses from A-B (known machines get theirs)")
    enable.set_defaults(run=enable_provision)
    disable = verbs.add_parser("disable", help="stop serving network boot")
    disable.set_defaults(run=disable_provision)
    listing_command(verbs, "status", provision_status,
                    help="network boot: settings, units, unknown MACs seen")


def _path(name: str, rest: str = "") -> str:
    from homecloud.client.paths import quoted

    return f"/v1/machines/{quoted(name)}{rest}"


def add_machine(args: argparse.Namespace) -> int:
    from pathlib import Path

    from homecloud.errors import UserError

    keys = []
    for file in args.ssh_key:
        try:
            keys += [line for line in Path(file).read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise UserError(f"--ssh-key {file}: {exc.strerror}") from None
    body: dict[str, Any] = {"name": args.name, "mac": args.mac, "image": args.image,
                            "diskless": args.diskless, "ssh_keys": keys}
    for key in ("disk", "workflow"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    machine = api().call("POST", "/v1/machines", body)
    print(f"{machine['name']}: {machine['state']}; switch it on to boot from the network")
    return 0


def _duration(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


def list_machines(args: argparse.Namespace) -> int:
    items = api().call("GET", "/v1/machines")
    if args.json:
        print_json(items)
        return 0
    print_table([[m["name"], m["mac"], m["image"], m["state"], m["current_step"] or "-",
                  " ".join(f"{s['id']}:{s['status']}({_duration(s['duration'])})"
                           for s in m["steps"]) or "-",
                  m["address4"] or "-"] for m in items],
                ["NAME", "MAC", "IMAGE", "STATE", "STEP", "STEPS", "ADDRESS"])
    for machine in items:
        for step in machine["steps"]:
            if step["status"] == "failed" and step["message"]:
                # The message names the action that failed ("partition failed: ...").
                print(f"{machine['name']}: step {step['id']}: {step['message']}")
    return 0


def show_logs(args: argparse.Namespace) -> int:
    import time

    client = api()
    lines = client.call("GET", _path(args.name, f"/log?lines={args.lines}"))
    last = 0
    while True:
        for item in lines:
            print(f"[{item['step']}] {item['line']}", flush=args.follow)
            last = item["seq"]
        if not args.follow:
            return 0
        time.sleep(FOLLOW_INTERVAL)
        lines = client.call("GET", _path(args.name, f"/log?after={last}"))


def reinstall_machine(args: argparse.Namespace) -> int:
    machine = api().call("POST", _path(args.name, "/reinstall"), {})
    print(f"{machine['name']}: installs again at its next network boot")
    return 0


def remove_machine(args: argparse.Namespace) -> int:
    api().call("DELETE", _path(args.name))
    return 0


def enable_provision(args: argparse.Namespace) -> int:
    body = {"interface": args.interface, "dhcp_range": args.dhcp_range}
    status = api().call("POST", "/v1/provision/enable", body)
    settings = status["settings"]
    print(f"network boot on {settings['interface']} ({settings['mode']}): {status['url']}")
    if status["installer_error"]:
        import sys

        print(f"hc: warning: the installer is not built, so machines cannot boot it yet: "
              f"{status['installer_error']}", file=sys.stderr)
    return 0


def disable_provision(args: argparse.Namespace) -> int:
    api().call("POST", "/v1/provision/disable", {})
    return 0


def provision_status(args: argparse.Namespace) -> int:
    status = api().call("GET", "/v1/provision")
    if args.json:
        print_json(status)
        return 0
    settings = status["settings"]
    if settings is None:
        print("network boot: disabled (`hc provision enable`)")
    else:
        extra = f", range {settings['dhcp_range']}" if settings["dhcp_range"] else ""
        print(f"network boot: {settings['interface']} ({settings['mode']}{extra}), "
              f"{status['url']}")
    for unit, state in status["units"].items():
        print(f"  {unit}: {state}")
    unknown = status["unknown_macs"]
    if unknown:
        print("unknown machines that asked to boot:")
        print_table([[u["mac"], str(u["count"])] for u in unknown], ["MAC", "TIMES"])
    ignored = status["ignored_macs"]
    if ignored:
        print("unknown MACs the DHCP server did not answer:")
        print_table([[u["mac"], str(u["count"])] for u in ignored], ["MAC", "REQUESTS"])
    return 0
