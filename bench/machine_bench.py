"""Bare-metal install benchmark (issue 14). Run on purpose, never as a timed test.

In a dev host: `hc image build debian --machine` (unless it has the image), `hc provision
enable` on hc0 and a machine added; then

- power-on to installed-and-booted: a qemu (TCG, one vCPU, 512 MiB, UEFI, an empty disk) on a
  tap on hc0 network-boots the installer, runs the workflow and boots its disk to a login
  prompt; the time to each of those, and each step's share (from the step events); with
  `--machines 1 2 4`, one machine, then two, then four switched on together through the same
  hc-dhcp and hc-provision, each count against one alone;
- the image stream on the host, without the emulated machine: hc-provision's /m/NAME/image
  (btrfs send, its length and CRC-32C trailer, zstd unless on hc0, chunked HTTP) taken by curl
  into the installer's own receive-image.sh (zstd -d if compressed, btrfs receive, the trailer
  checked), against `btrfs send | btrfs receive` by hand on the same image; the server's side
  alone (curl into /dev/null) against `btrfs send` into /dev/null; the machine's own stream
  rate from its image step.

    /opt/homecloud/venv/bin/python bench/machine_bench.py [--devhost NAME] [--keep] [--json]
        [--runs N] [--machines COUNT ...] [--no-stream]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchhost import bench_devhost, devhost_arguments, log, parse_root_arguments  # noqa: E402

from homecloud.devhost import DevHost  # noqa: E402
from homecloud.machines.installer.build import SCRIPTS  # noqa: E402
from tests.system.baremetal import (  # noqa: E402
    Boot,
    enable_provisioning,
    machines_on,
)

DEFAULT_DEVHOST = "bench-machine"
IMAGE = "debian-machine"
NAME, MAC = "bench1", "52:54:00:4e:00:b1"  # the first machine: the host-side stream uses its token
MAX_MACHINES = 9
WORK = "/var/tmp/machine-bench"
POOL = "/var/lib/homecloud/pool"
TIMEOUT = 1800.0


def wait(what: str, check: Any, since: float, timeout: float = TIMEOUT) -> float:
    """Poll ``check`` each half second; seconds from ``since`` to when it held."""
    while not check():
        if time.monotonic() - since > timeout:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)
    return time.monotonic() - since


def bench_machines(count: int) -> list[Boot]:
    """bench1 (NAME, MAC) .. benchCOUNT: UEFI, an empty 3 GiB disk each."""
    return [Boot(f"bench{i}", f"{MAC[:-1]}{i}", "3G", uefi=True) for i in range(1, count + 1)]


def prepare(host: DevHost, count: int) -> str:
    """The image built, provisioning on, ``count`` machines added; the provisioning server's
    URL."""
    if not any(i["name"] == IMAGE for i in host.hc("image", "ls", json=True)):
        log(f"building {IMAGE} (a few minutes)")
        host.hc("image", "build", "debian", "--machine", "-q", timeout=TIMEOUT)
    gateway = enable_provisioning(host)
    for boot in bench_machines(MAX_MACHINES):
        host.hc("machine", "rm", boot.name, check=False)
    for boot in bench_machines(count):
        host.hc("machine", "add", boot.name, "--mac", boot.mac, "--image", IMAGE,
                timeout=TIMEOUT)
    host.run("mkdir", "-p", WORK)
    return f"http://{gateway.ip}:8067"


def install(host: DevHost, count: int) -> list[dict[str, Any]]:
    """Power-on to installed-and-booted for ``count`` machines switched on together, each
    with its steps' durations."""
    boots = bench_machines(count)
    for boot in boots:
        host.hc("machine", "reinstall", boot.name)
    marks: dict[str, dict[str, float]] = {boot.name: {} for boot in boots}
    with machines_on(host, WORK, boots) as running:
        start = time.monotonic()

        def all_booted() -> bool:
            listing = {m["name"]: m for m in host.hc("machine", "ls", json=True)}
            now = time.monotonic() - start
            for name, machine in running.items():
                state, mark = listing[name]["state"], marks[name]
                if state != "waiting":
                    mark.setdefault("installer_started_s", now)
                if state == "installed":
                    mark.setdefault("installed_s", now)
                    if f"{name} login:" in machine.console():
                        mark.setdefault("booted_s", now)
                elif machine.powered_off():
                    raise SystemExit(f"{name}'s install failed: {listing[name]['steps']}")
            return all("booted_s" in mark for mark in marks.values())
        wait(f"{count} machine(s) installed and at a login prompt", all_booted, start)
        consoles = {name: machine.console() for name, machine in running.items()}
    listing = {m["name"]: m for m in host.hc("machine", "ls", json=True)}
    image_size = next(i for i in host.hc("image", "ls", json=True)
                      if i["name"] == IMAGE)["size_bytes"]
    results = []
    for boot in boots:
        received = re.search(r"received image \S+ \((\d+) MiB\) in (\d+)s", consoles[boot.name])
        results.append({
            "name": boot.name, **marks[boot.name], "image_bytes": image_size,
            "steps_s": {s["id"]: s["duration"] for s in listing[boot.name]["steps"]},
            "guest_stream_mib_s": (int(received.group(1)) / max(int(received.group(2)), 1)
                                   if received else None)})
    return results


