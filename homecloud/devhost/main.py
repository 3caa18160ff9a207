"""`hc-devhost`: boot, enter and remove dev hosts (real systemd in a container) on this machine."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from homecloud.devhost import lifecycle
from homecloud.devhost.host import DevHost
from homecloud.devhost.spec import DevHostPaths, validate_devhost_name
from homecloud.devhost.supervisor import SUPERVISE_COMMAND, daemonize
from homecloud.errors import UserError, exit_status


def _progress(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def cmd_up(args: argparse.Namespace) -> int:
    host = lifecycle.boot(args.name, private_network=args.private_network,
                          setup=not args.no_setup, pool_size=args.pool_size,
                          timeout=args.timeout,
                          progress=(lambda _m: None) if args.json else _progress)
    if args.json:
        _print_json(host.status())
    else:
        print(f"dev host {host.name} is up (PID 1 is {host.pid} on this machine)")
        if host.address:
            print(f"  its addresses:   {host.address} {host.address6}")
        print(f"  a shell inside:  hc-devhost exec {host.name} -- bash")
        print(f"  stop it:         hc-devhost down {host.name}")
    return 0


def _guest_cwd(host: DevHost) -> str:
    """Keep the caller's directory when it exists inside too (the checkout is bound at the same
    path), else start in root's home."""
    try:
        cwd = Path.cwd()
    except FileNotFoundError:
        return "/root"
    if cwd.is_relative_to(host.spec.checkout):
        return str(cwd)
    return "/root"


def cmd_exec(args: argparse.Namespace) -> int:
    host = lifecycle.get(args.name)
    lifecycle.require_host_tools()
    argv = host.command(list(args.command) or ["bash"], user=args.user, cwd=_guest_cwd(host))
    sys.stdout.flush()
    # Replace this process: stdin, the terminal, signals and the exit code all pass straight
    # through nsenter to the command.
    os.execvpe(argv[0], argv, host.environment())


def cmd_down(args: argparse.Namespace) -> int:
    if args.all:
        if args.name or args.keep:
            raise UserError("`down --all` takes no dev host name and no --keep")
        names, network_gone = lifecycle.shutdown_all(timeout=args.timeout)
        for name in names:
            print(f"dev host {name} is down")
        print("dev host network removed" if network_gone else
              "dev host network kept: something is still attached to its bridge")
        return 0
    if not args.name:
        raise UserError("name the dev host to stop, or use --all")
    lifecycle.shutdown(args.name, keep=args.keep, timeout=args.timeout)
    print(f"dev host {args.name} is down" + (" (state kept)" if args.keep else ""))
    return 0


def cmd_reboot(args: argparse.Namespace) -> int:
    host = lifecycle.reboot(args.name, timeout=args.timeout)
    print(f"dev host {host.name} rebooted (PID 1 is {host.pid} on this machine)")
    return 0


def _state_text(status: dict[str, Any]) -> str:
    if status["system_state"]:
        return f"{status['state']} ({status['system_state']})"
    return str(status["state"])


def cmd_ls(args: argparse.Namespace) -> int:
    statuses = [host.status() for host in lifecycle.list_devhosts()]
    if args.json:
        _print_json(statuses)
        return 0
    rows = [("NAME", "STATE", "PID", "ADDRESS", "STATE DIR")]
    rows += [(s["name"], _state_text(s), str(s["pid"] or "-"), s["address"] or "-",
              s["state_dir"]) for s in statuses]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
              + "  " + row[-1])
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = lifecycle.get(args.name).status()
    if args.json:
        _print_json(status)
        return 0
    print(f"{status['name']}: {_state_text(status)}")
    for key in ("pid", "nspawn_pid", "supervisor_pid", "address", "address6", "host_link",
                "state_dir", "checkout", "venv"):
        print(f"  {key.replace('_', ' ')}: {status[key] if status[key] is not None else '-'}")
    return 0


def cmd_supervise(args: argparse.Namespace) -> int:
    return daemonize(DevHostPaths.of(validate_devhost_name(args.name)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hc-devhost",
        description="Dev hosts: a real systemd booted in a container on this machine's own /usr, "
                    "with homecloud installed, to develop and test against.")
    sub = parser.add_subparsers(dest="action", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="boot a dev host (or find it running) and install homecloud")
    up.add_argument("name")
    up.add_argument("--json", action="store_true", help="print the dev host's status as JSON")
    up.add_argument("--timeout", type=float, default=lifecycle.BOOT_TIMEOUT, metavar="SECONDS")
    up.add_argument("--pool-size", metavar="SIZE", help="size of the embedded pool (e.g. 8G)")
    up.add_argument("--no-setup", action="store_true", help="boot only; do not run hostsetup")
    up.add_argument("--private-network", action="store_true",
                    help="no network but loopback (by default a dev host has its own "
                    "address on the machine's bridge hcdev0, and egress through it)")
    up.set_defaults(func=cmd_up)

    exec_ = sub.add_parser("exec", help="run a command inside (default: bash)")
    exec_.add_argument("name")
    exec_.add_argument("--user", help="run as this user of the dev host")
    exec_.add_argument("command", nargs="*", help="-- CMD [ARG...]")
    exec_.set_defaults(func=cmd_exec)

    down = sub.add_parser("down", help="power off and remove a dev host")
    down.add_argument("name", nargs="?")
    down.add_argument("--all", action="store_true", help="remove every dev host, then the "
                      "bridge and nftables table they shared")
    down.add_argument("--keep", action="store_true", help=f"keep its state under "
                      f"{lifecycle.STATE_ROOT}/NAME for the next `up`")
    down.add_argument("--timeout", type=float, default=lifecycle.STOP_TIMEOUT, metavar="SECONDS")
    down.set_defaults(func=cmd_down)

    reboot = sub.add_parser("reboot", help="reboot a dev host and wait until it is back")
    reboot.add_argument("name")
    reboot.add_argument("--timeout", type=float, default=lifecycle.BOOT_TIMEOUT,
                        metavar="SECONDS")
    reboot.set_defaults(func=cmd_reboot)

    ls = sub.add_parser("ls", help="list dev hosts")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_ls)

    status = sub.add_parser("status", help="show one dev host")
    status.add_argument("name")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    supervise = sub.add_parser(SUPERVISE_COMMAND)  # internal: started by `up`
    supervise.add_argument("name")
    supervise.set_defaults(func=cmd_supervise)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    # `exec NAME [--user U] -- CMD...`: everything after the first "--" is the command, even
    # words that look like options (argparse cannot say that for a positional after another).
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    if args.action == "exec":
        args.command = [*args.command, *argv[split + 1:]]
    elif split < len(argv):
        args = parser.parse_args(argv)
    return exit_status("hc-devhost", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
