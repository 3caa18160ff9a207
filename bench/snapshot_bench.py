"""Snapshot benchmarks (issue 12). Run on purpose, never as a timed test.

- retention evaluation over N snapshots (a policy evaluates every few minutes), against sorting
  the same list, the least any evaluation must do (no root needed);
- with --devhost/--boot, in a dev host: `hc snapshot create` of a running container (volume
  included, frozen) vs the same work by hand (freeze its cgroup, `btrfs subvolume snapshot -r`
  of both datasets, thaw) and vs one `btrfs subvolume snapshot -r`, all through the same
  `hc-devhost exec` path, interleaved; `hc snapshot send` of a volume of --send-mib MiB to a
  peer (the same host's agent, over its socket: the HTTP route, framing and checksum
  included; with --second, also a second dev host through its front door: TLS, nginx) vs
  `btrfs send | btrfs receive` piped by hand on the host, --send-runs rounds in turn; then
  one more of each with the CPU it took, by systemd unit (agent, front door); an incremental
  of 10 MiB to each. --core-per-host runs the full sends as between two machines of one core
  each (the sending dev host and the by-hand pipe on CPU 0, the second host on CPU 1).

    /opt/homecloud/venv/bin/python bench/snapshot_bench.py [--snapshots 10000] [--runs 20]
    /opt/homecloud/venv/bin/python bench/snapshot_bench.py --boot [--second] [--send-mib 1024]
        [--send-runs 3] [--core-per-host]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchhost import bench_devhost, log  # noqa: E402

from homecloud.devhost import DevHost  # noqa: E402
from homecloud.snapshots.framing import CheckedReader, ChecksumWriter  # noqa: E402
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
    parser.add_argument("--framing-mib", type=int, default=1024,
                        help="MiB through the stream framing alone (no btrfs, no HTTP)")
    parser.add_argument("--send-runs", type=int, default=3,
                        help="rounds of full sends (by hand, then to each peer)")
    parser.add_argument("--second", action="store_true", help="also send to a second dev "
                        f"host ({DEFAULT_DEVHOST}-b, booted) through its front door")
    parser.add_argument("--second-devhost", metavar="NAME", help="... or to this running one")
    parser.add_argument("--core-per-host", action="store_true", help="during the full sends, "
                        "run each dev host on a core of its own (CPU 0: the sending host, "
                        "where the by-hand pipe runs too; CPU 1: the second host), as two "
                        "machines of one core each would")
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
    framing_cost(args.framing_mib)
    if args.boot or args.devhost:
        with bench_devhost(args.devhost, DEFAULT_DEVHOST, args.keep) as host, \
                ExitStack() as second:
            target = None
            if args.second or args.second_devhost:
                target = second.enter_context(bench_devhost(
                    args.second_devhost, f"{DEFAULT_DEVHOST}-b", args.keep))
            in_devhost(host, args.runs, args.send_mib, target, args.send_runs,
                       args.core_per_host)
    return 0


def framing_cost(mib: int) -> None:
    """What the framing (checksum and trailer) costs each side: ``mib`` MiB from a writer in
    one process, through a UNIX socket, to a checked reader in another; wall time and each
    side's CPU time."""
    block = os.urandom(1 << 20)
    ours, theirs = socket.socketpair()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        ours.close()
        with theirs.makefile("wb", buffering=0) as out:
            writer = ChecksumWriter(out)  # type: ignore[arg-type]
            for _ in range(mib):
                writer.write(block)
            writer.finish()
        os._exit(0)
    theirs.close()
    before = resource.getrusage(resource.RUSAGE_SELF)
    with ours.makefile("rb") as inp:
        reader = CheckedReader(inp)
        received = sum(len(data) for data in iter(lambda: reader.read(1 << 20), b""))
    after = resource.getrusage(resource.RUSAGE_SELF)
    _, status, sender = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    if status != 0 or received != mib << 20:
        raise SystemExit(f"framing: the sender failed ({status}) or {received} bytes arrived")
    receiver = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"framing alone, {mib} MiB writer -> UNIX socket -> checked reader: {seconds:.2f} s "
          f"({mib / seconds:.0f} MiB/s); CPU sender {sender.ru_utime + sender.ru_stime:.2f} s, "
          f"receiver {receiver:.2f} s")


def wall(host: DevHost, *argv: str) -> float:
    t = time.perf_counter()
    host.run(*argv)
    return (time.perf_counter() - t) * 1000


def pin(host: DevHost, cpu: int | None) -> None:
    """Every thread of ``host`` (all of its PID namespace) onto ``cpu``; None: onto every CPU
    again. What they start later inherits it (homecloud's units do not set CPUAffinity=)."""
    cpus = set(range(os.cpu_count() or 1)) if cpu is None else {cpu}
    namespace = os.readlink(f"/proc/{host.pid}/ns/pid")
    for entry in os.listdir("/proc"):
        try:
            if not entry.isdigit() or os.readlink(f"/proc/{entry}/ns/pid") != namespace:
                continue
            for task in os.listdir(f"/proc/{entry}/task"):
                os.sched_setaffinity(int(task), cpus)
        except OSError:  # gone meanwhile
            continue


