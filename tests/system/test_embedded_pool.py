"""The embedded pool in a real systemd (a dev host): a sparse btrfs file mounted by a .mount
unit that is enabled for boot, made once and never formatted again."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.system

BASE = "/var/lib/hc-embedded-test"
POOL = f"{BASE}/pool"
IMAGE = f"{BASE}/pool.img"
UNIT = "var-lib-hc\\x2dembedded\\x2dtest-pool.mount"
ENSURE = f"""
from pathlib import Path
from homecloud.config import PoolConfig
from homecloud.storage.embedded import ensure_embedded_pool
ensure_embedded_pool(PoolConfig(path=Path({POOL!r}), image_file=Path({IMAGE!r}), size=1 << 30))
"""


def mounted_fstype(devhost) -> str:
    result = devhost.run("findmnt", "-n", "-o", "FSTYPE", "--mountpoint", POOL, check=False)
    return result.stdout.strip()


def test_embedded_pool_is_made_mounted_and_kept(devhost) -> None:
    try:
        devhost.run("rm", "-rf", BASE)
        devhost.run(devhost.python, "-c", ENSURE)
        assert mounted_fstype(devhost) == "btrfs"
        assert devhost.run("systemctl", "is-enabled", UNIT).stdout.strip() == "enabled"
        assert devhost.run("systemctl", "is-active", UNIT).stdout.strip() == "active"
        assert devhost.run("stat", "-c", "%s", IMAGE).stdout.strip() == str(1 << 30)
        allocated_kib = int(devhost.run("du", "-k", IMAGE).stdout.split()[0])
        assert allocated_kib < 200 << 10, "the image should be sparse"
        unit_text = devhost.run("cat", f"/etc/systemd/system/{UNIT}").stdout
        assert f"What={IMAGE}\n" in unit_text and "Before=hcd.service\n" in unit_text

        # Idempotent while mounted: nothing is touched.
        devhost.run("sh", "-c", f"echo kept > {POOL}/marker")
        devhost.run(devhost.python, "-c", ENSURE)
        assert devhost.run("cat", f"{POOL}/marker").stdout == "kept\n"

        # Unmounted (as after a failed boot): mounted again, never formatted again.
        devhost.run("systemctl", "stop", UNIT)
        assert mounted_fstype(devhost) == ""
        devhost.run(devhost.python, "-c", ENSURE)
        assert mounted_fstype(devhost) == "btrfs"
        assert devhost.run("cat", f"{POOL}/marker").stdout == "kept\n"
    finally:
        devhost.run("systemctl", "disable", "--now", UNIT, check=False)
        devhost.run("rm", "-f", f"/etc/systemd/system/{UNIT}", check=False)
        devhost.run("systemctl", "daemon-reload", check=False)
        devhost.run("rm", "-rf", BASE, check=False)
    assert mounted_fstype(devhost) == ""
    assert devhost.run("losetup", "-j", IMAGE, check=False).stdout.strip() == ""


def test_embedded_pool_refuses_to_format_a_file_with_data(devhost) -> None:
    try:
        devhost.run("mkdir", "-p", BASE)
        devhost.run("sh", "-c", f"echo precious > {IMAGE}")
        result = devhost.run(devhost.python, "-c", ENSURE, check=False)
        assert result.returncode != 0
        assert "exists and holds data that is not a btrfs file system" in result.stderr
        assert devhost.run("cat", IMAGE).stdout == "precious\n"
        assert mounted_fstype(devhost) == ""
        assert devhost.run("test", "-e", f"/etc/systemd/system/{UNIT}", check=False).returncode
    finally:
        devhost.run("rm", "-rf", BASE, check=False)
