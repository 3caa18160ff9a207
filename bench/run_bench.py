"""`hc run` benchmark: homecloud containers against the same containers made by hand, same run.

Boots its own dev host (a real systemd with a btrfs pool), makes sure the `busybox` and `debian`
images exist, then measures, interleaved so both sides share the same conditions:

    boot     `hc run debian --name N` (returns when the guest's systemd is READY), and with
             `--network none` (loopback only, the same work as by hand)
             vs by hand: btrfs snapshot of the image + hostname and machine-id written +
             `systemd-run -p Type=notify ... systemd-nspawn <homecloud's flags> --boot`
    command  `hc run busybox --rm -- true`, with `--network none` (the same work as by
             hand) and without --rm (creation + wait)
             vs by hand: snapshot + identity + `systemd-run --wait --pipe -p Type=exec
             systemd-nspawn <homecloud's flags> --as-pid2 ... true` + snapshot deleted
    parallel 20 booted `hc run debian` at once vs the same 20 one after another, and 20 by
             hand at once (what the machine itself allows)

With ``--mode network`` it measures instead what networking costs a booted container:
`hc run debian --name N` (lease, namespace and veth, DNS name) interleaved with
`hc run debian --network none --name N` (loopback only), the p50 difference against the 50 ms
target. The dev host must have a network of its own (the default for a booted one).

Only the start is timed; removal between repetitions is not. Every command runs in the dev host
through the same `nsenter` launcher, so both sides pay the same launch cost (shown as its own
row, with the CLI's start-up). Needs root. Not a test: run it on purpose. Where the agent's
share of the time goes, step by step: bench/run_trace.py (run inside the dev host).

    /opt/homecloud/venv/bin/python bench/run_bench.py [--mode containers|network]
        [--reps 20] [--parallel 20] [--devhost NAME] [--keep] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from benchhost import cleaned, devhost_arguments, log, measure_and_print, parse_root_arguments
from timing import interleaved, p50_p95_ms

from homecloud import devhost as devhosts
from homecloud.errors import HostError
from homecloud.instances.drivers.nspawn import nspawn_argv
from homecloud.instances.manager import SLICE
from homecloud.instances.spec import InstanceSpec

DEVHOST = "bench-run"
POOL = Path("/var/lib/homecloud/pool")
BY_HAND_DIR = POOL / "bench-by-hand"  # outside images/ and instances/: the agent ignores it
WARMUP = 2
# The unit properties of the by-hand command in the issue, and KillMode as homecloud has it.
# homecloud's unit also sets accounting, TasksMax, DevicePolicy and WatchdogSec
# (homecloud/instances/drivers/nspawn.py nspawn_service), which a person typing this leaves out.
UNIT_PROPERTIES = ("Delegate=yes", "KillMode=mixed", "NotifyAccess=all")
# Against the same work by hand (--network none: by hand makes no network either).
BOOT_TARGET_RATIO = 1.1
COMMAND_TARGET_RATIO = 1.3
NETWORK_TARGET_MS = 50.0  # what networking may add to p50 of a booted `hc run`


@dataclass(frozen=True)
class Guest:
    """Runs commands inside the dev host: one `nsenter` prefix worked out once, so finding the
    guest's PID (a /proc scan) is never inside a timed call."""

    prefix: tuple[str, ...]
    env: dict[str, str]
    hc: tuple[str, ...]
    python: str

    @classmethod
    def of(cls, host: devhosts.DevHost) -> Guest:
        return cls(tuple(host.command([])), host.environment(), tuple(host.hc_argv()),
                   host.python)

    def run(self, argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        # Output goes to files, not pipes: `hc run IMAGE -- CMD` hands its stdout to the unit,
        # and systemd keeps it open while the unit is loaded, so a pipe would never see EOF.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            returncode = subprocess.run([*self.prefix, *argv], env=self.env,
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        check=False).returncode
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(argv, returncode, out.read(), err.read())
        if check and result.returncode != 0:
            raise RuntimeError(f"`{' '.join(argv)}` in the dev host exited with "
                               f"{result.returncode}: {(result.stderr or result.stdout).strip()}")
        return result

    def timed(self, argv: Sequence[str], failures: list[str] | None = None) -> float:
        """Seconds ``argv`` took, launcher included. A failure stops the benchmark, or with
        ``failures``, is recorded there and measures NaN (left out of the figures)."""
        start = time.perf_counter()
        try:
            self.run(argv)
        except RuntimeError as exc:
            if failures is None:
                raise
            log(f"failed: {exc}")
            failures.append(str(exc).splitlines()[0])
            return math.nan
        return time.perf_counter() - start

    def hc_run(self, *args: str) -> list[str]:
        return [*self.hc, "run", "-q", *args]


