"""microVM benchmark: `hc run IMAGE --vm` to READY against the same qemu command by hand, same run.

Boots its own dev host (or uses --devhost), makes sure the `debian-vm` image exists
(`hc image build debian --vm`), then measures, interleaved so both ways share the machine's
load:

    hc       `hc run debian-vm --vm --network none --name N`: returns when the guest said READY
             on org.homecloud.ready (fork, identity written into the disk, hc-N.service started)
    by hand  btrfs snapshot of the image's dataset + qemu started with the argv homecloud's
             driver makes (drivers/qemu.py microvm_argv: same kernel, initrd, command line,
             disk, devices and flags) + READY=1 read from the port's socket

`--network none` on both: by hand makes no tap, lease, DNS name or rules. Removal is not timed.
For each VM hc made it also reads, untimed, the guest's own boot time (`systemd-analyze` through
`hc exec`) and qemu's resident memory beyond the guest's RAM. With --fleet N it then starts N
VMs (--memory 256M) at once and the same N one after another, and times both to all READY.
Under TCG (this machine) a boot takes tens of seconds: keep --reps small. Needs root. Not a
test: run it on purpose.

    /opt/homecloud/venv/bin/python bench/vm_bench.py [--reps 5] [--fleet 10] [--devhost NAME]
        [--keep] [--json]
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchhost import cleaned, devhost_arguments, log, measure_and_print, parse_root_arguments
from run_bench import Guest
from timing import interleaved, p50_p95_ms
from vm_image import IMAGE, POOL, ensure_image

from homecloud.devhost import DevHost

DEVHOST = "bench-vm"
BY_HAND_DIR = POOL / "bench-vm-by-hand"  # outside images/ and instances/: the agent ignores it
TARGET_RATIO = 1.1
MEMORY = "512M"
CPUS = "2"
FLEET_MEMORY = "256M"

# By hand, in the dev host: the qemu argv made by the driver's own pure function for a snapshot
# of the image (KVM probed once, untimed, as the agent does), qemu started, READY=1 read.
ARGV_SCRIPT = """
import json, sys
from pathlib import Path
from homecloud.images.vmimage import INITRD, KERNEL, VOLUME, read_vm_image
from homecloud.instances.drivers.kvm import probe_kvm
from homecloud.instances.drivers.microvm import host_tsc_khz
from homecloud.instances.drivers.qemu import MicroVmConfig, VmSockets, microvm_argv
from homecloud.sizes import parse_size
image, root, name, memory, cpus = sys.argv[1:6]
config = MicroVmConfig(
    name=name, kernel=Path(root, KERNEL), initrd=Path(root, INITRD),
    cmdline=read_vm_image(Path(image)).cmdline, disk=Path(root, VOLUME),
    sockets=VmSockets(Path(root, "run")), kvm=probe_kvm().usable, tsc_khz=host_tsc_khz(),
    cpus=float(cpus), memory=parse_size(memory))
print(json.dumps(microvm_argv(config)))
"""
BY_HAND_SCRIPT = """
import json, os, socket, subprocess, sys, time
image, root, argv = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
subprocess.run(["btrfs", "subvolume", "snapshot", image, root], check=True,
               stdout=subprocess.DEVNULL)
os.mkdir(root + "/run")
with open(root + "/console.log", "wb") as console:
    qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console,
                            stderr=subprocess.STDOUT, start_new_session=True)
open(root + "/qemu.pid", "w").write(str(qemu.pid))
while True:
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.connect(root + "/run/ready.sock")
        break
    except OSError:
        sock.close()
        if qemu.poll() is not None:
            sys.exit("qemu exited before READY")
        time.sleep(0.01)
seen = b""
while b"READY=1" not in seen:
    chunk = sock.recv(256)
    if not chunk:
        sys.exit("qemu closed the READY port")
    seen += chunk
