"""`hc snapshot create|ls|rollback|clone|rm|send`, `hc policy set|ls|rm|run` and `hc peer`:
snapshots of instances, the policies that take and thin them on a timer, and the hosts they
are sent to."""

from __future__ import annotations

import argparse

from homecloud.cli.lazy import api, follow, print_json, print_table
from homecloud.cli.parsers import listing_command, progress_options, show_progress

# `typing` costs `hc` milliseconds at start-up; only the type checker reads it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _path(instance: str, snapshot: str = "", action: str = "") -> str:
    from homecloud.client.paths import quoted

    path = f"/v1/instances/{quoted(instance)}/snapshots"
    if snapshot:
        path += f"/{quoted(snapshot)}"
    return path + (f"/{action}" if action else "")


def _ref(text: str) -> tuple[str, str]:
    from homecloud.snapshots.naming import parse_ref

    ref = parse_ref(text)
    return ref.instance, ref.snapshot


def register(commands: Any) -> None:
    snapshot = commands.add_parser(
        "snapshot", help="snapshots of instances: create, list, roll back, clone, remove",
        description="A snapshot covers everything an instance owns (its dataset and its "
        "volumes) at one instant; a running instance is paused for it, so it holds what a "
        "crash at that instant would have left. Snapshots are read-only and live in the pool "
        "until removed, or until their instance is removed.")
    actions = snapshot.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    create = actions.add_parser("create", help="snapshot an instance")
    create.add_argument("instance")
    create.add_argument("--name", help="the snapshot's name (default: the time in UTC, "
                        "e.g. 20261201T143000Z)")
    create.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    create.set_defaults(run=create_snapshot)

    ls = listing_command(actions, "ls", list_snapshots,
                         help="list snapshots (of one instance, or all)")
    ls.add_argument("instance", nargs="?")
    ls.add_argument("--replicas", action="store_true",
                    help="list the snapshots received from other hosts instead")

    rollback = actions.add_parser(
        "rollback", help="roll an instance back to a snapshot",
        description="Stop the instance, make its files what the snapshot holds, and start it "
        "again if it was running. Newer snapshots are kept.")
    rollback.add_argument("ref", metavar="INSTANCE@SNAPSHOT")
    rollback.set_defaults(run=rollback_snapshot)

    clone = actions.add_parser(
        "clone", help="a new instance from a snapshot",
        description="Create and start a new instance whose files are a copy-on-write fork of "
        "the snapshot (as fast as `hc run`). It gets its own name, address and machine id, "
        "and publishes no ports until asked.")
    clone.add_argument("ref", metavar="[HOST/]INSTANCE@SNAPSHOT",
                       help="HOST/: a snapshot received from that host (`hc snapshot ls "
                       "--replicas`)")
    clone.add_argument("--name", required=True, help="the new instance's name")
    clone.add_argument("--image", help="for a snapshot received from another host: the image "
                       "(here) whose service set makes the clone, e.g. postgres")
    clone.add_argument("--json", action="store_true", help="print the instance as JSON")
    progress_options(clone)
    clone.set_defaults(run=clone_snapshot)

    rm = actions.add_parser("rm", help="remove snapshots")
    rm.add_argument("ref", metavar="INSTANCE@SNAPSHOT", nargs="+")
    rm.set_defaults(run=remove_snapshots)
    send = actions.add_parser(
        "send", help="send an instance's newest snapshot to another homecloud host",
        description="Send the newest snapshot of the instance (all its datasets) to a peer "
        "(see `hc peer`), as the difference from the newest snapshot both hold. The stream "
        "is checksummed; the peer keeps it only whole and intact, under "
        "replicas/<this host>/. Progress shows each stream's bytes and rate; interrupted, "
        "the send stops and the peer keeps nothing of it.")
    send.add_argument("instance")
    send.add_argument("--to", required=True, metavar="PEER")
    send.add_argument("--json", action="store_true", help="print the result as JSON")
    progress_options(send)
    send.set_defaults(run=send_snapshot)
    register_policy(commands)
    register_peer(commands)


def register_peer(commands: Any) -> None:
    peer = commands.add_parser("peer", help="hosts to send snapshots to")
    actions = peer.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    add = actions.add_parser("add", help="add (or replace) a peer")
    add.add_argument("name")
    add.add_argument("--url", required=True, help="its front door, https://HOST[:PORT] (or "
                     "unix:/PATH: an agent's socket on this machine)")
    add.add_argument("--token", help="an admin's token on that host (`hc user token NAME` "
                     "there prints one)")
    add.add_argument("--ca", metavar="FILE", help="a CA certificate that vouches for its door")
    add.add_argument("--fingerprint", metavar="SHA256", help="or its door certificate's "
                     "SHA-256 fingerprint (`hc user token NAME` there prints it)")
    add.set_defaults(run=add_peer)
    listing_command(actions, "ls", list_peers, help="list peers")
    rm = actions.add_parser("rm", help="forget a peer")
    rm.add_argument("name")
    rm.set_defaults(run=remove_peer)