# -- the work done by hand ------------------------------------------------------------------------

def _identity_script() -> str:
    """Snapshot $1 to $2 and write the identity homecloud writes (hostname $3, machine-id $4):
    without a machine-id the guest's systemd would do a slower first boot."""
    return ('btrfs subvolume snapshot "$1" "$2" >/dev/null'
            ' && printf "%s\\n" "$3" > "$2/etc/hostname"'
            ' && printf "%s\\n" "$4" > "$2/etc/machine-id"')


def by_hand_boot(name: str) -> list[str]:
    """Snapshot + identity + a Type=notify transient unit running nspawn with homecloud's flags;
    systemd-run returns when the start job is done, i.e. on READY."""
    machine_id = uuid.uuid4().hex
    root = BY_HAND_DIR / name
    spec = InstanceSpec(name=name, image="debian")
    nspawn = nspawn_argv(spec, root, machine_id, register=True)
    unit = _systemd_run(name, "notify") + nspawn
    return ["sh", "-c", _identity_script() + ' && shift 4 && exec "$@"', "sh",
            str(POOL / "images/debian"), str(root), name, machine_id, *unit]


def by_hand_command(name: str, command: Sequence[str]) -> list[str]:
    """Snapshot + identity + `systemd-run --wait --pipe` (the caller's stdio, as hc passes it)
    of a Type=exec unit running nspawn --as-pid2 with homecloud's flags + snapshot deleted."""
    machine_id = uuid.uuid4().hex
    root = BY_HAND_DIR / name
    spec = InstanceSpec(name=name, image="busybox", command=list(command))
    nspawn = nspawn_argv(spec, root, machine_id, register=True)
    unit = _systemd_run(name, "exec", "--wait", "--pipe") + nspawn
    return ["sh", "-c", 'root=$2; ' + _identity_script() + ' && shift 4 && "$@"; rc=$?; '
            'btrfs subvolume delete "$root" >/dev/null; exit $rc',
            "sh", str(POOL / "images/busybox"), str(root), name, machine_id, *unit]


def _systemd_run(name: str, service_type: str, *options: str) -> list[str]:
    argv = ["systemd-run", "-q", f"--unit=hb-{name}", f"--slice={SLICE}", *options,
            "-p", f"Type={service_type}"]
    for prop in UNIT_PROPERTIES:
        argv += ["-p", prop]
    return argv


def remove_by_hand(guest: Guest, name: str) -> None:
    """Stop the unit (a clean guest poweroff) and delete the snapshot, with anything nested."""
    guest.run(["systemctl", "stop", f"hb-{name}.service"], check=False)
    guest.run(["systemctl", "reset-failed", f"hb-{name}.service"], check=False)
    guest.run([guest.python, "-c", "import btrfsutil, os, sys\n"
               "if os.path.exists(sys.argv[1]):\n"
               "    btrfsutil.delete_subvolume(sys.argv[1], recursive=True)",
               str(BY_HAND_DIR / name)])


# -- set-up --------------------------------------------------------------------------------------

