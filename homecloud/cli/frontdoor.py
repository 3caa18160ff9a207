"""`hc user ...` and `hc route ...`: who may pass the front door, and where it leads."""

from __future__ import annotations

import argparse
import sys

from homecloud.cli.lazy import api, print_json, print_table
from homecloud.cli.parsers import listing_command

# `typing` costs `hc` milliseconds at start-up; only the type checker reads it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def register(commands: Any) -> None:
    users = commands.add_parser("user", help="front-door users: add, ls, rm, passwd, token")
    actions = users.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    add = actions.add_parser("add", help="add a user (the password is asked, or read from "
                             "stdin when it is not a terminal)")
    add.add_argument("name")
    add.add_argument("--group", action="append", default=[], metavar="GROUP",
                     help="a group the user is in (repeat for more)")
    add.add_argument("--admin", action="store_true", help="may use every route")
    add.set_defaults(run=add_user)
    listing_command(actions, "ls", list_users, help="users, their groups and login bans")
    remove = actions.add_parser("rm", help="remove a user, their sessions and tokens")
    remove.add_argument("name")
    remove.set_defaults(run=remove_user)
    passwd = actions.add_parser("passwd", help="set a user's password (logs their browsers "
                                "out)")
    passwd.add_argument("name")
    passwd.set_defaults(run=set_password)
    token = actions.add_parser("token", help="print a new bearer token for scripts")
    token.add_argument("name")
    token.set_defaults(run=new_token)

    routes = commands.add_parser("route", help="front-door routes: add, ls, rm")
    actions = routes.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    add = actions.add_parser("add", help="route a host name or path to an instance's port",
                             description="HOST_OR_PATH: blog.example.home, /app or "
                             "blog.example.home/app")
    add.add_argument("match", metavar="HOST_OR_PATH")
    add.add_argument("--to", required=True, metavar="INSTANCE:PORT")
    add.add_argument("--group", help="only users in this group (and admins)")
    add.add_argument("--public", action="store_true", help="no login needed")
    add.set_defaults(run=add_route)
    listing_command(actions, "ls", list_routes, help="the routes")
    remove = actions.add_parser("rm", help="remove a route")
    remove.add_argument("match", metavar="HOST_OR_PATH")
    remove.set_defaults(run=remove_route)


def read_password() -> str:
    """From a prompt (typed twice) on a terminal, else the first line of stdin: never from
    the command line, where other users see it."""
    from homecloud.errors import UserError

    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise UserError("the passwords differ; nothing changed")
        return password
    line = sys.stdin.readline()
    if not line:
        raise UserError("no password on stdin (pipe it in, or run on a terminal)")
    return line.rstrip("\r\n")


def _user_path(name: str, rest: str = "") -> str:
    from homecloud.client.paths import quoted

    return f"/v1/users/{quoted(name)}{rest}"


def add_user(args: argparse.Namespace) -> int:
    password = read_password()
    api().call("POST", "/v1/users", {"name": args.name, "password": password,
                                     "groups": args.group, "admin": args.admin})
    return 0


def _when(until: float) -> str:
    import time

    return f"banned {max(0, int(until - time.time()))}s more"


def list_users(args: argparse.Namespace) -> int:
    data = api().call("GET", "/v1/users")
    if args.json:
        print_json(data)
        return 0
    print_table([[u["name"], ",".join(u["groups"]) or "-", "yes" if u["admin"] else "no",
                  str(u["tokens"]), _when(u["banned_until"]) if u["banned_until"] else "-"]
                 for u in data["users"]], ["NAME", "GROUPS", "ADMIN", "TOKENS", "LOGIN"])
    for ban in data["bans"]:
        if ban["key"].startswith("address:"):
            print(f"address {ban['key'].removeprefix('address:')}: {_when(ban['until'])}")
    return 0


def remove_user(args: argparse.Namespace) -> int:
    api().call("DELETE", _user_path(args.name))
    return 0


def set_password(args: argparse.Namespace) -> int:
    api().call("PUT", _user_path(args.name, "/password"), {"password": read_password()})
    return 0


def new_token(args: argparse.Namespace) -> int:
    reply = api().call("POST", _user_path(args.name, "/tokens"))
    print(reply["token"])
    # On stderr: scripts read the token alone from stdout.
    print(f"the front door's certificate: --fingerprint {reply['fingerprint']}",
          file=sys.stderr)
    return 0


def add_route(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"match": args.match, "to": args.to, "public": args.public}
    if args.group:
        body["group"] = args.group
    api().call("POST", "/v1/routes", body)
    return 0


def list_routes(args: argparse.Namespace) -> int:
    routes = api().call("GET", "/v1/routes")
    if args.json:
        print_json(routes)
        return 0
    print_table([[r["name"], r["target"], r["address"] or "-",
                  "public" if r["public"] else (r["group"] or "any user")] for r in routes],
                ["ROUTE", "TO", "ADDRESS", "WHO"])
    return 0


def remove_route(args: argparse.Namespace) -> int:
    from homecloud.client.paths import quoted

    api().call("DELETE", f"/v1/routes?match={quoted(args.match)}")
    return 0