"""


def vm_args(name: str, memory: str = MEMORY) -> list[str]:
    return ["run", IMAGE, "--vm", "--name", name, "--memory", memory, "--cpus", CPUS,
            "--network", "none", "-q"]


def qemu_argv(guest: Guest, name: str) -> str:
    """The JSON argv of qemu for the by-hand VM ``name`` (paths under BY_HAND_DIR/name)."""
    return guest.run([guest.python, "-c", ARGV_SCRIPT, str(POOL / "images" / IMAGE),
                      str(BY_HAND_DIR / name), name, MEMORY, CPUS]).stdout.strip()


def by_hand(guest: Guest, index: int, failures: list[str]) -> float:
    name = f"vmhand{index}"
    argv = qemu_argv(guest, name)
    try:
        return guest.timed([guest.python, "-c", BY_HAND_SCRIPT, str(POOL / "images" / IMAGE),
                            str(BY_HAND_DIR / name), argv], failures)
    finally:
        remove_by_hand(guest, BY_HAND_DIR / name)


def remove_by_hand(guest: Guest, root: Path) -> None:
    guest.run(["sh", "-c", f"kill -9 $(cat {root}/qemu.pid) 2>/dev/null; "
               f"while kill -0 $(cat {root}/qemu.pid) 2>/dev/null; do sleep 0.1; done; "
               f"btrfs subvolume delete {root} >/dev/null 2>&1; true"], check=False)


def guest_boot_seconds(guest: Guest, name: str) -> float | None:
    """The guest's own count: `systemd-analyze` (kernel + initrd + userspace)."""
    out = guest.run([*guest.hc, "exec", name, "--", "systemd-analyze"], check=False).stdout
    match = re.search(r"= ([\d.]+(?:min )?[\d.]*)s", out)
    if match is None:
        return None
    minutes, _, seconds = match.group(1).rpartition("min ")
    return round(float(minutes or 0) * 60 + float(seconds), 2)


def qemu_rss_beyond_guest_ram(guest: Guest, name: str, memory: str) -> float | None:
    """qemu's VmRSS minus the guest's RAM size, in MiB (negative: the guest has not touched
    all its RAM yet)."""
    pid = guest.run(["systemctl", "show", "-p", "MainPID", "--value", f"hc-{name}.service"],
                    check=False).stdout.strip()
    status = guest.run(["cat", f"/proc/{pid}/status"], check=False).stdout
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    if match is None:
        return None
    guest_mib = int(memory.removesuffix("M"))
    return round(int(match.group(1)) / 1024 - guest_mib, 1)


def through_hc(guest: Guest, index: int, failures: list[str],
               extra: dict[str, list[float]]) -> float:
    name = f"vmhc{index}"
    try:
        elapsed = guest.timed([*guest.hc, *vm_args(name)], failures)
        if not math.isnan(elapsed):
            for key, value in (("guest_boot_s", guest_boot_seconds(guest, name)),
                               ("qemu_rss_beyond_ram_mib",
                                qemu_rss_beyond_guest_ram(guest, name, MEMORY))):
                if value is not None:
                    extra[key].append(value)
        return elapsed
    finally:
        guest.run([*guest.hc, "rm", "-f", name], check=False)


def fleet(guest: Guest, count: int, failures: list[str]) -> dict[str, float]:
    """Seconds until ``count`` VMs are all READY (or refused: a start timeout), started at once
    and one after another, and how many of each reached READY."""
    names = [f"vmfleet{i}" for i in range(count)]

    def start(name: str) -> float:
        return guest.timed([*guest.hc, *vm_args(name, FLEET_MEMORY)], failures)

    def remove_all() -> None:
        for name in names:
            guest.run([*guest.hc, "rm", "-f", name], check=False)

    def measure(way: str, starting: Callable[[], list[float]]) -> dict[str, float]:
        began = time.perf_counter()
        try:
            elapsed = starting()
        finally:
            remove_all()
        return {f"{way}_s": round(time.perf_counter() - began, 1),
                f"{way}_ready": sum(not math.isnan(e) for e in elapsed)}

    log(f"{count} VMs at once, then one after another")
    with ThreadPoolExecutor(max_workers=count) as pool:
        figures = measure("at_once", lambda: list(pool.map(start, names)))
    figures.update(measure("one_after_another", lambda: [start(name) for name in names]))
    return figures