def ensure_images(guest: Guest) -> None:
    present = {image["name"] for image in json.loads(
        guest.run([*guest.hc, "image", "ls", "--json"]).stdout)}
    for recipe in ("busybox", "debian"):
        if recipe not in present:
            log(f"building image {recipe}" + (" (about a minute)" if recipe == "debian" else ""))
            guest.run([*guest.hc, "image", "build", recipe, "-q"])


def clean_leftovers(guest: Guest) -> None:
    """Remove what an interrupted run left: bench instances, by-hand units and snapshots."""
    names = [i["name"] for i in json.loads(guest.run([*guest.hc, "ls", "--json"]).stdout)
             if i["name"].startswith("bench-")]
    if names:
        guest.run([*guest.hc, "rm", "-f", *names], check=False)
    units = guest.run(["systemctl", "list-units", "--all", "--plain", "--no-legend",
                       "hb-*.service"], check=False).stdout.splitlines()
    listed = guest.run(["sh", "-c", f'ls "{BY_HAND_DIR}" 2>/dev/null'], check=False).stdout
    by_hand = {line.split()[0][len("hb-"):-len(".service")] for line in units if line.strip()}
    for name in sorted(by_hand | set(listed.split())):
        remove_by_hand(guest, name)
    guest.run(["mkdir", "-p", str(BY_HAND_DIR)])


# -- measurements --------------------------------------------------------------------------------

def hc_boot(guest: Guest, name: str, failures: list[str], *options: str) -> float:
    """Seconds `hc run debian --name NAME OPTIONS` took (until READY); removed, untimed."""
    elapsed = guest.timed(guest.hc_run("debian", "--name", name, *options), failures)
    guest.run([*guest.hc, "rm", "-f", name], check=False)
    return elapsed


def measure_boot(guest: Guest, reps: int, failures: list[str]) -> dict[str, list[float]]:
    def hc(i: int) -> float:
        return hc_boot(guest, f"bench-boot-{i}", failures)

    def hc_none(i: int) -> float:
        return hc_boot(guest, f"bench-bootn-{i}", failures, "--network", "none")

    def by_hand(i: int) -> float:
        name = f"hbboot{i}"
        elapsed = guest.timed(by_hand_boot(name), failures)
        remove_by_hand(guest, name)
        return elapsed

    return interleaved(reps, {"hc": hc, "hc_none": hc_none, "by_hand": by_hand}, WARMUP)


def measure_command(guest: Guest, reps: int, failures: list[str]) -> dict[str, list[float]]:
    def hc_rm(i: int) -> float:
        return guest.timed(guest.hc_run("busybox", "--rm", "--name", f"bench-cmd-{i}", "--",
                                        "true"), failures)

    def hc_rm_none(i: int) -> float:
        return guest.timed(guest.hc_run("busybox", "--rm", "--network", "none", "--name",
                                        f"bench-cmdn-{i}", "--", "true"), failures)

    def hc_keep(i: int) -> float:
        name = f"bench-keep-{i}"
        elapsed = guest.timed(guest.hc_run("busybox", "--name", name, "--", "true"), failures)
        guest.run([*guest.hc, "rm", "-f", name], check=False)
        return elapsed

    def by_hand(i: int) -> float:
        return guest.timed(by_hand_command(f"hbcmd{i}", ["true"]), failures)

    return interleaved(reps, {"hc_rm": hc_rm, "hc_rm_none": hc_rm_none, "hc_no_rm": hc_keep,
                              "by_hand": by_hand}, WARMUP)


def measure_network(guest: Guest, reps: int, failures: list[str]) -> dict[str, list[float]]:
    """Booted containers with networking and with `--network none`, interleaved."""
    return interleaved(reps, {
        "networked": lambda i: hc_boot(guest, f"bench-net-{i}", failures),
        "none": lambda i: hc_boot(guest, f"bench-nonet-{i}", failures, "--network", "none"),
    }, WARMUP)


def require_network(guest: Guest) -> None:
    """Without a network in the dev host both sides would run without one."""
    info = json.loads(guest.run([*guest.hc, "network", "ls", "--json"]).stdout)
    if info.get("error"):
        raise HostError(f"the dev host's agent has no network ({info['error']}): the network "
                        "benchmark needs one")


