"""`hc`: the homecloud command line.

A thin client: every command is one or two API calls to the agent. Start-up time matters (the
user types these all day), so only argparse and the small client load up front; each command
imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import sys

from homecloud import __version__
from homecloud.cli.lazyparsers import Parser, RawDescriptionFormatter
from homecloud.errors import exit_status

# `typing` and `collections.abc` cost `hc` start-up time; only the type checker reads them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

# The module that registers each command word: `hc WORD ...` imports only that module, and
# builds only the parsers its words reach (lazyparsers.py); --help and unknown words import all,
# no command word (`hc --version`) none.
COMMAND_MODULES = {
    **dict.fromkeys(("run", "ls", "inspect", "start", "stop", "restart", "rm", "exec",
                     "shell", "console", "logs"), "instances"),
    "image": "images", "pool": "pool", "network": "network", "dns": "network",
    "doctor": "doctor", "user": "frontdoor", "route": "frontdoor",
    "snapshot": "snapshots", "policy": "snapshots", "peer": "snapshots", "lambda": "lambdas",
    "machine": "machines", "provision": "machines",
}
MODULES = ("instances", "images", "pool", "network", "frontdoor", "lambdas", "snapshots",
           "machines", "doctor")  # --help's order

EPILOG = """\
examples:
  hc image build debian              build a Debian image (debootstrap)
  hc run debian --name web -p 8080:80
                                     a booted container, ready when this returns,
                                     its port 80 published on the host's 8080
  hc exec web -- cat /etc/hostname
  hc run debian -- sh -c 'echo hi'   run a command instead of booting
  hc image import alpine ./alpine.tar.gz
  hc image ls --json
  hc pool                            show the storage pool
  hc network ls / hc dns ls          addresses, ports and the names served
  hc doctor                          what the host lacks, and how to fix it

exit codes: 0 ok, 1 user error, 2 usage, 3 the host lacks something.
The agent listens on /run/homecloud/hc.sock (override with $HC_SOCKET).
Another host, through its front door: hc --host https://HOST --token TOKEN
[--fingerprint SHA256 | --ca FILE] COMMAND ... (or $HC_HOST, $HC_TOKEN, $HC_FINGERPRINT, $HC_CA).
"""
# Options before the command word that take a value (to find the command word).
GLOBAL_OPTIONS = {"--host": "HC_HOST", "--token": "HC_TOKEN", "--fingerprint": "HC_FINGERPRINT",
                  "--ca": "HC_CA"}


def build_parser(words: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser for ``words``: that command's, built only as deep as ``words`` go; every
    command's (for the listing) when they ask for hc's help or name no known command; none
    when they name no command (`hc`, `hc --version`: the version, or the usage error that a
    command is required, lists no command)."""
    at = _command_index(words)
    first = None if at is None or at == len(words) else words[at]
    parser = Parser(prog="hc", description="homecloud: containers, VMs and services on this "
                    "host, fast.", epilog=EPILOG, formatter_class=RawDescriptionFormatter,
                    words=() if at is None else words[at:])
    parser.add_argument("--version", action="version", version=f"hc {__version__}")
    remote = parser.add_argument_group("another host, through its front door")
    remote.add_argument("--host", metavar="URL", help="https://HOST[:PORT] ($HC_HOST)")
    remote.add_argument("--token", help="an admin's bearer token ($HC_TOKEN)")
    remote.add_argument("--fingerprint", metavar="SHA256", help="trust the door's certificate "
                        "with this SHA-256 fingerprint, which `hc user token` prints "
                        "($HC_FINGERPRINT)")
    remote.add_argument("--ca", metavar="FILE", help="trust certificates signed by FILE "
                        "($HC_CA; default: the system's)")
    commands = parser.add_subparsers(dest="area", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    if first in COMMAND_MODULES:
        wanted: tuple[str, ...] = (COMMAND_MODULES[first],)
    else:
        wanted = () if at == len(words) else MODULES
    for name in wanted:
        # The builtin, not importlib.import_module: the importlib package is one more module
        # for every `hc` to load.
        __import__(f"homecloud.cli.{name}", fromlist=("register",)).register(commands)
    parser.complete()
    return parser


def _command_index(words: Sequence[str]) -> int | None:
    """Where the command word is in ``words``: its index, len(words) if there is none, None if
    help for hc itself comes first (which lists every command)."""
    skip = False
    for index, word in enumerate(words):
        if skip:
            skip = False
        elif _asks_help(word):
            return None
        elif word in GLOBAL_OPTIONS:
            skip = True
        elif not word.startswith("-"):
            return index
    return len(words)


def _asks_help(word: str) -> bool:
    """Whether argparse reads ``word`` as -h/--help: also -hX (-h first) and a long option's
    prefix (--he, --hel)."""
    if word.startswith("--"):
        return len(word) > 2 and "--help".startswith(word.partition("=")[0])
    return word.startswith("-h")


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" is a command for the instance, never options for hc
    # (argparse's REMAINDER would swallow options given after the image).
    command: list[str] | None = None
    if "--" in words:
        split = words.index("--")
        words, command = words[:split], words[split + 1:]
    parser = build_parser(words)
    args = parser.parse_args(words)
    if command is not None:
        if not hasattr(args, "command_name"):
            parser.error(f"`hc {args.area}` takes no command after `--`")
        args.command = command
    import os

    # The client reads where to go from the environment, as it does $HC_SOCKET.
    for option, variable in GLOBAL_OPTIONS.items():
        value = getattr(args, option.removeprefix("--"))
        if value is not None:
            os.environ[variable] = value
    return exit_status("hc", lambda: args.run(args))


if __name__ == "__main__":
    sys.exit(main())