def clean_leftovers(guest: Guest) -> None:
    listing = guest.run(["sh", "-c", f"ls -d {BY_HAND_DIR}/vmhand* 2>/dev/null; true"]).stdout
    for root in listing.split():
        remove_by_hand(guest, Path(root))
    guest.run(["mkdir", "-p", str(BY_HAND_DIR)])


def run(guest: Guest, reps: int, fleet_size: int) -> dict[str, Any]:
    failures: list[str] = []
    extra: dict[str, list[float]] = {"guest_boot_s": [], "qemu_rss_beyond_ram_mib": []}
    samples = interleaved(reps, {
        "hc": lambda i: through_hc(guest, i, failures, extra),
        "by_hand": lambda i: by_hand(guest, i, failures),
    })
    figures = {way: p50_p95_ms([s for s in values if not math.isnan(s)])
               for way, values in samples.items() if any(not math.isnan(s) for s in values)}
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "reps": reps,
        "figures": figures, "failures": failures,
        "samples_s": {way: [round(s, 2) for s in values] for way, values in samples.items()},
        "guest": {key: round(statistics.median(values), 1) if values else None
                  for key, values in extra.items()},
    }
    if {"hc", "by_hand"} <= figures.keys():
        result["ratio_p50"] = round(figures["hc"]["p50_ms"] / figures["by_hand"]["p50_ms"], 3)
        result["target_ratio"] = TARGET_RATIO
    if fleet_size:
        result["fleet"] = {"count": fleet_size, "memory": FLEET_MEMORY,
                           **fleet(guest, fleet_size, failures)}
    return result


def print_table(result: dict[str, Any]) -> None:
    print(f"microvm to READY (TCG, {CPUS} vCPUs, {MEMORY}), {result['reps']} reps each")
    print(f"{'way':<10} {'p50 ms':>10} {'p95 ms':>10}")
    for way, figure in result["figures"].items():
        print(f"{way:<10} {figure['p50_ms']:>10} {figure['p95_ms']:>10}")
    if "ratio_p50" in result:
        print(f"ratio hc / by hand (p50): {result['ratio_p50']} (target <= {TARGET_RATIO})")
    print(f"guest's own boot (systemd-analyze, median): {result['guest']['guest_boot_s']} s")
    print(f"qemu RSS beyond guest RAM (median): {result['guest']['qemu_rss_beyond_ram_mib']} MiB")
    if "fleet" in result:
        f = result["fleet"]
        print(f"{f['count']} VMs ({f['memory']}) to READY: at once {f['at_once_s']} s "
              f"({f['at_once_ready']} ready), one after another {f['one_after_another_s']} s "
              f"({f['one_after_another_ready']} ready)")
    for failure in result["failures"]:
        print(f"failed: {failure}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5,
                        help="boots per way (default 5: each takes tens of seconds under TCG)")
    parser.add_argument("--fleet", type=int, default=0, metavar="N",
                        help="also start N VMs at once and N one after another (default: no)")
    devhost_arguments(parser, DEVHOST)
    args = parse_root_arguments(parser, "reps")

    def measure(host: DevHost) -> dict[str, Any]:
        guest = Guest.of(host)
        ensure_image(guest)
        with cleaned(guest, clean_leftovers):
            result = run(guest, args.reps, args.fleet)
        result["command"] = shlex.join(["bench/vm_bench.py", *sys.argv[1:]])
        return result
    return measure_and_print("vm_bench", args, DEVHOST, measure, print_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