@contextmanager
def core_per_host(host: DevHost, second: DevHost | None, split: bool) -> Iterator[None]:
    """With ``split``: ``host`` on CPU 0 and ``second`` on CPU 1 for the duration, so a send
    between them runs as between two machines of one core each (the by-hand pipe, on
    ``host``, gets the same one core); without: nothing changes."""
    hosts = [each for each in (host, second) if split and each is not None]
    if hosts and (os.cpu_count() or 1) < 2:
        raise SystemExit("--core-per-host needs two CPUs")
    mine = os.sched_getaffinity(0)
    for cpu, each in enumerate(hosts):
        log(f"{each.name} on CPU {cpu}")
        pin(each, cpu)
    if hosts:  # what this process starts in ``host`` (through nsenter) runs on its core too
        os.sched_setaffinity(0, {0})
    try:
        yield
    finally:
        os.sched_setaffinity(0, mine)
        for each in hosts:
            pin(each, None)


def in_devhost(host: DevHost, runs: int, send_mib: int, second: DevHost | None,
               send_runs: int, split: bool = False) -> None:
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
    measure_create(host, runs)

    log(f"{send_mib} MiB to send")
    host.run("dd", "if=/dev/urandom", f"of={POOL}/volumes/sb/data/blob", "bs=1M",
             f"count={send_mib}", "status=none")
    host.run("sync")
    host.hc("snapshot", "create", "sb", "--name", "full")
    source = f"{POOL}/.snapshots/volumes/sb/data/full"
    host.hc("peer", "add", "self", "--url", "unix:/run/homecloud/hc.sock")
    peers = [("self", "the same host's agent over its socket", host)]
    if second is not None:
        url, token, fingerprint = open_door(second)
        host.hc("peer", "add", "second", "--url", url, "--token", token, "--fingerprint",
                fingerprint)
        peers.append(("second", f"dev host {second.name} through its front door ({url})",
                      second))
    with core_per_host(host, second, split):
        full_sends(host, source, send_mib, peers, send_runs)
    for peer, where, _ in peers:
        host.hc("snapshot", "rm", "sb@incr", check=False)
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


def settle(*hosts: DevHost) -> None:
    """No send pays for the one before: the subvolumes deleted since are cleaned up (btrfs's
    cleaner thread would do it during the next send) and the pools' dirty data written out
    (the pipe by hand leaves what it received in the page cache; a peer lands a received
    snapshot as a read-only snapshot of it, which writes it out first)."""
    for each in hosts:
        each.run("sh", "-c", f"btrfs subvolume sync {POOL} && sync -f {POOL}")


def full_sends(host: DevHost, source: str, send_mib: int,
               peers: list[tuple[str, str, DevHost]], send_runs: int) -> None:
    """Rounds of the by-hand pipe and a full send to each peer, in turn (one send of 1 GiB
    varies by tens of percent on a shared machine), each from settled pools, then the CPU of
    one more of each."""
    by_hand: list[float] = []
    ours: dict[str, list[float]] = {peer: [] for peer, _, _ in peers}
    for round_ in range(send_runs):
        log(f"full sends, round {round_ + 1} of {send_runs}")
        settle(host)
        by_hand.append(wall(host, "sh", "-c", f"btrfs send -q {source} | btrfs receive -q "
                            f"{POOL}/byhand"))
        host.run("btrfs", "subvolume", "delete", "-c", f"{POOL}/byhand/full")
        for peer, _, target in peers:
            remove_replicas(target)  # so each round sends the whole snapshot
            settle(host, target)
            ours[peer].append(wall(host, "hc", "snapshot", "send", "sb", "--to", peer))
    base = statistics.median(by_hand)
    print(f"btrfs send | btrfs receive by hand on one host: p50 {base / 1000:.2f} s "
          f"({send_mib / base * 1000:.0f} MiB/s); runs {fmt_seconds(by_hand)}")
    for peer, where, _ in peers:
        ours_ms = statistics.median(ours[peer])
        print(f"send {send_mib} MiB to {where}: hc snapshot send p50 {ours_ms / 1000:.2f} s "
              f"({send_mib / ours_ms * 1000:.0f} MiB/s); runs {fmt_seconds(ours[peer])}; "
              f"throughput ratio to by hand {base / ours_ms:.2f}x (target >= 0.8x)")
    cpu_of_sends(host, source, peers)


# Run inside a dev host: a shell command, then its wall time and the CPU time of all its
# processes (the shell waits for each, so theirs add up into its own).
TIMES = """
import os, subprocess, sys, time
start = time.perf_counter()
subprocess.run(["sh", "-c", sys.argv[1]], check=True)
times = os.times()
print(time.perf_counter() - start, times.children_user + times.children_system)
"""
UNITS = ("hcd.service", "hc-frontdoor.service")  # the agent (its btrfs children too), nginx