def measure_floor(guest: Guest, reps: int) -> dict[str, list[float]]:
    """What every row pays before any work: the launcher, and the CLI's start-up."""
    return interleaved(reps, {"nsenter_true": lambda _i: guest.timed(["true"]),
                              "hc_version": lambda _i: guest.timed([*guest.hc, "--version"])},
                       WARMUP)


def _start_all(names: list[str], start: Callable[[str], float],
               at_once: bool) -> tuple[float, list[float]]:
    """Wall time to start every one of ``names`` (all at once, or one after another), and
    each start's own time."""
    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(names) if at_once else 1) as pool:
        each = list(pool.map(start, names))
    return time.perf_counter() - began, each


def measure_parallel(guest: Guest, count: int, failures: list[str]) -> dict[str, Any]:
    """``count`` booted containers with hc one after another, then all at once; then all at
    once by hand, for what the machine itself allows. Removed in between."""
    names = [f"bench-par-{i}" for i in range(count)]

    def hc(name: str) -> float:
        return guest.timed(guest.hc_run("debian", "--name", name), failures)

    def by_hand(name: str) -> float:
        return guest.timed(by_hand_boot(name), failures)

    sequential_total, sequential = _start_all(names, hc, at_once=False)
    guest.run([*guest.hc, "rm", "-f", *names], check=False)
    parallel_total, parallel = _start_all(names, hc, at_once=True)
    running = [i["name"] for i in json.loads(guest.run([*guest.hc, "ls", "--json"]).stdout)
               if i["name"] in names and i["state"] == "running"]
    guest.run([*guest.hc, "rm", "-f", *names], check=False)
    hand_names = [f"hbpar{i}" for i in range(count)]
    by_hand_total, by_hand_each = _start_all(hand_names, by_hand, at_once=True)
    with ThreadPoolExecutor(max_workers=count) as pool:
        list(pool.map(partial(remove_by_hand, guest), hand_names))
    return {
        "containers": count,
        "running_at_once": len(running),
        "sequential_s": round(sequential_total, 2),
        "parallel_s": round(parallel_total, 2),
        "speedup": round(sequential_total / parallel_total, 2),
        "by_hand_parallel_s": round(by_hand_total, 2),
        "ratio_parallel_hc_by_hand": round(parallel_total / by_hand_total, 2),
        "sequential_each": summary(sequential),
        "parallel_each": summary(parallel),
        "by_hand_parallel_each": summary(by_hand_each),
    }


def summary(samples: list[float]) -> dict[str, float]:
    """p50/p95 in ms of the samples that did not fail (NaN), and how many did."""
    ok = [s for s in samples if not math.isnan(s)]
    figures = p50_p95_ms(ok) if ok else {"p50_ms": math.nan, "p95_ms": math.nan}
    return {**figures, "failed": len(samples) - len(ok)} if len(ok) < len(samples) else figures


def ratio(samples: dict[str, list[float]], a: str, b: str) -> dict[str, float]:
    sa, sb = summary(samples[a]), summary(samples[b])
    return {k: round(sa[k] / sb[k], 2) for k in ("p50_ms", "p95_ms")}


