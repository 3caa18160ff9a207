"""Snapshot benchmarks (issue 12). Run on purpose, never as a timed test.

- retention evaluation over N snapshots (a policy evaluates every few minutes), against sorting
  the same list, the least any evaluation must do (no root needed);
- with --devhost/--boot, in a dev host: `hc snapshot create` of a running container (volume
  included, frozen) vs `btrfs subvolume snapshot -r` by hand, both through the same
  `hc-devhost exec` path, interleaved; `hc snapshot send` of a volume of --send-mib MiB to a
  peer (the same host's agent, over its socket: the HTTP route, framing and digest included;
  with --second, also a second dev host through its front door: TLS, nginx) vs `btrfs send |
  btrfs receive` piped by hand on the host; an incremental of 10 MiB to each.

    /opt/homecloud/venv/bin/python bench/snapshot_bench.py [--snapshots 10000] [--runs 20]
    /opt/homecloud/venv/bin/python bench/snapshot_bench.py --boot [--second] [--send-mib 1024]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchhost import bench_devhost, log  # noqa: E402

from homecloud.devhost import DevHost  # noqa: E402
from homecloud.snapshots.retention import evaluate, parse_keep  # noqa: E402

POOL = "/var/lib/homecloud/pool"
DEFAULT_DEVHOST = "bench-snap"

KEEP = "hourly=24 daily=7 weekly=4 monthly=12 yearly=2"
START = 1_700_000_000.0


def timed(fn: object, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--boot", action="store_true",
                        help=f"also measure in a dev host of its own ({DEFAULT_DEVHOST})")
    parser.add_argument("--devhost", metavar="NAME", help="... or in this running dev host")
    parser.add_argument("--keep", action="store_true", help="leave the booted dev host running")
    parser.add_argument("--send-mib", type=int, default=1024)
    parser.add_argument("--second", action="store_true", help="also send to a second dev "
                        f"host ({DEFAULT_DEVHOST}-b, booted) through its front door")
    parser.add_argument("--second-devhost", metavar="NAME", help="... or to this running one")
    args = parser.parse_args()
    # One every 15 minutes: 10,000 is about 104 days of them.
    snaps = [(f"auto-{i:06d}", START + i * 900.0) for i in range(args.snapshots)]
    keep = parse_keep(KEEP)
    decision = evaluate(snaps, keep)
    evaluation = timed(lambda: evaluate(snaps, keep), args.runs)
    sorting = timed(lambda: sorted(snaps, key=lambda s: (s[1], s[0]), reverse=True), args.runs)
    p50, base = statistics.median(evaluation), statistics.median(sorting)
    print(f"retention over {args.snapshots} snapshots ({KEEP}): kept {len(decision.keep)}, "
          f"pruned {len(decision.prune)}")
    print(f"evaluate p50 {p50:.2f} ms  max {max(evaluation):.2f} ms; sort alone p50 "
          f"{base:.2f} ms; ratio {p50 / base:.1f}x")
    if args.boot or args.devhost:
        with bench_devhost(args.devhost, DEFAULT_DEVHOST, args.keep) as host, \
                ExitStack() as second:
            target = None
            if args.second or args.second_devhost:
                target = second.enter_context(bench_devhost(
                    args.second_devhost, f"{DEFAULT_DEVHOST}-b", args.keep))
            in_devhost(host, args.runs, args.send_mib, target)
    return 0


def wall(host: DevHost, *argv: str) -> float:
    t = time.perf_counter()
    host.run(*argv)
    return (time.perf_counter() - t) * 1000


def in_devhost(host: DevHost, runs: int, send_mib: int, second: DevHost | None) -> None:
    log("a running container with a data volume")
    host.hc("image", "build", "busybox", "-q", check=False)
    host.hc("rm", "-f", "sb", check=False)
    host.hc("run", "busybox", "--name", "sb", "-d", "--network", "none", "--", "sleep", "1d")
    host.run("rm", "-rf", f"{POOL}/volumes/sb", check=False)
    for each in (host, second):
        if each is not None:
            remove_replicas(each)
    host.run("mkdir", "-p", f"{POOL}/volumes/sb", f"{POOL}/byhand")
    host.run("btrfs", "subvolume", "create", f"{POOL}/volumes/sb/data")
    ours, theirs = [], []
    for i in range(runs):
        ours.append(wall(host, "hc", "snapshot", "create", "sb", "--name", f"b{i}"))
        theirs.append(wall(host, "btrfs", "subvolume", "snapshot", "-r", f"{POOL}/instances/sb",
                           f"{POOL}/byhand/b{i}"))
        host.hc("snapshot", "rm", f"sb@b{i}")
        host.run("btrfs", "subvolume", "delete", "-c", f"{POOL}/byhand/b{i}")
    p50, base = statistics.median(ours), statistics.median(theirs)
    print(f"hc snapshot create (2 datasets, frozen) p50 {p50:.1f} ms; btrfs subvolume "
          f"snapshot -r by hand p50 {base:.1f} ms; ratio {p50 / base:.2f}x (target <= 1.5x)")

    log(f"{send_mib} MiB to send")
    host.run("dd", "if=/dev/urandom", f"of={POOL}/volumes/sb/data/blob", "bs=1M",
             f"count={send_mib}", "status=none")
    host.run("sync")
    host.hc("snapshot", "create", "sb", "--name", "full")
    source = f"{POOL}/.snapshots/volumes/sb/data/full"
    by_hand = wall(host, "sh", "-c", f"btrfs send -q {source} | btrfs receive -q "
                   f"{POOL}/byhand")
    host.run("btrfs", "subvolume", "delete", "-c", f"{POOL}/byhand/full")
    print(f"btrfs send | btrfs receive by hand on one host: {by_hand / 1000:.2f} s "
          f"({send_mib / by_hand * 1000:.0f} MiB/s)")
    host.hc("peer", "add", "self", "--url", "unix:/run/homecloud/hc.sock")
    peers = [("self", "the same host's agent over its socket")]
    if second is not None:
        url, token, fingerprint = open_door(second)
        host.hc("peer", "add", "second", "--url", url, "--token", token, "--fingerprint",
                fingerprint)
        peers.append(("second", f"dev host {second.name} through its front door ({url})"))
    for peer, where in peers:
        log(f"sending to {where}")
        host.hc("snapshot", "rm", "sb@incr", check=False)  # so `full` is the newest again
        ours_ms = wall(host, "hc", "snapshot", "send", "sb", "--to", peer)
        print(f"send {send_mib} MiB to {where}: hc snapshot send {ours_ms / 1000:.2f} s "
              f"({send_mib / ours_ms * 1000:.0f} MiB/s); throughput ratio to by hand "
              f"{by_hand / ours_ms:.2f}x (target >= 0.8x)")
        host.run("dd", "if=/dev/urandom", f"of={POOL}/volumes/sb/data/blob2", "bs=1M",
                 "count=10", "conv=notrunc", "status=none")
        host.hc("snapshot", "create", "sb", "--name", "incr")
        incremental = wall(host, "hc", "snapshot", "send", "sb", "--to", peer)
        print(f"incremental send of 10 MiB of changes to {where}: {incremental:.0f} ms")
    host.hc("rm", "-f", "sb", check=False)
    host.run("sh", "-c", f"rm -rf {POOL}/volumes/sb", check=False)
    for each in (host, second):
        if each is not None:
            remove_replicas(each)


def remove_replicas(host: DevHost) -> None:
    """Every received dataset and snapshot (read-only subvolumes: rm alone cannot)."""
    host.run("sh", "-c", f"cd {POOL} && btrfs subvolume list . | awk '{{print $NF}}' | "
             "grep -E '(^|/)replicas/' | sort -r | while read -r p; do btrfs subvolume delete "
             f"-c \"$p\" >/dev/null; done; rm -rf replicas .snapshots/replicas", check=False)


def open_door(host: DevHost) -> tuple[str, str, str]:
    """An admin on ``host``'s front door: its URL, the admin's token, the certificate's
    fingerprint."""
    if host.address is None:
        raise SystemExit(f"dev host {host.name} has no address of its own")
    host.run("sh", "-c", "for i in $(seq 100); do systemctl is-active -q hc-frontdoor && "
             "exit 0; sleep 0.2; done; exit 1")
    host.run(*host.hc_argv(), "user", "add", "bench", "--admin", input="bench password 1\n",
             check=False)
    result = host.hc("user", "token", "bench")
    return (f"https://{host.address}", result.stdout.strip(),
            result.stderr.strip().rsplit(" ", 1)[-1])


if __name__ == "__main__":
    sys.exit(main())
