"""q35 benchmark: `hc run IMAGE --vm --machine q35` against `virsh create` of the same domain XML
by hand, same run.

Boots its own dev host (or uses --devhost), starts libvirtd there, makes sure the `debian-vm`
image exists (`hc image build debian --vm`), then measures, interleaved so both ways share the
machine's load:

    hc       `hc run debian-vm --vm --machine q35 --network none --name N`: returns when the
             guest said READY on org.homecloud.ready (fork, identity written into the disk,
             domain defined, hc-N.service started)
    by hand  btrfs snapshot of the image's dataset + `virsh create` of the XML homecloud
             defined (taken once from an hc-made VM, its paths moved to the snapshot) + wait
             for READY=1 on the domain's org.homecloud.ready socket

`--network none` on both: by hand makes no tap, lease, DNS name or rules. Removal is not timed.
With --uefi both boot through OVMF and the image's EFI system partition. Under TCG (this
machine) a q35 boot takes tens of seconds, so keep --reps small. Needs root. Not a test: run
it on purpose.

    /opt/homecloud/venv/bin/python bench/q35_bench.py [--reps 3] [--uefi] [--devhost NAME]
        [--keep] [--json]
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from datetime import UTC, datetime
from typing import Any

from benchhost import cleaned, devhost_arguments, measure_and_print, parse_root_arguments
from run_bench import Guest
from timing import interleaved, p50_p95_ms
from vm_image import IMAGE, POOL, ensure_image

from homecloud.devhost import DevHost
from homecloud.images.vmimage import READY_PORT

DEVHOST = "bench-q35"
BY_HAND_DIR = POOL / "bench-q35-by-hand"  # outside images/ and instances/: the agent ignores it
TARGET_RATIO = 1.1
VM_ARGS = ("--memory", "512M", "--cpus", "2", "--network", "none")
VIRSH = ("virsh", "--quiet", "--connect", "qemu:///system")

# By hand, in the dev host: snapshot, the XML's paths and name moved to it, `virsh create`,
# then READY=1 read from the channel libvirt made (its path is in the live XML).
BY_HAND_SCRIPT = """
import re, socket, subprocess, sys
template, image, root, name = sys.argv[1:5]
subprocess.run(["btrfs", "subvolume", "snapshot", image, root], check=True,
               stdout=subprocess.DEVNULL)
xml = open(template).read().replace("@ROOT@", root).replace("@NAME@", name)
open(root + "/domain.xml", "w").write(xml)
subprocess.run([*VIRSH, "create", root + "/domain.xml"], check=True, stdout=subprocess.DEVNULL)
live = subprocess.run([*VIRSH, "dumpxml", name], check=True, capture_output=True,
                      text=True).stdout
path = re.search(r"<source mode='bind' path='([^']*/PORT)'", live).group(1)
with socket.socket(socket.AF_UNIX) as sock:
    sock.connect(path)
    seen = b""
    while b"READY=1" not in seen:
        chunk = sock.recv(256)
        if not chunk:
            sys.exit("the domain stopped before READY")
        seen += chunk