def register_policy(commands: Any) -> None:
    policy = commands.add_parser(
        "policy", help="snapshot policies: snapshot on a timer, keep counts per tier",
        description="A policy snapshots an instance on a systemd timer (in UTC; a host that "
        "was off catches up once), names those snapshots auto-<time>, and removes the ones "
        "its counts no longer keep. Buckets count back from the newest snapshot, so downtime "
        "never thins history; snapshots made by hand are never pruned.")
    actions = policy.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    put = actions.add_parser("set", help="set (or change) an instance's policy")
    put.add_argument("instance")
    put.add_argument("--keep", required=True, metavar="COUNTS",
                     help='counts per tier, e.g. "hourly=24 daily=7 weekly=4 monthly=12 '
                     'yearly=2" (tiers: minutely hourly daily weekly monthly yearly)')
    put.add_argument("--every", help="how often to snapshot: 1m..30m, 1h..12h, 1d or 1w "
                     "(default: the finest tier's period)")
    put.add_argument("--replicate-to", metavar="PEER",
                     help="send each new snapshot to this peer (see `hc peer`)")
    put.set_defaults(run=set_policy)
    listing_command(actions, "ls", list_policies, help="list snapshot policies")
    rm = actions.add_parser("rm", help="remove a policy and its timer (snapshots are kept)")
    rm.add_argument("instance")
    rm.set_defaults(run=remove_policy)
    run = actions.add_parser("run", help="run a policy now (what its timer does)")
    run.add_argument("instance")
    run.set_defaults(run=run_policy)


def create_snapshot(args: argparse.Namespace) -> int:
    body = {"name": args.name} if args.name else {}
    snap = api().call("POST", _path(args.instance), body)
    if args.json:
        print_json(snap)
    else:
        print(f"{snap['instance']}@{snap['name']} (consistent by: {snap['consistency']})")
    return 0


def _held(value: int | None) -> str:
    from homecloud.sizes import format_size

    return "unknown" if value is None else format_size(value)


def list_snapshots(args: argparse.Namespace) -> int:
    if args.replicas:
        received = api().call("GET", "/v1/replicas")
        if args.json:
            print_json(received)
        else:
            print_table([[f"{r['sender']}/{r['instance']}@{r['snapshot']}", r["created_utc"]]
                         for r in received], ["SNAPSHOT", "CREATED (UTC)"])
        return 0
    path = _path(args.instance) if args.instance else "/v1/snapshots"
    snaps = api().call("GET", path)
    if args.json:
        print_json(snaps)
        return 0
    rows = [[f"{s['instance']}@{s['name']}", s["created_utc"], _held(s["held"]),
             s.get("consistency") or "-", s["kept_by"] or "-",
             ", ".join(s["replicated_to"]) or "-"] for s in snaps]
    print_table(rows, ["SNAPSHOT", "CREATED (UTC)", "HELD", "CONSISTENT BY", "KEPT BY",
                       "REPLICATED TO"])
    return 0


def rollback_snapshot(args: argparse.Namespace) -> int:
    instance, snapshot = _ref(args.ref)
    info = api().call("POST", _path(instance, snapshot, "rollback"))
    print(f"{instance}: rolled back to {snapshot} ({info['state']})")
    return 0


def clone_snapshot(args: argparse.Namespace) -> int:
    from homecloud.cli.instances import _step_progress
    from homecloud.client.paths import quoted

    sender, slash, text = args.ref.rpartition("/")
    instance, snapshot = _ref(text)
    if slash:
        if not args.image:
            import sys

            print(f"hc: {args.ref} was received from {sender}: say which image makes the "
                  "clone with --image IMAGE (e.g. the one it runs there)", file=sys.stderr)
            return 1
        path = (f"/v1/replicas/{quoted(sender)}"
                + _path(instance, snapshot, "clone").removeprefix("/v1"))
        stream = api().stream("POST", path, {"name": args.name, "image": args.image})
    else:
        stream = api().stream("POST", _path(instance, snapshot, "clone"), {"name": args.name})
    info = follow(stream, f"cloning {args.ref} to {args.name}", show=show_progress(args),
                  describe=_step_progress)
    if args.json:
        print_json(info)
    else:
        print(info["name"])
    return 0