def host_streams(host: DevHost, url: str) -> dict[str, float]:
    """The image stream on the host: hc-provision into the installer's pipeline vs by hand."""
    image = f"{POOL}/images/{IMAGE}"
    target = f"{POOL}/machine-bench-receive"  # btrfs receive needs a btrfs directory
    size_mib = int(host.run("sh", "-c", f"btrfs send -q {image} | wc -c").stdout) / 2**20

    def timed(command: str, receives: bool = True) -> float:
        host.run("mkdir", "-p", target)
        host.run("sync")
        start = time.perf_counter()
        host.run("bash", "-c", f"set -o pipefail; {command}", timeout=TIMEOUT)
        took = time.perf_counter() - start
        if receives:
            host.run("sh", "-c", f"btrfs subvolume delete {target}/* >/dev/null")
        return took

    by_hand = timed(f"btrfs send -q {image} | btrfs receive -q {target}")
    script = host.run("curl", "-sf", f"{url}/boot.ipxe?mac={MAC}").stdout
    token = script.split("hc.token=")[1].split()[0]
    get = f"curl -sf -H 'Authorization: Bearer {token}' {url}/m/{NAME}/image"
    sent = timed(f"btrfs send -q {image} > /dev/null", receives=False)
    served = timed(f"{get} > /dev/null", receives=False)
    # The installer's own receiving end, in the installer's shell (busybox), with the encoding
    # hc-provision tells its machines.
    workflow = json.loads(host.run("curl", "-sf", "-H", f"Authorization: Bearer {token}",
                                   f"{url}/m/{NAME}/workflow").stdout)
    receive = SCRIPTS / "receive-image.sh"
    ours = timed(f"{get} | busybox sh {receive} {workflow['image']['encoding']} {target}")
    host.run("rmdir", target)
    return {"stream_mib": size_mib, "by_hand_s": by_hand, "provision_s": ours,
            "ratio": by_hand / ours, "send_only_s": sent, "served_only_s": served,
            "served_ratio": sent / served}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    devhost_arguments(parser, DEFAULT_DEVHOST)
    parser.add_argument("--runs", type=int, default=1, help="host-side stream runs")
    parser.add_argument("--machines", type=int, nargs="+", default=[1], metavar="COUNT",
                        help="installs of COUNT machines switched on together, in turn "
                             f"(at most {MAX_MACHINES}; e.g. 1 2 4)")
    parser.add_argument("--no-stream", action="store_true",
                        help="skip the host-side stream")
    args = parse_root_arguments(parser, "runs")
    if not all(1 <= count <= MAX_MACHINES for count in args.machines):
        parser.error(f"--machines takes counts from 1 to {MAX_MACHINES}")
    results: dict[str, Any] = {"host_stream": [], "installs": {}}
    with bench_devhost(args.devhost, DEFAULT_DEVHOST, args.keep) as host:
        url = prepare(host, max(args.machines))
        if not args.no_stream:
            log("the host-side stream")
            results["host_stream"] = [host_streams(host, url) for _ in range(args.runs)]
        for count in args.machines:
            log(f"{count} machine(s) at once from power-on to their login prompts "
                "(TCG: minutes)")
            results["installs"][count] = install(host, count)
            log(f"{count} at once: " + ", ".join(
                f"{m['name']} installed {m['installed_s']:.0f} s, booted {m['booted_s']:.0f} s"
                for m in results["installs"][count]))
        for boot in bench_machines(max(args.machines)):
            host.hc("machine", "rm", boot.name, check=False)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for run in results["host_stream"]:
        print(f"image stream on the host ({run['stream_mib']:.0f} MiB of btrfs send): by hand "
              f"{run['by_hand_s']:.2f} s, through hc-provision {run['provision_s']:.2f} s; "
              f"throughput ratio {run['ratio']:.2f}x (target >= 0.8x); the server's side "
              f"alone (into /dev/null) {run['served_only_s']:.2f} s vs btrfs send "
              f"{run['send_only_s']:.2f} s: {run['served_ratio']:.2f}x")
    one = results["installs"].get(1)
    alone = one[0]["booted_s"] if one else None
    for count, machines in results["installs"].items():
        last = max(m["booted_s"] for m in machines)
        versus = f"; {last / alone:.2f}x one machine's time" if alone and count > 1 else ""
        print(f"{count} machine(s) switched on together: all at their login prompts from the "
              f"disk after {last:.0f} s ({3600 * count / last:.0f} installs an hour{versus})")
        for done in machines:
            print_install(done)
    return 0


def print_install(done: dict[str, Any]) -> None:
    """One machine's way from power-on to its login prompt, each step's share."""
    total = done["booted_s"]
    print(f"  {done['name']}: power-on -> installer running {done['installer_started_s']:.0f} s "
          f"-> installed {done['installed_s']:.0f} s -> login prompt from the disk "
          f"{total:.0f} s")
    steps = done["steps_s"]
    print("    " + ", ".join(f"{step_id} {seconds or 0:.1f} s ({100 * (seconds or 0) / total:.0f}%)"
                            for step_id, seconds in steps.items())
          + f"; the rest (firmware, iPXE, the installer's boot, reboot, the disk's boot) "
          f"{total - sum(s or 0 for s in steps.values()):.0f} s")
    if done["guest_stream_mib_s"]:
        print(f"    its own image stream (TCG): {done['guest_stream_mib_s']:.1f} MiB/s")


if __name__ == "__main__":
    sys.exit(main())
