"""`hc run`, `hc ls`, `hc inspect`, `hc start|stop|restart|rm`, `hc exec`, `hc shell`,
`hc console`, `hc logs`."""

from __future__ import annotations

import argparse
import os
import sys

from homecloud.cli.lazy import api, follow, print_json, print_table
from homecloud.cli.parsers import logs_command, progress_options, show_progress

# `typing` costs `hc` milliseconds at start-up; only the type checker reads it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _path(name: str, action: str = "") -> str:
    from homecloud.client.paths import quoted

    return f"/v1/instances/{quoted(name)}" + (f"/{action}" if action else "")


def register(commands: Any) -> None:
    run = commands.add_parser(
        "run", help="create and start an instance from an image",
        description="Fork IMAGE into a new container (or, with --vm, a virtual machine) and "
        "boot it; returns when its systemd is ready. With `-- CMD`, run CMD instead of "
        "booting and show its output; hc exits with CMD's exit status.",
        epilog="examples:\n  hc run debian --name web -p 8080:80\n  hc run debian --name job "
        "-- sh -c 'echo hi'\n  hc run debian --memory 512M --cpus 1 --env MODE=prod "
        "--bind /srv/data:/data",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("image", help="image to fork (see `hc image ls`)")
    run.add_argument("--name", help="instance name, a DNS label (default: IMAGE-xxxxxx)")
    run.add_argument("--cpus", type=float, help="CPU limit, in CPUs (e.g. 0.5, 2)")
    run.add_argument("--memory", help="memory limit (e.g. 512M, 2G)")
    run.add_argument("--env", "-e", action="append", default=[], metavar="K=V",
                     help="set an environment variable (repeatable)")
    run.add_argument("--bind", "-v", action="append", default=[], metavar="SRC:DST[:ro]",
                     help="bind a host path into the instance (repeatable)")
    run.add_argument("-p", "--publish", action="append", default=[], metavar="HOST:GUEST",
                     help="publish the instance's port GUEST on the host's port HOST "
                     "(HOST:GUEST/udp for UDP; repeatable)")
    run.add_argument("--network", choices=("default", "none"), default=None,
                     help="default: an address on the host's bridge and a DNS name; none: "
                     "loopback only (no address, no name, no -p)")
    run.add_argument("--kind", default=None,
                     help="the kind of instance (default: container; `hc run --kind x` "
                     "lists the kinds this host has)")
    vm = run.add_argument_group("virtual machines")
    vm.add_argument("--vm", action="store_const", const="vm", dest="kind",
                    help="a virtual machine instead of a container (same as --kind vm)")
    vm.add_argument("--machine", choices=("microvm", "q35"), default=None,
                    help="microvm: qemu -M microvm, direct kernel boot, under systemd "
                    "(default); q35: a full PC through libvirt")
    vm.add_argument("--uefi", action="store_true", help="q35: boot with UEFI (OVMF)")
    vm.add_argument("--tpm", action="store_true", help="q35: a TPM 2.0 that keeps its state")
    vm.add_argument("--disk", metavar="SIZE", help="grow the VM's disk to SIZE (e.g. 20G)")
    vm.add_argument("--cdrom", metavar="ISO", help="q35: attach ISO as a CD-ROM")
    vm.add_argument("--ssh-key", action="append", default=[], metavar="FILE",
                    help="a public key file for root's authorized_keys (repeatable)")
    vm.add_argument("--user-data", metavar="FILE", help="cloud-init user-data for the guest")
    run.add_argument("--idle", metavar="DURATION",
                     help="sleep after DURATION (e.g. 30s, 10m, 2h) with no connection open; "
                     "a connection to it (its address, -p ports, routes) wakes it")
    run.add_argument("--restart", choices=("no", "always"), default="no",
                     help="start again after a crash and after the host reboots (default: no)")
    run.add_argument("-d", "--detach", action="store_true",
                     help="with a command: return once started; output goes to `hc logs`")
    run.add_argument("--rm", action="store_true",
                     help="with a command: remove the instance when the command ends")
    run.add_argument("--json", action="store_true", help="print the instance as JSON")
    progress_options(run)
    run.set_defaults(run=run_instance, command=[], command_name="run")
    run.usage = "hc run [options] IMAGE [-- CMD ...]"

    ls = commands.add_parser("ls", help="list instances")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(run=list_instances)

    inspect = commands.add_parser("inspect", help="show everything about an instance (JSON)")
    inspect.add_argument("name")
    # Always JSON; accepted so `--json` works on every command that prints data.
    inspect.add_argument("--json", action="store_true", help="print JSON (the default)")
    inspect.set_defaults(run=inspect_instance)

    for action, text in (("start", "start a stopped instance"),
                         ("stop", "stop an instance (clean poweroff)"),
                         ("restart", "stop and start an instance")):
        parser = commands.add_parser(action, help=text)
        parser.add_argument("name", nargs="+")
        if action != "start":
            parser.add_argument("-t", "--timeout", type=float,
                                help="seconds to wait for a clean poweroff before killing")
        parser.set_defaults(run=lifecycle, action=action)

    rm = commands.add_parser("rm", help="remove instances (their files and snapshots are "
                             "gone for good)")
    rm.add_argument("-f", "--force", action="store_true", help="stop running instances first")
    rm.add_argument("name", nargs="+")
    rm.set_defaults(run=remove_instances)

    exe = commands.add_parser("exec", help="run a command in a running instance",
                              description="Run CMD inside instance NAME with this terminal's "
                              "input and output; hc exits with CMD's exit status.")
    exe.add_argument("name")
    exe.set_defaults(run=exec_command, command=[], command_name="exec")
    exe.usage = "hc exec NAME -- CMD ..."

    shell = commands.add_parser("shell", help="open a shell in a running instance")
    shell.add_argument("name")
    shell.set_defaults(run=open_shell)

    console = commands.add_parser(
        "console", help="a link to an instance's screen or terminal in the browser",
        description="Print a single-use link (valid 60 s) to NAME's console in the browser, "
        "through the front door: a VM's screen, or a terminal (a container's shell, a "
        "microVM's serial console). With --text, attach this terminal to the text console.")
    console.add_argument("--text", action="store_true",
                         help="the text (serial) console in this terminal; Ctrl-] detaches")
    console.add_argument("--open", action="store_true",
                         help="open the link in this machine's browser, when it has one")
    console.add_argument("--user", help="the front-door user the link is for (default: the "
                         "user running hc, as in `hc user ls`)")
    console.add_argument("name")
    console.set_defaults(run=open_console)

    logs_command(commands, show_logs, help="show an instance's journal", lines=50)


def _stdio() -> tuple[int, int, int]:
    sys.stdout.flush()
    sys.stderr.flush()
    return (0, 1, 2)


def parse_env(items: list[str]) -> dict[str, str]:
    """``K=V`` strings as typed after ``--env`` (here, not with InstanceSpec: importing that
    module, dataclasses and all, would add ~20 ms to every `hc run`)."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            from homecloud.errors import UserError

            raise UserError(f"--env {item!r} is invalid: use KEY=VALUE")
        env[key] = value
    return env


def read_text_file(path: str, option: str) -> str:
    """A small text file the agent needs the contents of (it may not see the client's files)."""
    from homecloud.errors import UserError

    try:
        with open(path, encoding="utf-8") as file:
            text = file.read((1 << 20) + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{option} {path}: cannot read it ({exc})") from None
    if len(text) > 1 << 20:
        raise UserError(f"{option} {path}: larger than 1 MiB")
    return text


def run_instance(args: argparse.Namespace) -> int:
    command = list(args.command)
    binds = []
    for bind in args.bind:
        source, sep, rest = bind.partition(":")
        binds.append(os.path.abspath(source) + sep + rest if source and sep else bind)
    body: dict[str, Any] = {
        "image": args.image, "name": args.name, "cpus": args.cpus, "memory": args.memory,
        "env": parse_env(args.env), "binds": binds, "command": command or None,
        "restart": args.restart, "ports": args.publish, "network": args.network,
        "kind": args.kind, "machine": args.machine, "uefi": args.uefi, "tpm": args.tpm,
        "disk": args.disk, "cdrom": os.path.abspath(args.cdrom) if args.cdrom else None,
        "ssh_keys": [read_text_file(path, "--ssh-key") for path in args.ssh_key],
        "user_data": read_text_file(args.user_data, "--user-data") if args.user_data else None,
        "idle": args.idle,
    }
    attach = bool(command) and not args.detach
    if args.idle and args.rm:
        from homecloud.errors import UserError

        raise UserError("--idle and --rm do not go together: --rm removes an instance when "
                        "its command ends; an idle one sleeps, to be woken again")
    if args.rm and not attach:
        from homecloud.errors import UserError

        raise UserError("--rm works with a command run in the foreground: use `hc run --rm "
                        "IMAGE -- CMD` without -d")
    body["attach"] = attach
    body["remove"] = bool(args.rm and attach)
    client = api()
    stream = client.stream("POST", "/v1/instances", body, fds=_stdio() if attach else ())
    # The command's own output owns the terminal while it runs.
    show = args.progress or (show_progress(args) and not attach)
    info = follow(stream, f"starting {args.name or args.image}", show=show,
                  describe=_step_progress)
    if args.json:
        print_json(info)
    elif not attach:
        print(info["name"])
    if attach:
        return int(info.get("exit_status") or 0)
    return 0


def _step_progress(event: dict[str, Any]) -> dict[str, Any]:
    """A creation step event as progress: the step under way is the phase."""
    return {"phase": event.get("step", ""), "done": 0, "total": None,
            "message": "" if event.get("phase") == "start" else event.get("phase", "")}


def list_instances(args: argparse.Namespace) -> int:
    instances = api().call("GET", "/v1/instances")
    if args.json:
        print_json(instances)
        return 0
    from homecloud.cli.output import ago
    from homecloud.sizes import format_size

    rows = []
    for i in instances:
        state = i["state"]
        if i.get("exit_status") is not None and state in ("exited", "failed"):
            state += f" ({i['exit_status']})"
        # A kind made from no image (a lambda) shows its kind there.
        rows.append([i["name"], state, i["image"] or f"({i['kind']})", ago(i["created"]),
                     f"{i['cpus']:g}" if i.get("cpus") else "-",
                     format_size(i["memory"]) if i.get("memory") else "-",
                     i.get("ipv4") or ("none" if i.get("network") == "none" else "-"),
                     " ".join(i["command"])[:40] if i.get("command")
                     else "(boot)" if i["image"] else "-"])
    print_table(rows, ["NAME", "STATE", "IMAGE", "CREATED", "CPUS", "MEMORY", "IPV4",
                       "COMMAND"])
    return 0


def inspect_instance(args: argparse.Namespace) -> int:
    print_json(api().call("GET", _path(args.name)))
    return 0


def lifecycle(args: argparse.Namespace) -> int:
    client = api()
    # start takes no body (the agent refuses fields a route does not declare)
    body = None if args.action == "start" else {"timeout": getattr(args, "timeout", None)}
    for name in args.name:
        info = client.call("POST", _path(name, args.action), body)
        print(f"{name}: {info['state']}")
    return 0


def remove_instances(args: argparse.Namespace) -> int:
    client = api()
    for name in args.name:
        client.call("DELETE", _path(name) + ("?force=1" if args.force else ""))
        print(f"removed {name}")
    return 0


def _exec(name: str, command: list[str]) -> int:
    env = {"TERM": os.environ["TERM"]} if "TERM" in os.environ else {}
    result = api().call("POST", _path(name, "exec"), {"command": command, "env": env},
                              fds=_stdio())
    return int(result["exit_status"])


def exec_command(args: argparse.Namespace) -> int:
    from homecloud.errors import UserError

    command = list(args.command)
    if not command:
        raise UserError("no command given: use `hc exec NAME -- CMD ...`")
    return _exec(args.name, command)


def open_shell(args: argparse.Namespace) -> int:
    import shutil

    info = api().call("GET", _path(args.name))
    machinectl = shutil.which("machinectl")
    if (os.geteuid() == 0 and machinectl and sys.stdin.isatty() and not info.get("command")
            and "login" in info.get("capabilities", []) and info.get("state") == "running"):
        # A real login session with its own terminal, through the guest's systemd.
        os.execv(machinectl, [machinectl, "shell", f"root@{args.name}"])
    if sys.stdin.isatty() and "login" not in info.get("capabilities", []):
        # A command through a VM's guest agent gets pipes, not a terminal: an interactive
        # shell there would print no prompt and hang on line editing.
        from homecloud.errors import UserError

        raise UserError(f"hc shell cannot give {args.name} a terminal: use its serial console, "
                        f"`hc console {args.name} --text`, or ssh (or pipe a script: "
                        f"`hc shell {args.name} < script`)")
    return _exec(args.name, ["/bin/sh", "-c",
                             "if command -v bash >/dev/null; then exec bash -l; fi; exec sh -l"])


def open_console(args: argparse.Namespace) -> int:
    from homecloud.errors import UserError

    if not args.text:
        return browser_console(args)
    if args.open:
        raise UserError("--open is for the browser console: drop --text or --open")
    result = api().call("POST", _path(args.name, "console"), fds=_stdio())
    return int(result["exit_status"])


def browser_console(args: argparse.Namespace) -> int:
    import getpass

    user = args.user or os.environ.get("SUDO_USER") or getpass.getuser()
    link = api().call("POST", "/v1/consoles", {"instance": args.name, "user": user})
    print(link["url"], flush=True)
    print(f"single use, for {link['user']}, within 60 s", file=sys.stderr)
    if args.open:
        import webbrowser

        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) \
                or not webbrowser.open(link["url"]):
            print("no browser here: open the link above on a machine that has one",
                  file=sys.stderr)
    return 0


def show_logs(args: argparse.Namespace) -> int:
    query = f"?lines={args.lines}" + ("&follow=1" if args.follow else "")
    stream = api().stream("GET", _path(args.name, "logs") + query)
    try:
        while True:
            print(next(stream)["line"], flush=args.follow)
    except StopIteration:
        pass
    return 0