"""


def start_libvirtd(guest: Guest) -> None:
    """libvirtd in a dev host: no cgroup controllers of its own, swtpm's local CA directory
    (as tests/system/test_vm_q35.py does; ENVIRONMENT.md)."""
    guest.run(["sh", "-c", "grep -q '^cgroup_controllers' /etc/libvirt/qemu.conf || "
               "echo 'cgroup_controllers = [ ]' >> /etc/libvirt/qemu.conf"])
    guest.run(["install", "-d", "-o", "tss", "-g", "root", "-m", "0750",
               "/var/lib/swtpm-localca"])
    guest.run(["systemctl", "start", "virtlogd.service", "libvirtd.service"])


def guest_hc_run(name: str, uefi: bool) -> list[str]:
    return ["run", IMAGE, "--vm", "--machine", "q35", "--name", name, *VM_ARGS,
            *(["--uefi"] if uefi else [])]


def domain_template(guest: Guest, uefi: bool) -> str:
    """The XML homecloud defines for a VM, with its dataset's path and its name as
    placeholders and no UUID (libvirt makes one), written to a file in the dev host."""
    name = "q35tmpl"
    guest.run([*guest.hc, *guest_hc_run(name, uefi)])
    try:
        xml = guest.run([*VIRSH, "dumpxml", "--inactive", f"hc-{name}"]).stdout
    finally:
        guest.run([*guest.hc, "rm", "-f", name])
    xml = (xml.replace(f"{POOL}/instances/{name}", "@ROOT@").replace(f"hc-{name}", "@NAME@")
           .replace(name, "@NAME@"))
    lines = [line for line in xml.splitlines() if "<uuid>" not in line]
    path = BY_HAND_DIR / "template.xml"
    guest.run(["mkdir", "-p", str(BY_HAND_DIR)])
    guest.run(["sh", "-c", f"cat > {path} <<'EOF'\n" + "\n".join(lines) + "\nEOF"])
    return str(path)


def by_hand(guest: Guest, template: str, index: int, failures: list[str]) -> float:
    name = f"q35hand{index}"
    root = BY_HAND_DIR / name
    script = BY_HAND_SCRIPT.replace("*VIRSH", repr(list(VIRSH))[1:-1]).replace(
        "PORT", READY_PORT)
    try:
        return guest.timed([guest.python, "-c", script, template,
                            str(POOL / "images" / IMAGE), str(root), name], failures)
    finally:
        guest.run([*VIRSH, "destroy", name], check=False)
        guest.run(["btrfs", "subvolume", "delete", str(root)], check=False)


def through_hc(guest: Guest, uefi: bool, index: int, failures: list[str]) -> float:
    name = f"q35hc{index}"
    try:
        return guest.timed([*guest.hc, *guest_hc_run(name, uefi)], failures)
    finally:
        guest.run([*guest.hc, "rm", "-f", name], check=False)


def clean_leftovers(guest: Guest) -> None:
    guest.run(["sh", "-c", f"for d in {BY_HAND_DIR}/q35hand*; do [ -d \"$d\" ] && "
               f"{shlex.join(VIRSH)} destroy \"$(basename \"$d\")\"; "
               "btrfs subvolume delete \"$d\"; done; true"], check=False)


def run(guest: Guest, reps: int, uefi: bool) -> dict[str, Any]:
    template = domain_template(guest, uefi)
    failures: list[str] = []
    samples = interleaved(reps, {
        "hc": lambda i: through_hc(guest, uefi, i, failures),
        "by_hand": lambda i: by_hand(guest, template, i, failures),
    })
    figures = {way: p50_p95_ms([s for s in values if not math.isnan(s)])
               for way, values in samples.items() if any(not math.isnan(s) for s in values)}
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "reps": reps,
        "firmware": "uefi" if uefi else "direct", "figures": figures, "failures": failures,
        "samples_s": {way: [None if math.isnan(s) else round(s, 2) for s in values]
                      for way, values in samples.items()},  # None: failed (see failures)
    }
    if {"hc", "by_hand"} <= figures.keys():
        result["ratio_p50"] = round(figures["hc"]["p50_ms"] / figures["by_hand"]["p50_ms"], 3)
        result["target_ratio"] = TARGET_RATIO
    return result


def print_table(result: dict[str, Any]) -> None:
    print(f"q35 to READY ({result['firmware']} boot, TCG), {result['reps']} reps each")
    print(f"{'way':<10} {'p50 ms':>10} {'p95 ms':>10}")
    for way, figure in result["figures"].items():
        print(f"{way:<10} {figure['p50_ms']:>10} {figure['p95_ms']:>10}")
    if "ratio_p50" in result:
        print(f"ratio hc / by hand (p50): {result['ratio_p50']} (target <= {TARGET_RATIO})")
    for failure in result["failures"]:
        print(f"failed: {failure}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3,
                        help="boots per way (default 3: each takes tens of seconds under TCG)")
    parser.add_argument("--uefi", action="store_true",
                        help="boot through OVMF and the image's EFI system partition")
    devhost_arguments(parser, DEVHOST)
    args = parse_root_arguments(parser, "reps")

    def measure(host: DevHost) -> dict[str, Any]:
        guest = Guest.of(host)
        start_libvirtd(guest)
        ensure_image(guest)
        with cleaned(guest, clean_leftovers):
            return run(guest, args.reps, args.uefi)
    return measure_and_print("q35_bench", args, DEVHOST, measure, print_table)


if __name__ == "__main__":
    sys.exit(main())
