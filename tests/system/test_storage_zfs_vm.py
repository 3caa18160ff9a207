"""The storage driver suite (test_storage_drivers.py) against zfs, inside a VM whose kernel runs
ZFS (zfs_vm.py), for hosts whose own kernel cannot. Where the host runs ZFS itself, the suite's
zfs parametrisation tests it directly and this module skips."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from pools import require_root
from zfs_vm import missing_tools, run_pytest_in_vm

from homecloud.storage.zfs_host import zfs_missing

pytestmark = pytest.mark.system

CHECKOUT = Path(__file__).resolve().parents[2]
# Under TCG on a busy 2-core machine the suite takes many minutes (and building the module,
# the first time, more): it runs when asked, not in every pass of the whole suite.
RUN_ENV = "HC_TEST_ZFS_VM"
TIMEOUT = 3600.0


def test_driver_suite_passes_on_zfs_in_a_vm(tmp_path: Path) -> None:
    require_root()
    if zfs_missing() is None:
        pytest.skip("this host runs ZFS: test_storage_drivers.py tests the zfs driver here")
    if os.environ.get(RUN_ENV) != "1":
        pytest.skip(f"the zfs driver suite runs in a TCG VM for many minutes: set {RUN_ENV}=1 "
                    "to run it")
    missing = missing_tools()
    if missing:
        pytest.skip(f"needs {', '.join(missing)} to run ZFS in a VM")
    log = tmp_path / "zfs-vm.log"
    status, console = run_pytest_in_vm(
        ["-q", "-ra", "tests/system/test_storage_drivers.py", "-k", "zfs"],
        checkout=CHECKOUT, python=Path(sys.executable), timeout=TIMEOUT, log=log)
    tail = "\n".join(console.splitlines()[-60:])
    assert status == 0, f"pytest in the VM {'failed' if status else 'never finished'}:\n{tail}"
    # pytest's last line, e.g. "51 passed in 512.3s": zfs ran, nothing skipped or failed.
    results = re.findall(r"^=*\s*(\d+ \w.*) in [\d.]+s", console, re.MULTILINE)
    assert results, tail
    assert "passed" in results[-1] and not re.search("skipped|failed|error", results[-1]), tail
