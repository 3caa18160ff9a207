"""`hc doctor`'s pure parts: a check's outcome as one line, the agent as a check."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from homecloud.cli.doctor import AGENT_FIX, GROUP_FIX, _agent_check
from homecloud.config import load_config
from homecloud.errors import HostError, PermissionDenied, UserError
from homecloud.host.checks import Check, Failed, Skipped, run_check
from homecloud.host.doctor import CHECK_NAMES, DOCTOR_CHECKS, NEEDS_AGENT, in_agent
from homecloud.host.system_checks import _one_line, checksums


def _fails() -> str:
    raise Failed("it is broken", "mend it")


def _skips() -> str:
    raise Skipped("needs root: run `sudo hc doctor`")


def _host_error() -> str:
    raise HostError("nft is missing")


def _os_error() -> str:
    raise PermissionError(13, "Permission denied")


@pytest.mark.parametrize(("check", "expected"), [
    (lambda: "fine", Check("c", "ok", "fine")),
    (_fails, Check("c", "fail", "it is broken", "mend it")),
    (_skips, Check("c", "skipped", "needs root: run `sudo hc doctor`")),
    (_host_error, Check("c", "fail", "nft is missing")),
    (_os_error, Check("c", "fail", "PermissionError: [Errno 13] Permission denied")),
])
def test_a_check_becomes_one_line(check: object, expected: Check) -> None:
    assert run_check("c", check) == expected  # type: ignore[arg-type]


def test_the_agent_not_running_is_a_failed_check_with_its_fix() -> None:
    check = _agent_check(HostError("the homecloud agent is not running (no socket at /s)"), "/s")
    assert check == {"name": "agent", "status": "fail", "fix": AGENT_FIX,
                     "detail": "the homecloud agent is not running (no socket at /s)"}
    assert "journalctl -u hcd" in AGENT_FIX and "systemctl status hcd.socket" in AGENT_FIX


def test_an_agent_that_hangs_or_refuses_the_user_says_so() -> None:
    hung = _agent_check(TimeoutError(), "/s")
    assert hung["detail"] == "the agent did not answer on /s within 60 s"
    assert _agent_check(PermissionDenied("permission denied on /s"), "/s")["fix"] == GROUP_FIX
    assert _agent_check(None, "/s") == {"name": "agent", "status": "ok",
                                        "detail": "hcd answers on /s", "fix": None}


def test_the_checks_needing_the_agent_are_among_all_checks() -> None:
    assert set(NEEDS_AGENT) < set(CHECK_NAMES)


def test_every_check_runs_somewhere_once() -> None:
    assert len(set(CHECK_NAMES)) == len(DOCTOR_CHECKS)
    for check in DOCTOR_CHECKS:
        assert check.alone is not None or check.in_agent is not None, check.name


def test_the_agent_skips_what_needs_the_network_while_it_is_not_set_up() -> None:
    pool = SimpleNamespace(usage=lambda: SimpleNamespace(driver="btrfs", path="/p", free=1 << 30))
    network = SimpleNamespace(error=HostError("subnet4 10.0.0.0/24 overlaps a route"))
    agent = SimpleNamespace(pool=pool, network=network, bus=None)
    checks = {check.name: check for check in in_agent(agent)}  # type: ignore[arg-type]
    assert list(checks) == list(CHECK_NAMES)
    assert checks["pool"] == Check("pool", "ok", "btrfs at /p, 1.0G free")
    assert checks["network"].status == "fail"
    assert checks["network"].detail == "subnet4 10.0.0.0/24 overlaps a route"
    skipped = [check.name for check in DOCTOR_CHECKS if check.needs_network]
    assert skipped
    for name in skipped:
        assert checks[name] == Check(name, "skipped", "no network (see above)")


def test_a_yaml_error_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("pool: [\n")
    with pytest.raises(UserError) as raised:
        load_config(path)
    assert "\n" in raised.value.message
    line = _one_line(raised.value.message)
    assert line.startswith(f"{path}: not valid YAML: while parsing") and "\n" not in line


def test_checksums_in_python_fail_with_the_fix() -> None:
    assert run_check("checksums", checksums) == Check(
        "checksums", "ok", "CRC-32C of snapshot and image streams runs in C")
    check = run_check("checksums", lambda: checksums("python"))
    assert check.status == "fail"
    assert check.detail == ("google-crc32c runs its python fallback: snapshot sends and machine "
                            "image streams are checksummed at ~5 MiB/s")
    assert check.fix is not None and "--force-reinstall --only-binary :all: google-crc32c" \
        in check.fix