def run(guest: Guest, reps: int, parallel: int) -> dict[str, Any]:
    failures: list[str] = []
    log("launcher and CLI start-up")
    floor = measure_floor(guest, reps)
    log(f"booted containers: hc vs by hand, {reps} repetitions")
    boot = measure_boot(guest, reps, failures)
    log(f"command containers: hc vs by hand, {reps} repetitions")
    command = measure_command(guest, reps, failures)
    log(f"{parallel} booted containers: hc one after another, hc all at once, by hand at once")
    par = measure_parallel(guest, parallel, failures) if parallel else None
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "repetitions": reps,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "floor": {way: summary(s) for way, s in floor.items()},
        "boot": {**{way: summary(s) for way, s in boot.items()},
                 "ratio": ratio(boot, "hc", "by_hand"),
                 "ratio_none": ratio(boot, "hc_none", "by_hand"),
                 "target_ratio": BOOT_TARGET_RATIO},
        "command": {**{way: summary(s) for way, s in command.items()},
                    "ratio_rm": ratio(command, "hc_rm", "by_hand"),
                    "ratio_rm_none": ratio(command, "hc_rm_none", "by_hand"),
                    "ratio_no_rm": ratio(command, "hc_no_rm", "by_hand"),
                    "target_ratio": COMMAND_TARGET_RATIO},
        "parallel": par,
        "failures": failures,
        "by_hand_argv": {"boot": shlex.join(by_hand_boot("NAME")),
                         "command": shlex.join(by_hand_command("NAME", ["true"]))},
    }


def run_network(guest: Guest, reps: int) -> dict[str, Any]:
    require_network(guest)
    failures: list[str] = []
    load_before = [round(x, 2) for x in os.getloadavg()]
    log(f"booted containers: with networking vs --network none, {reps} repetitions")
    samples = measure_network(guest, reps, failures)
    figures = {way: summary(s) for way, s in samples.items()}
    diff = round(figures["networked"]["p50_ms"] - figures["none"]["p50_ms"], 1)
    # The two of one repetition ran back to back: their difference shares the load of the
    # moment, so its median drifts less with a noisy machine than the difference of medians.
    paired = [a - b for a, b in zip(samples["networked"], samples["none"], strict=True)
              if not (math.isnan(a) or math.isnan(b))]
    return {
        "mode": "network",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "repetitions": reps,
        "load_average_before": load_before,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "network": {**figures, "p50_diff_ms": diff,
                    "paired_diff_p50_ms": round(statistics.median(paired) * 1e3, 1)
                    if paired else math.nan,
                    "target_ms": NETWORK_TARGET_MS, "met": diff <= NETWORK_TARGET_MS},
        "failures": failures,
    }


# -- output ---------------------------------------------------------------------------------------

def print_network_table(result: dict[str, Any]) -> None:
    net = result["network"]
    print(f"hc run networking benchmark in dev host {result['devhost']}, {result['date']}, "
          f"{result['repetitions']} repetitions each (load average before "
          f"{' '.join(map(str, result['load_average_before']))}, after "
          f"{' '.join(map(str, result['load_average']))})")
    print(f"  {'':<48} {'p50 ms':>8} {'p95 ms':>8}")
    for label, way in (("hc run debian --name N", "networked"),
                       ("hc run debian --network none --name N", "none")):
        failed = f"  ({net[way]['failed']} failed)" if net[way].get("failed") else ""
        print(f"  {label:<48} {net[way]['p50_ms']:>8.1f} {net[way]['p95_ms']:>8.1f}{failed}")
    print(f"  {'networking adds (p50 difference)':<48} {net['p50_diff_ms']:>8.1f}  "
          f"target <= {net['target_ms']:.0f} ms: {'met' if net['met'] else 'MISSED'}")
    print(f"  {'median of the per-repetition differences':<48} "
          f"{net['paired_diff_p50_ms']:>8.1f}")
    for failure in result["failures"]:
        print(f"FAILED: {failure}")


