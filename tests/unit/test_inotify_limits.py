"""The inotify limits homecloud raises, in a scratch /proc/sys (the real one: dev host tests)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from homecloud.host.checks import run_check
from homecloud.host.inotify_limits import LIMITS, dropin_text, fix_for, raise_limits, read_limits
from homecloud.host.system_checks import inotify

INSTANCES, WATCHES = (limit.key for limit in LIMITS)


def scratch_proc_sys(root: Path, instances: int, watches: int) -> Path:
    inotify = root / "fs/inotify"
    inotify.mkdir(parents=True)
    (inotify / "max_user_instances").write_text(f"{instances}\n")
    (inotify / "max_user_watches").write_text(f"{watches}\n")
    return root


def values(proc_sys: Path) -> dict[str, int]:
    return {r.limit.key: r.value for r in read_limits(proc_sys)}


def test_only_what_is_too_low_is_raised_and_only_once(tmp_path: Path) -> None:
    proc_sys = scratch_proc_sys(tmp_path, instances=128, watches=192536)
    assert raise_limits(proc_sys) == [f"{INSTANCES} from 128 to 8192"]
    assert values(proc_sys) == {INSTANCES: 8192, WATCHES: 192536}
    assert raise_limits(proc_sys) == []


def test_a_small_machines_watches_are_raised_too(tmp_path: Path) -> None:
    proc_sys = scratch_proc_sys(tmp_path, instances=8192, watches=8192)
    assert raise_limits(proc_sys) == [f"{WATCHES} from 8192 to 65536"]


def test_the_drop_in_never_lowers_what_the_admin_set(tmp_path: Path) -> None:
    proc_sys = scratch_proc_sys(tmp_path, instances=100000, watches=128)
    text = dropin_text(read_limits(proc_sys))
    settings = [line for line in text.splitlines() if not line.startswith("#")]
    assert settings == [f"{INSTANCES} = 100000", f"{WATCHES} = 65536"]


def test_the_fix_names_the_command_and_the_drop_in(tmp_path: Path) -> None:
    proc_sys = scratch_proc_sys(tmp_path, instances=128, watches=192536)
    low = [r for r in read_limits(proc_sys) if r.low]
    assert fix_for(low).startswith(f"`sysctl -w {INSTANCES}=8192` ")
    assert "/etc/sysctl.d/60-homecloud.conf" in fix_for(low)


def test_too_low_inotify_limits_fail_with_the_fix(tmp_path: Path) -> None:
    proc_sys = scratch_proc_sys(tmp_path, instances=128, watches=192536)
    check = run_check("inotify", partial(inotify, proc_sys))
    assert (check.status, check.detail) == ("fail", "fs.inotify.max_user_instances is 128, below "
                                            "8192: booted containers may never get ready")
    assert check.fix is not None and "`sysctl -w fs.inotify.max_user_instances=8192`" in check.fix
    (proc_sys / "fs/inotify/max_user_instances").write_text("8192\n")
    assert run_check("inotify", partial(inotify, proc_sys)).status == "ok"
