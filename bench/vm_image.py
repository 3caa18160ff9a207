"""What the VM benchmarks share: the VM image they boot, built in the dev host when missing."""

from __future__ import annotations

import json
from pathlib import Path

from benchhost import log
from run_bench import Guest

IMAGE = "debian-vm"
POOL = Path("/var/lib/homecloud/pool")


def ensure_image(guest: Guest) -> None:
    images = json.loads(guest.run([*guest.hc, "image", "ls", "--json"]).stdout)
    if not any(image["name"] == IMAGE for image in images):
        log(f"building {IMAGE} (a few minutes)")
        guest.run([*guest.hc, "image", "build", "debian", "--vm", "-q"])