def print_table(result: dict[str, Any]) -> None:
    def row(label: str, figures: dict[str, float], note: str = "") -> None:
        failed = f"({figures['failed']} failed) " if figures.get("failed") else ""
        print(f"  {label:<48} {figures['p50_ms']:>8.1f} {figures['p95_ms']:>8.1f}  "
              f"{failed}{note}".rstrip())

    def ratio_row(label: str, figures: dict[str, float], note: str = "") -> None:
        print(f"  {label:<48} {figures['p50_ms']:>8.2f} {figures['p95_ms']:>8.2f}  "
              f"{note}".rstrip())

    boot, command, floor = result["boot"], result["command"], result["floor"]
    print(f"hc run benchmark in dev host {result['devhost']}, {result['date']}, "
          f"{result['repetitions']} repetitions each (load average at the end "
          f"{' '.join(map(str, result['load_average']))})")
    print(f"  {'':<48} {'p50 ms':>8} {'p95 ms':>8}")
    row("launcher: nsenter ... true", floor["nsenter_true"])
    row("launcher + CLI start-up: hc --version", floor["hc_version"])
    print("booted (returns on READY)")
    row("hc run debian --name N", boot["hc"])
    row("hc run debian --network none --name N", boot["hc_none"])
    row("by hand: snapshot + systemd-run nspawn -b", boot["by_hand"])
    ratio_row("ratio hc / by hand", boot["ratio"], "(hc also makes the network)")
    met = boot["ratio_none"]["p50_ms"] <= BOOT_TARGET_RATIO
    ratio_row("ratio hc --network none / by hand", boot["ratio_none"],
              f"target p50 <= {BOOT_TARGET_RATIO}: {'met' if met else 'MISSED'}")
    print("command mode (busybox, `true`)")
    row("hc run busybox --rm -- true", command["hc_rm"])
    row("hc run busybox --rm --network none -- true", command["hc_rm_none"])
    row("hc run busybox -- true (no --rm)", command["hc_no_rm"])
    row("by hand: snapshot + systemd-run --wait + delete", command["by_hand"])
    ratio_row("ratio hc --rm / by hand", command["ratio_rm"], "(hc also makes the network)")
    met = command["ratio_rm_none"]["p50_ms"] <= COMMAND_TARGET_RATIO
    ratio_row("ratio hc --rm --network none / by hand", command["ratio_rm_none"],
              f"target p50 <= {COMMAND_TARGET_RATIO}: {'met' if met else 'MISSED'}")
    ratio_row("ratio hc (no --rm) / by hand", command["ratio_no_rm"])
    par = result["parallel"]
    if par:
        print(f"{par['containers']} booted containers ({par['running_at_once']} running at once "
              "after the parallel start)")
        print(f"  {'':<48} {'total s':>8} {'each p50':>9} {'each p95':>9}")
        for label, total, each in (
                ("hc, one after another", par["sequential_s"], par["sequential_each"]),
                ("hc, all at once", par["parallel_s"], par["parallel_each"]),
                ("by hand, all at once", par["by_hand_parallel_s"],
                 par["by_hand_parallel_each"])):
            failed = f"  ({each['failed']} failed)" if each.get("failed") else ""
            print(f"  {label:<48} {total:>8.2f} {each['p50_ms'] / 1e3:>9.2f} "
                  f"{each['p95_ms'] / 1e3:>9.2f}{failed}")
        print(f"  speed-up hc at once vs one after another: {par['speedup']:.2f}x; hc at once / "
              f"by hand at once: {par['ratio_parallel_hc_by_hand']:.2f}")
    for failure in result["failures"]:
        print(f"FAILED: {failure}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("containers", "network"), default="containers",
                        help="containers: hc vs by hand, command mode, at once (default); "
                        "network: booted hc run with networking vs --network none")
    parser.add_argument("--reps", type=int, default=20,
                        help="repetitions per measurement (default 20)")
    parser.add_argument("--parallel", type=int, default=20,
                        help="containers in the concurrency test (default 20; 0 skips it)")
    devhost_arguments(parser, DEVHOST)
    args = parse_root_arguments(parser, "reps")

    def measure(host: devhosts.DevHost) -> dict[str, Any]:
        guest = Guest.of(host)
        ensure_images(guest)
        with cleaned(guest, clean_leftovers):
            if args.mode == "network":
                return run_network(guest, args.reps)
            return run(guest, args.reps, args.parallel)
    return measure_and_print("run_bench", args, DEVHOST, measure,
                             print_network_table if args.mode == "network" else print_table)


if __name__ == "__main__":
    sys.exit(main())
