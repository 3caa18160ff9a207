"""`hc lambda ...`: programs run in a fresh sandboxed process for every HTTP request."""

from __future__ import annotations

import argparse

from homecloud.cli.lazy import api, print_json, print_table
from homecloud.cli.parsers import listing_command, logs_command

# `typing` costs `hc` milliseconds at start-up; only the type checker reads it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CONTRACT = """\
how a request reaches the lambda (CGI style):
  every request runs PATH in a new process, inside the lambda's own unit hc-NAME.service: a
  dynamic user, a read-only file system, a private /tmp, no network unless --network, at most
  --memory and --timeout per request; the code is mounted read-only at /lambda. The unit
  starts on a request (its socket hc-NAME.socket) and stops after --idle without one: nothing
  of it runs between bursts. A lambda is an instance of kind lambda: `hc ls` shows it,
  `hc stop NAME` closes its socket (requests get 503), `hc start NAME` opens it again.
  in:  REQUEST_METHOD, SCRIPT_NAME (the route), PATH_INFO (the rest of the path),
       QUERY_STRING, CONTENT_TYPE, CONTENT_LENGTH, HTTP_* (the other headers), REMOTE_USER,
       REMOTE_ADDR in the environment; the request body on stdin
  out: on stdout, optional headers (Status: 404 Not Found, Content-Type: ..., any other)
       and a blank line, then the body; without headers: 200, text/plain
  a non-zero exit answers 502, a run past --timeout 504 (everything it started is stopped),
  more than 16 MiB of output 502; stderr goes to `hc lambda logs NAME`.

examples:
  hc lambda deploy hello ./hello.sh --route /hello
  curl -u alice:secret https://HOST/hello?x=1
"""


def register(commands: Any) -> None:
    lambdas = commands.add_parser("lambda", help="lambdas: deploy, ls, inspect, logs, rm")
    actions = lambdas.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    deploy = actions.add_parser(
        "deploy", help="deploy (or replace) a lambda: an executable, or a folder with one",
        epilog=CONTRACT, formatter_class=argparse.RawDescriptionHelpFormatter)
    deploy.add_argument("name")
    deploy.add_argument("path", help="an executable (a script with #!, a binary) or a folder "
                        "with exactly one at its top")
    deploy.add_argument("--route", metavar="HOST_OR_PATH",
                        help="serve it through the front door here (/hello, host, host/path)")
    deploy.add_argument("--env", action="append", default=[], metavar="K=V",
                        help="an environment variable (repeat for more)")
    deploy.add_argument("--memory", help="memory limit per request (default 128M)")
    deploy.add_argument("--timeout", help="time limit per request (default 10s)")
    deploy.add_argument("--idle", help="its unit stops after this long without a request "
                        "(default 2s)")
    deploy.add_argument("--network", action="store_true", help="may reach the network")
    deploy.add_argument("--public", action="store_true", help="the route needs no login")
    deploy.add_argument("--group", help="the route is only for this group (and admins)")
    deploy.set_defaults(run=deploy_lambda)
    listing_command(actions, "ls", list_lambdas, help="deployed lambdas")
    inspect = actions.add_parser("inspect", help="describe a lambda (JSON)")
    inspect.add_argument("name")
    inspect.add_argument("--json", action="store_true", help="JSON (the only form it has)")
    inspect.set_defaults(run=inspect_lambda)
    logs_command(actions, show_logs, help="what its requests wrote to stderr", lines=50)
    remove = actions.add_parser("rm", help="remove a lambda, its route and its code")
    remove.add_argument("name")
    remove.set_defaults(run=remove_lambda)


def _path(name: str, rest: str = "") -> str:
    from homecloud.client.paths import quoted

    return f"/v1/lambdas/{quoted(name)}{rest}"


def deploy_lambda(args: argparse.Namespace) -> int:
    import os

    from homecloud.errors import UserError

    env = {}
    for item in args.env:
        key, equals, value = item.partition("=")
        if not equals:
            raise UserError(f"--env {item!r} is invalid: use NAME=VALUE")
        env[key] = value
    body: dict[str, Any] = {"name": args.name, "path": os.path.abspath(args.path), "env": env,
                            "network": args.network, "public": args.public}
    for key in ("route", "memory", "timeout", "group", "idle"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    api().call("POST", "/v1/lambdas", body)
    return 0


def list_lambdas(args: argparse.Namespace) -> int:
    items = api().call("GET", "/v1/lambdas")
    if args.json:
        print_json(items)
        return 0
    print_table([[i["name"], i["route"] or "-", str(i["version"]), i["entry"],
                  f"{i['memory'] >> 20}M", f"{i['timeout']:g}s",
                  "yes" if i["network"] else "no", i["state"]] for i in items],
                ["NAME", "ROUTE", "VERSION", "RUNS", "MEMORY", "TIMEOUT", "NETWORK", "STATE"])
    return 0


def inspect_lambda(args: argparse.Namespace) -> int:
    print_json(api().call("GET", _path(args.name)))
    return 0


def show_logs(args: argparse.Namespace) -> int:
    query = f"?lines={args.lines}" + ("&follow=1" if args.follow else "")
    for item in api().stream("GET", _path(args.name, "/logs") + query):
        print(item["line"], flush=args.follow)
    return 0


def remove_lambda(args: argparse.Namespace) -> int:
    api().call("DELETE", _path(args.name))
    return 0