def cgroup_dir(host: DevHost, unit: str) -> str | None:
    """The cgroup v2 directory of ``unit`` in ``host`` (None: it does not run): under
    /sys/fs/cgroup/unified on a hybrid host (dev hosts here), else under /sys/fs/cgroup."""
    cgroup = host.run("systemctl", "show", "-p", "ControlGroup", "--value", unit).stdout.strip()
    if not cgroup:
        return None
    hybrid = host.run("test", "-d", "/sys/fs/cgroup/unified", check=False).returncode == 0
    return ("/sys/fs/cgroup/unified" if hybrid else "/sys/fs/cgroup") + cgroup


def unit_cpu(host: DevHost) -> dict[str, float]:
    """CPU seconds used so far by each of UNITS in ``host``, from its cgroup's cpu.stat
    (systemd's CPUUsageNSec needs CPUAccounting=, which dev hosts leave off)."""
    out = {}
    for unit in UNITS:
        directory = cgroup_dir(host, unit)
        stat = host.run("cat", f"{directory}/cpu.stat").stdout if directory else ""
        usage = [line.split()[1] for line in stat.splitlines() if line.startswith("usage_usec")]
        out[unit] = int(usage[0]) / 1e6 if usage else 0.0  # not running: none used
    return out


def cpu_of_sends(host: DevHost, source: str,
                 peers: list[tuple[str, str, DevHost]]) -> None:
    """Where the CPU of one more full send to each peer goes, against the pipe by hand: with
    only two cores, the throughput ratio follows the CPU ratio."""
    settle(host)
    wall_s, cpu = (float(v) for v in host.run(
        "python3", "-c", TIMES, f"btrfs send -q {source} | btrfs receive -q {POOL}/byhand"
    ).stdout.split())
    host.run("btrfs", "subvolume", "delete", "-c", f"{POOL}/byhand/full")
    print(f"CPU of one full send: by hand (btrfs send + btrfs receive) {cpu:.2f} s in "
          f"{wall_s:.2f} s")
    for peer, where, target in peers:
        remove_replicas(target)
        settle(host, target)
        hosts = {host.name: host, target.name: target}
        before = {name: unit_cpu(each) for name, each in hosts.items()}
        took = wall(host, "hc", "snapshot", "send", "sb", "--to", peer) / 1000
        used = {f"{name} {unit}": after - before[name][unit]
                for name, each in hosts.items() for unit, after in unit_cpu(each).items()}
        parts = ", ".join(f"{what} {seconds:.2f} s" for what, seconds in used.items()
                          if seconds >= 0.005)
        print(f"CPU of one full send to {where}: {sum(used.values()):.2f} s in {took:.2f} s "
              f"({parts})")


def measure_create(host: DevHost, runs: int) -> None:
    """`hc snapshot create` of the running container `sb` (its dataset and one volume) against
    the same work by hand (freeze its cgroup, snapshot both datasets, thaw) and against one
    `btrfs subvolume snapshot -r`, interleaved."""
    cgroup = cgroup_dir(host, "hc-sb.service")
    if cgroup is None:
        raise SystemExit("the container sb does not run: nothing to freeze")
    datasets = (f"{POOL}/instances/sb", f"{POOL}/volumes/sb/data")
    ours, same, single = [], [], []
    for i in range(runs):
        ours.append(wall(host, "hc", "snapshot", "create", "sb", "--name", f"b{i}"))
        same.append(wall(host, "sh", "-c", f"echo 1 > {cgroup}/cgroup.freeze && until grep -q "
                         f"'frozen 1' {cgroup}/cgroup.events; do :; done; " + "; ".join(
                             f"btrfs subvolume snapshot -r {path} {POOL}/byhand/s{i}-{n} "
                             ">/dev/null" for n, path in enumerate(datasets))
                         + f"; echo 0 > {cgroup}/cgroup.freeze"))
        single.append(wall(host, "btrfs", "subvolume", "snapshot", "-r", datasets[0],
                           f"{POOL}/byhand/b{i}"))
        host.hc("snapshot", "rm", f"sb@b{i}")
        host.run("sh", "-c", f"btrfs subvolume delete -c {POOL}/byhand/* >/dev/null")
    p50, by_hand, base = (statistics.median(v) for v in (ours, same, single))
    print(f"hc snapshot create (2 datasets, frozen) p50 {p50:.1f} ms; the same by hand "
          f"(freeze, 2 x btrfs subvolume snapshot -r, thaw) p50 {by_hand:.1f} ms; one btrfs "
          f"subvolume snapshot -r p50 {base:.1f} ms; ratios {p50 / by_hand:.2f}x to the same "
          f"work, {p50 / base:.2f}x to one snapshot (target <= 1.5x)")


def fmt_seconds(values: list[float]) -> str:
    return " ".join(f"{value / 1000:.2f}" for value in values)


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