def remove_snapshots(args: argparse.Namespace) -> int:
    refs = [_ref(text) for text in args.ref]  # every one checked before any is removed
    client = api()
    for instance, snapshot in refs:
        client.call("DELETE", _path(instance, snapshot))
        print(f"removed {instance}@{snapshot}")
    return 0


def _policy_path(instance: str, action: str = "") -> str:
    from homecloud.client.paths import quoted

    return f"/v1/instances/{quoted(instance)}/policy" + (f"/{action}" if action else "")


def set_policy(args: argparse.Namespace) -> int:
    body = {"keep": args.keep}
    if args.every:
        body["every"] = args.every
    if args.replicate_to:
        body["replicate_to"] = args.replicate_to
    policy = api().call("PUT", _policy_path(args.instance), body)
    print(f"{policy['instance']}: {policy['keep']}, every {_every(policy['every'])}")
    if policy.get("overrides"):
        print(f"this policy wins over config.yaml's {policy['overrides']!r} for "
              f"{policy['instance']}; `hc policy rm {policy['instance']}` brings that back")
    return 0


def _every(seconds: int) -> str:
    from homecloud.snapshots.schedule import format_every

    return format_every(seconds)


def list_policies(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    policies = api().call("GET", "/v1/policies")
    if args.json:
        print_json(policies)
        return 0

    def last(p: dict[str, Any]) -> str:
        if p["last_run"] is None:
            return "-"
        when = datetime.fromtimestamp(p["last_run"], UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return f"{when} {p['last_snapshot'] or ''}".strip()

    def source(p: dict[str, Any]) -> str:
        if p.get("config_policy"):
            return f"config: {p['config_policy']}"
        return "cli" + (f" (over config: {p['overrides']})" if p.get("overrides") else "")

    rows = [[p["instance"], source(p), p["keep"], _every(p["every"]), p["replicate_to"] or "-",
             last(p), p["last_error"] or "-"] for p in policies]
    print_table(rows, ["INSTANCE", "SOURCE", "KEEP", "EVERY", "REPLICATE TO", "LAST RUN (UTC)",
                       "ERROR"])
    return 0


def remove_policy(args: argparse.Namespace) -> int:
    answer = api().call("DELETE", _policy_path(args.instance))
    print(f"removed the policy of {args.instance}")
    if answer.get("applies"):
        print(f"config.yaml's policy {answer['applies']!r} applies to {args.instance} again")
    return 0


def run_policy(args: argparse.Namespace) -> int:
    result = api().call("POST", _policy_path(args.instance, "run"))
    print(f"{args.instance}@{result['created']}" + "".join(
        f"\npruned {args.instance}@{name}" for name in result["pruned"]))
    if result["error"]:
        import sys

        print(f"hc: {result['error']}", file=sys.stderr)
        return 1
    return 0


def send_snapshot(args: argparse.Namespace) -> int:
    from homecloud.client.paths import quoted

    events = api().stream("POST", f"/v1/instances/{quoted(args.instance)}/send",
                          {"to": args.to})
    result = follow(events, f"sending {args.instance} to {args.to}", show=show_progress(args))
    if args.json:
        print_json(result)
        return 0
    for stream in result["streams"]:
        print(f"sent {stream}")
    if not result["streams"]:
        print(f"{args.to} already holds {args.instance}@{result['snapshot']}")
    return 0


def add_peer(args: argparse.Namespace) -> int:
    import os

    body = {"name": args.name, "url": args.url}
    if args.token:
        body["token"] = args.token
    if args.ca:
        body["ca"] = os.path.abspath(args.ca)
    if args.fingerprint:
        body["fingerprint"] = args.fingerprint
    peer = api().call("POST", "/v1/peers", body)
    print(f"peer {peer['name']}: {peer['url']}")
    return 0


def list_peers(args: argparse.Namespace) -> int:
    peers = api().call("GET", "/v1/peers")
    if args.json:
        print_json(peers)
    else:
        print_table([[p["name"], p["url"], p["token"] or "-", trusted(p)] for p in peers],
                    ["PEER", "URL", "TOKEN", "CERTIFICATE"])
    return 0


def trusted(peer: dict[str, Any]) -> str:
    """What vouches for the peer's door certificate, briefly."""
    if peer.get("fingerprint"):
        return f"sha256 {peer['fingerprint'][:16]}..."
    if peer.get("ca"):
        return f"ca {peer['ca']}"
    return "-" if peer["url"].startswith("unix:") else "system CAs"


def remove_peer(args: argparse.Namespace) -> int:
    from homecloud.client.paths import quoted

    api().call("DELETE", f"/v1/peers/{quoted(args.name)}")
    print(f"removed peer {args.name}")
    return 0
