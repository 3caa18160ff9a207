"""Bare-metal install benchmark (issue 14). Run on purpose, never as a timed test.

In a dev host: `hc image build debian --machine` (unless it has the image), `hc provision
enable` on hc0 and a machine added; then

- power-on to installed-and-booted: a qemu (TCG, one vCPU, 512 MiB, UEFI, an empty disk) on a
  tap on hc0 network-boots the installer, runs the workflow and boots its disk to a login
  prompt; the time to each of those, and each step's share (from the step events);
- the image stream on the host, without the emulated machine: hc-provision's /m/NAME/image
  (btrfs send, digest, zstd, HTTP) taken by curl into what the installer runs (zstd -d, the
  digest split off and checked, btrfs receive), against `btrfs send | btrfs receive` by hand
  on the same image; the server's side alone (curl into /dev/null) against `btrfs send` into
  /dev/null; the machine's own stream rate from its image step.

    /opt/homecloud/venv/bin/python bench/machine_bench.py [--devhost NAME] [--keep] [--json]
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
from tests.system.baremetal import (  # noqa: E402
    enable_provisioning,
    machine_info,
    start_machine,
    tap_on_hc0,
)

DEFAULT_DEVHOST = "bench-machine"
IMAGE = "debian-machine"
NAME, MAC = "bench1", "52:54:00:4e:00:b1"
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


def prepare(host: DevHost) -> str:
    """The image built, provisioning on, the machine added; the provisioning server's URL."""
    if not any(i["name"] == IMAGE for i in host.hc("image", "ls", json=True)):
        log(f"building {IMAGE} (a few minutes)")
        host.hc("image", "build", "debian", "--machine", "-q", timeout=TIMEOUT)
    gateway = enable_provisioning(host)
    host.hc("machine", "rm", NAME, check=False)
    host.hc("machine", "add", NAME, "--mac", MAC, "--image", IMAGE, timeout=TIMEOUT)
    host.run("mkdir", "-p", WORK)
    return f"http://{gateway.ip}:8067"


def install(host: DevHost) -> dict[str, Any]:
    """Power-on to installed-and-booted for one machine, with each step's share."""
    disk = f"{WORK}/{NAME}.raw"
    host.run("rm", "-f", disk)
    host.run("truncate", "-s", "3G", disk)
    with tap_on_hc0(host, "hcbtap0") as tap:
        start = time.monotonic()
        machine = start_machine(host, WORK, NAME, disk, uefi=True, tap=tap, mac=MAC)
        try:
            installing = wait("the installer's first event",
                              lambda: machine_info(host, NAME)["state"] != "waiting", start)
            installed = wait("installed", lambda: machine_info(host, NAME)["state"]
                             in ("installed", "failed"), start)
            info = machine_info(host, NAME)
            if info["state"] != "installed":
                raise SystemExit(f"the install failed: {info['steps']}")
            booted = wait("a login prompt from the disk",
                          lambda: f"{NAME} login:" in machine.console(), start)
            console = machine.console()
        finally:
            machine.stop()
    image_size = next(i for i in host.hc("image", "ls", json=True)
                      if i["name"] == IMAGE)["size_bytes"]
    steps = {s["id"]: s["duration"] for s in info["steps"]}
    received = re.search(r"received image \S+ \((\d+) MiB\) in (\d+)s", console)
    return {"installer_started_s": installing, "installed_s": installed, "booted_s": booted,
            "steps_s": steps, "image_bytes": image_size,
            "guest_stream_mib_s": (int(received.group(1)) / max(int(received.group(2)), 1)
                                   if received else None)}


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
    # As the installer's stream-image action: the trailer split off, the body hashed.
    ours = timed(f"{get} | zstd -dc | head -c -32 | tee >(sha256sum > {WORK}/digest) "
                 f"| btrfs receive -q {target}")
    host.run("rmdir", target)
    return {"stream_mib": size_mib, "by_hand_s": by_hand, "provision_s": ours,
            "ratio": by_hand / ours, "send_only_s": sent, "served_only_s": served,
            "served_ratio": sent / served}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    devhost_arguments(parser, DEFAULT_DEVHOST)
    parser.add_argument("--runs", type=int, default=1, help="host-side stream runs")
    args = parse_root_arguments(parser, "runs")
    results: dict[str, Any] = {}
    with bench_devhost(args.devhost, DEFAULT_DEVHOST, args.keep) as host:
        url = prepare(host)
        log("the host-side stream")
        results["host_stream"] = [host_streams(host, url) for _ in range(args.runs)]
        log("one machine from power-on to its login prompt (TCG: minutes)")
        host.hc("machine", "reinstall", NAME)
        results["install"] = install(host)
        host.hc("machine", "rm", NAME, check=False)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for run in results["host_stream"]:
        print(f"image stream on the host ({run['stream_mib']:.0f} MiB of btrfs send): by hand "
              f"{run['by_hand_s']:.2f} s, through hc-provision {run['provision_s']:.2f} s; "
              f"throughput ratio {run['ratio']:.2f}x (target >= 0.8x); the server's side "
              f"alone (into /dev/null) {run['served_only_s']:.2f} s vs btrfs send "
              f"{run['send_only_s']:.2f} s: {run['served_ratio']:.2f}x")
    done = results["install"]
    total = done["booted_s"]
    print(f"power-on -> installer running {done['installer_started_s']:.0f} s -> installed "
          f"{done['installed_s']:.0f} s -> login prompt from the disk {total:.0f} s")
    for step_id, seconds in done["steps_s"].items():
        share = 100 * (seconds or 0) / total
        print(f"  step {step_id}: {seconds or 0:.1f} s ({share:.0f}%)")
    print(f"  the rest (firmware, iPXE, the installer's boot, reboot, the disk's boot): "
          f"{total - sum(s or 0 for s in done['steps_s'].values()):.0f} s")
    if done["guest_stream_mib_s"]:
        print(f"the machine's own image stream (TCG): {done['guest_stream_mib_s']:.1f} MiB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
